"""CI floor: the installed security-relevant dependencies are at or above their floors, and
migctl only ever loads YAML safely."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "migrate_cli"
FLOORS = {
    "jinja2": "3.1.6",  # CVE-2025-27516 sandbox escape through |attr
    "pyyaml": "6.0",  # 5.4 and older: FullLoader arbitrary code execution
    "markupsafe": "2.1",
    "pydantic": "2.4",  # CVE-2024-3772 ReDoS in email validation (migctl needs 2.11 anyway)
}


def _version(text: str) -> tuple[int, ...]:
    try:
        from packaging.version import Version

        return tuple(Version(text).release)
    except ImportError:  # a small parser: leading numeric parts only
        return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])


def below(installed: str, floor: str) -> bool:
    return _version(installed) < _version(floor)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_installed_dependency_meets_its_security_floor(name: str) -> None:
    installed = metadata.version(name)
    assert not below(installed, FLOORS[name]), (
        f"{name} {installed} is below the security floor {FLOORS[name]}"
    )


@pytest.mark.parametrize(
    ("installed", "floor", "bad"),
    [
        ("3.1.5", "3.1.6", True),
        ("3.1.6", "3.1.6", False),
        ("3.2.0", "3.1.6", False),
        ("5.4.1", "6.0", True),
        ("6.0.1", "6.0", False),
        ("3.1.10", "3.1.6", False),
    ],
)
def test_version_comparison(installed: str, floor: str, bad: bool) -> None:
    assert below(installed, floor) is bad


def test_pyproject_declares_the_floors() -> None:
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    assert re.search(r'"jinja2>=3\.1\.([6-9]|\d\d)', text)
    assert re.search(r'"pyyaml>=6', text)


UNSAFE_YAML = re.compile(
    r"yaml\.(load|load_all|unsafe_load|unsafe_load_all|full_load|full_load_all)\s*\(|yaml\.(Loader|FullLoader|UnsafeLoader|UnsafeConstructor)\b|\bLoader\s*=\s*yaml\.(?!SafeLoader|CSafeLoader)"
)


def test_migctl_never_loads_yaml_unsafely() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if UNSAFE_YAML.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}")
    assert offenders == []


def test_jinja_rendering_is_sandboxed() -> None:
    from jinja2.sandbox import SandboxedEnvironment

    source = (PACKAGE / "notices" / "render.py").read_text()
    assert "SandboxedEnvironment" in source
    assert not re.search(r"\bEnvironment\(", source.replace("SandboxedEnvironment(", ""))
    env = SandboxedEnvironment()
    with pytest.raises(Exception):  # noqa: B017 - SecurityError, whatever its module
        env.from_string("{{ ''.__class__.__mro__[1].__subclasses__() }}").render()
