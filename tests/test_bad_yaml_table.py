"""Known-bad migrations.yaml: each case gives exit 1, a message naming file, line and the fault,
and leaves the store exactly as it was (nothing synced)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import fuzz_settings
from tests.fuzz_settings import count
from tests.test_fuzz_loaders import make_store, store_dump

VALID = """\
defaults:
  timezone: UTC
migrations:
  - id: email-changes
    title: Email changes
    severity: medium
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    summary: Something changes.
"""
# line:       1 defaults, 2 timezone, 3 migrations, 4 id, 5 title, 6 severity, 7 grace start,
#             8 mandatory, 9 summary


def _replace(line_no: int, text: str) -> str:
    lines = VALID.splitlines()
    lines[line_no - 1] = text
    return "\n".join(lines) + "\n"


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{chr(ord('b') + i)}: &{chr(ord('b') + i)} [{','.join(['*' + chr(ord('a') + i)] * 9)}]\n"
        for i in range(8)
    )
    + "migrations: *i\n"
)

# (id, content, expected line or None, message fragment)
CASES: list[tuple[str, str | bytes, int | None, str]] = [
    (
        "duplicate-key",
        VALID + "    title: Other title\n",
        10,
        "duplicate key 'title' (first on line 5)",
    ),
    (
        "yaml11-bool-NO",
        _replace(6, "    severity: NO"),
        6,
        "'NO' is not one of low, medium, high, critical",
    ),
    ("yaml11-bool-on", _replace(6, "    severity: on"), 6, "'on' is not one of"),
    (
        "octal-0755",
        _replace(7, "    grace_period_start: 0755"),
        7,
        "expected a date like 2016-05-11, got '0755'",
    ),
    (
        "sexagesimal-1:20",
        _replace(8, "    mandatory_opt_in: 1:20"),
        8,
        "expected a date like 2016-05-11, got '1:20'",
    ),
    (
        "impossible-date",
        _replace(7, "    grace_period_start: 2016-13-01"),
        7,
        "'2016-13-01' is not a real calendar date",
    ),
    ("feb-30", _replace(8, "    mandatory_opt_in: 2016-02-30"), 8, "not a real calendar date"),
    (  # found by test_fuzz_loaders: PyYAML's chr() error escaped as a traceback
        "escape-beyond-unicode",
        _replace(9, '    summary: "bad \\U7fffffff escape"'),
        9,
        "an escape is not a character",
    ),
    (
        "naive-datetime",
        _replace(7, "    grace_period_start: 2016-04-04T10:00:00"),
        7,
        "expected a date like 2016-05-11",
    ),
    (
        "aware-datetime",
        _replace(8, "    mandatory_opt_in: 2016-05-11T00:00:00+02:00"),
        8,
        "expected a date like 2016-05-11",
    ),
    (
        "python-tag",
        _replace(5, '    title: !!python/object/apply:os.system ["touch PWNED"]'),
        5,
        "YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    ("python-name-tag", _replace(5, "    title: !!python/name:os.system"), 5, "is not allowed"),
    ("local-tag", _replace(5, "    title: !custom x"), 5, "YAML tag '!custom' is not allowed"),
    ("billion-laughs", BILLION_LAUGHS, None, "more than 100,000 nodes (alias bomb?)"),
    ("recursive-alias", _replace(5, "    title: &t [*t]"), None, "nested more than 64 levels"),
    ("deep-nesting", "migrations: " + "[" * 200 + "]" * 200 + "\n", None, "nested"),
    ("empty-file", "", 1, "file is empty"),
    ("only-comments", "# nothing here\n", 1, "file has no content"),
    ("several-documents", VALID + "---\nmigrations: []\n", 10, "only one YAML document is allowed"),
    ("tab-indentation", VALID.replace("    title:", "\ttitle:"), 5, "invalid YAML"),
    (
        "non-utf8",
        VALID.encode().replace(b"Email changes", b"Caf\xe9 changes"),
        5,
        "file is not valid UTF-8",
    ),
    ("utf16", VALID.encode("utf-16"), 1, "not valid UTF-8"),
    (
        "misspelled-key",
        _replace(8, "    mandatory_optin: 2016-05-11"),
        8,
        "unknown key 'mandatory_optin' (did you mean 'mandatory_opt_in'?)",
    ),
    (
        "misspelled-top-key",
        VALID.replace("migrations:", "migration:"),
        3,
        "unknown key 'migration' (did you mean 'migrations'?)",
    ),
    (
        "misspelled-default",
        _replace(2, "  timzone: UTC"),
        2,
        "unknown key 'timzone' (did you mean 'timezone'?)",
    ),
    (
        "mandatory-before-grace",
        _replace(8, "    mandatory_opt_in: 2016-04-01"),
        8,
        "2016-04-01 is before grace_period_start 2016-04-04",
    ),
    (
        "duplicate-id",
        VALID + VALID.split("migrations:\n", 1)[1],
        10,
        "duplicate id 'email-changes' (also migrations[0])",
    ),
    ("tbd-lowercase", _replace(8, "    mandatory_opt_in: tbd"), 8, "write TBD in capitals"),
    ("bad-slug-traversal", _replace(4, "  - id: ../../etc/passwd"), 4, "is not a slug"),
    ("bad-slug-absolute", _replace(4, "  - id: /etc/passwd"), 4, "is not a slug"),
    ("bad-timezone", _replace(2, "  timezone: ../../etc/passwd"), 2, "unknown timezone"),
    ("merge-key", VALID + "    <<: {summary: x}\n", 10, "merge keys (<<) are not supported"),
    ("title-newline", _replace(5, '    title: "two\\nlines"'), 5, "must be a single line"),
    (
        "docs-url-javascript",
        VALID + "    docs_url: javascript:alert(1)\n",
        10,
        "is not an http(s) URL",
    ),
    (
        "ten-megabytes",
        VALID + "# " + "x" * (10 * 1024 * 1024) + "\n",
        None,
        "the limit is 2,097,152",
    ),
]


@pytest.mark.parametrize(
    ("content", "line", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_yaml_is_refused_with_location(
    tmp_path: Path, runner: Any, content: str | bytes, line: int | None, fragment: str
) -> None:
    path = tmp_path / "migrations.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    count("migrations.yaml (known-bad table)")
    result = runner("validate", "--file", path)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    err = result.stderr.replace("\n", "")  # Rich wraps long lines at 80 columns
    assert "Traceback" not in result.output
    assert fragment in err, err
    where = f"{path}:{line}" if line is not None else str(path)
    assert where in err, err
    # sync refuses it too, and writes nothing
    db = make_store(tmp_path)
    before = store_dump(db)
    synced = runner("--db", db, "sync", "--file", path)
    assert synced.exit_code == 1, synced.output
    assert store_dump(db) == before
    assert not (tmp_path / "PWNED").exists()


def test_python_tag_never_executes(tmp_path: Path, runner: Any) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "migrations.yaml"
    for payload in (
        f'!!python/object/apply:os.system ["touch {marker}"]',
        f'!!python/object/apply:subprocess.call [["touch", "{marker}"]]',
        f'!!python/object/new:os.system ["touch {marker}"]',
    ):
        path.write_text(_replace(5, f"    title: {payload}"))
        for cmd in (["validate", "--file", path], ["sync", "--file", path]):
            r = runner("--db", tmp_path / "s.db", *cmd)
            assert r.exit_code == 1
            assert not marker.exists(), "a YAML tag executed code"
    assert not Path("/tmp/pwned").exists()


def test_title_NO_stays_text(tmp_path: Path) -> None:
    from migrate_cli.definitions.model import load_definitions

    path = tmp_path / "m.yaml"
    path.write_text(_replace(5, "    title: NO"))
    (m,) = load_definitions(path).migrations
    assert m.title == "NO"


def test_bom_is_accepted(tmp_path: Path) -> None:
    from migrate_cli.definitions.model import load_definitions

    path = tmp_path / "migrations.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_definitions(path).ids == ["email-changes"]


def test_every_problem_listed_at_once(tmp_path: Path, runner: Any) -> None:
    path = tmp_path / "migrations.yaml"
    text = VALID.replace("severity: medium", "severity: NO").replace("2016-05-11", "2016-13-01")
    path.write_text(text)
    r = runner("validate", "--file", path)
    assert r.exit_code == 1
    err = r.stderr.replace("\n", "")
    assert f"{path}:6" in err and f"{path}:8" in err


assert fuzz_settings.PROFILE
