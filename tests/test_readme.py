"""The README's promises: its Quickstart is the two make targets, and its examples run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_quickstart_is_exactly_make_demo_and_make_test() -> None:
    quick = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", quick, flags=re.S)
    assert block.split("\n")[:-1] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _console_commands() -> list[list[str]]:
    commands = []
    for block in _blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ migctl "):
                commands.append(shlex.split(line[2:]))
    return commands


def test_readme_has_console_examples() -> None:
    assert len(_console_commands()) >= 10


def test_readme_console_examples_run_in_order(tmp_path: Path) -> None:
    """Every `$ migctl ...` line, in order, in a folder holding the shipped files."""
    shutil.copy(REPO / "migrations.yaml", tmp_path / "migrations.yaml")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copytree(REPO / "email_templates", tmp_path / "email_templates")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGCTL_")}
    for argv in _console_commands():
        result = subprocess.run(
            [sys.executable, "-m", "migrate_cli", *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
    assert (tmp_path / "previews").is_dir()
    assert (tmp_path / "dashboard.json").is_file()


@pytest.mark.slow
def test_make_demo_runs_end_to_end() -> None:
    """`make demo` on the real checkout (it reuses .venv when present)."""
    result = subprocess.run(
        ["make", "-s", "demo"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "enforced: email-delivery-changes" in result.stdout
    assert "suppressed bill@initech.test" in result.stdout  # the feedback step
    enforced = [p for p in (REPO / "demo" / "outbox").iterdir() if "_enforced_" in p.name]
    assert enforced, "the demo must write enforced notices as .eml files"
