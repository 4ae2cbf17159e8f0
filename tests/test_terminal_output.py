"""Terminal output an operator can use: whole ids, coloured words, red errors, readable lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers_enforce import (
    MAIL,
    migctl,
    ok,
    setup_store,
)

LONG = """\
  - id: legacy-token-endpoint-removal-for-every-account
    title: Legacy token endpoint removal
    severity: critical
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    summary: The legacy endpoint goes.
    description: Use the new one.
"""
LONG_ID = "legacy-token-endpoint-removal-for-every-account"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def terminal(width: int) -> dict[str, str]:
    return {"MIGCTL_FORCE_TERMINAL": "1", "MIGCTL_WIDTH": str(width)}


@pytest.mark.parametrize("width", [80, 120])
def test_migration_ids_are_whole_in_a_narrow_terminal(tmp_path: Path, width: int) -> None:
    setup_store(tmp_path, MAIL, LONG)
    out = ok(migctl(tmp_path, "--now", "2016-04-20", "status", env=terminal(width))).stdout
    plain = ANSI.sub("", out)
    assert LONG_ID in plain, plain
    assert "…" not in plain.split(LONG_ID)[0].splitlines()[-1]
    assert all(len(line) <= width for line in plain.splitlines())


def test_phase_and_severity_are_coloured_on_a_terminal_only(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL, LONG)
    coloured = ok(migctl(tmp_path, "--now", "2016-04-20", "status", env=terminal(200))).stdout
    # critical: white on red; grace: green
    assert re.search(r"\x1b\[[0-9;]*41m\s*critical", coloured), coloured
    assert re.search(r"\x1b\[32m\s*grace", coloured), coloured
    plain = ok(migctl(tmp_path, "--now", "2016-04-20", "status")).stdout
    assert "\x1b[" not in plain


def test_errors_are_red_on_a_terminal_and_plain_in_cron(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    red = migctl(tmp_path, "status", "nope", env=terminal(100))
    assert red.returncode == 1
    assert red.stderr.startswith("\x1b[31merror: ")
    plain = migctl(tmp_path, "status", "nope")
    assert plain.returncode == 1
    assert plain.stderr.startswith("error: ") and "\x1b[" not in plain.stderr


def test_audit_detail_reads_as_words_not_json(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL, opt_in=[("mail", "ent-1", "2016-04-10")])
    out = ok(migctl(tmp_path, "audit", "--account", "ent-1")).stdout
    line = next(ln for ln in out.splitlines() if "enrollment" in ln and "ent-1" in ln)
    assert '\\"' not in line and "{" not in line, line


def test_run_prints_what_sync_changed_without_json(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    yaml = tmp_path / "migrations.yaml"
    yaml.write_text(yaml.read_text() + LONG)
    out = ok(migctl(tmp_path, "--now", "2016-04-20", "run")).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("synced"))
    assert line == f"synced migrations.yaml: added {LONG_ID}", out


def test_a_real_enforce_names_how_many_administrators_were_queued(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    dry = ok(migctl(tmp_path, "--now", "2016-05-11", "enforce", "--dry-run")).stdout
    out = ok(migctl(tmp_path, "--now", "2016-05-11", "enforce")).stdout
    (counted,) = re.findall(r"administrators=(\d+)", dry)
    row = next(ln for ln in out.splitlines() if ln.startswith("migration=mail"))
    assert f"administrators={counted}" in row, out
    assert f"queued {counted} enforced notice(s)" in out
