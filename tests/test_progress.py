"""Progress that tells the truth: phase labels, real totals, and nothing without a terminal."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers_enforce import (
    ACCOUNTS_CSV,
    MAIL,
    migctl,
    ok,
    setup_store,
    write_config,
    write_yaml,
)

TERMINAL = {"MIGCTL_FORCE_TERMINAL": "1", "MIGCTL_WIDTH": "100"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
N_ACCOUNTS = ACCOUNTS_CSV.count("\n") - 1


def _screen(stderr: str) -> str:
    return ANSI.sub("", stderr)


def test_notify_names_its_phases_and_sends_against_the_real_total(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    r = ok(migctl(tmp_path, "--now", "2016-04-20", "notify", env=TERMINAL))
    sent = int(re.search(r"sent (\d+)", r.stdout).group(1))  # type: ignore[union-attr]
    screen = _screen(r.stderr)
    assert "planning" in screen
    assert "sending" in screen and f"{sent}/{sent}" in screen, screen
    # every total shown is the real one: never more done than the total
    for done, total in re.findall(r"(\d+)/(\d+)", screen):
        assert int(done) <= int(total) == sent


def test_nothing_is_drawn_without_a_terminal(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    r = ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    assert r.stderr == ""
    r = ok(migctl(tmp_path, "accounts", "export", "--out", str(tmp_path / "a.jsonl")))
    assert "\x1b" not in r.stderr and "exporting" not in r.stderr


def test_import_export_enforce_and_rehearsal_show_progress(tmp_path: Path) -> None:
    write_yaml(tmp_path, MAIL)
    write_config(tmp_path)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS_CSV)
    ok(migctl(tmp_path, "--now", "2016-03-01", "sync"))
    r = ok(
        migctl(tmp_path, "--now", "2016-03-01", "accounts", "import", "accounts.csv", env=TERMINAL)
    )
    screen = _screen(r.stderr)
    # the row count of a file is not known before reading it: counted, never a made-up total
    assert "reading" in screen and "/?" in screen and not re.search(r"\d+/\d+", screen)
    out = tmp_path / "all.csv"
    r = ok(
        migctl(tmp_path, "accounts", "export", "--format", "csv", "--out", str(out), env=TERMINAL)
    )
    assert f"{N_ACCOUNTS}/{N_ACCOUNTS}" in _screen(r.stderr) and "exporting" in _screen(r.stderr)
    r = ok(migctl(tmp_path, "--now", "2016-04-20", "plan", "--until", "2016-05-20", env=TERMINAL))
    assert "rehearsing" in _screen(r.stderr)
    r = ok(migctl(tmp_path, "--now", "2016-05-11", "enforce", "--yes", env=TERMINAL))
    assert "enforcing" in _screen(r.stderr)
