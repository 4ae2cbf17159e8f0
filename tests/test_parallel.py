"""Large local runs share the sending with a helper process: every row sent once, stops clean."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import migrate_cli.notices.notify as notices_module
import migrate_cli.notices.parallel as parallel
from migrate_cli.config import Config
from migrate_cli.delivery.file import FileProvider, eml_filename
from migrate_cli.errors import MigctlError
from migrate_cli.notices.dispatch import DispatchSummary
from tests.helpers_enforce import (
    MAIL,
    base_env,
    in_process,
    json_out,
    ok,
    query,
    setup_store,
    wait_for,
)

ACCOUNTS = 600


def many_accounts(n: int) -> str:
    rows = ["id,name,plan,tags,created_at,status,admins"]
    for i in range(n):
        rows.append(f"acc-{i:05d},Account {i} & Co <x>,free,,2015-01-01,active,u{i}@x.test")
    return "\n".join(rows) + "\n"


def _check_all_sent_once(folder: Path, db: Path) -> int:
    rows = query(db, "SELECT key, state, attempts FROM outbox")
    assert rows, "nothing was queued"
    assert {r["state"] for r in rows} == {"sent"}, {r["state"] for r in rows}
    assert {r["attempts"] for r in rows} == {1}, "a row was claimed twice"
    files = {p.name for p in (folder / "outbox").glob("*.eml")}
    assert files == {eml_filename(r["key"]) for r in rows}
    return len(rows)


def test_a_large_local_run_is_shared_with_a_helper_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(ACCOUNTS), provider="file")
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 50)
    monkeypatch.setattr(notices_module, "ENQUEUE_CHUNK", 20)
    # This process sends slowly, so the helper (a fresh interpreter) surely gets a share.
    write = FileProvider.write_message

    def slow_write(self: FileProvider, msg: Any, email: Any) -> str:
        time.sleep(0.004)
        return write(self, msg, email)

    monkeypatch.setattr(FileProvider, "write_message", slow_write)
    shares: list[int] = []
    merge = parallel._merge

    def spy(into: DispatchSummary, other: DispatchSummary) -> None:
        shares.append(other.sent)
        merge(into, other)

    monkeypatch.setattr(parallel, "_merge", spy)
    out = in_process(tmp_path, "--now", "2016-04-20", "notify", "--json")
    doc = json.loads(out)
    sent = _check_all_sent_once(tmp_path, db)
    assert doc["notices"]["planned"] == doc["notices"]["sent"] == sent == ACCOUNTS
    assert len(shares) == 1, "the helper never reported"
    assert 0 < shares[0] < sent, shares


WRAPPER = """\
import os, sys, time
import migrate_cli.notices.notify as n
import migrate_cli.notices.parallel as p
from migrate_cli.delivery.file import FileProvider
p.PARALLEL_MIN = 50
n.ENQUEUE_CHUNK = 20
write = FileProvider.write_message
def slow(self, msg, email):
    time.sleep(0.01)
    return write(self, msg, email)
FileProvider.write_message = slow
if os.environ.get("SLOW_QUEUE"):  # each chunk of 20 takes 50 ms more to queue
    enqueue = n.enqueue
    def slow_enqueue(*a, **k):
        time.sleep(0.05)
        return enqueue(*a, **k)
    n.enqueue = slow_enqueue
from migrate_cli.cli.app import main
main()
"""


def _start_slow_run(
    folder: Path, db: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], list[str]]:
    """`notify` through WRAPPER (helper from 50 notices, slow sends here); returns its args."""
    wrapper = folder / "wrapper.py"
    wrapper.write_text(WRAPPER)
    args = ["--db", str(db), "--config", str(folder / "migctl.toml"), "--now", "2016-04-20"]
    proc = subprocess.Popen(
        [sys.executable, str(wrapper), *args, "notify", "--json"],
        cwd=folder,
        env=base_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, args


def _rerun(folder: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrate_cli", *args, "notify", "--json"],
        cwd=folder,
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sigterm_stops_both_processes_cleanly_and_a_rerun_finishes(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(ACCOUNTS), provider="file")
    proc, args = _start_slow_run(tmp_path, db)

    def helper_has_sent() -> bool:
        # The helper sends from the highest id down.
        top = query(db, "SELECT state FROM outbox ORDER BY id DESC LIMIT 1") if db.exists() else []
        return bool(top) and top[0]["state"] == "sent"

    assert wait_for(helper_has_sent, timeout=60), "the helper never sent"
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=90)
    states = {r["state"] for r in query(db, "SELECT DISTINCT state FROM outbox")}
    assert states <= {"sent", "pending"}, states  # nothing left `sending`, nothing in doubt
    sent_keys = {r["key"] for r in query(db, "SELECT key FROM outbox WHERE state = 'sent'")}
    files = {p.name for p in (tmp_path / "outbox").glob("*.eml")}
    assert files == {eml_filename(k) for k in sent_keys}  # every file written is recorded
    assert "pending" in states, "the run finished before the signal: nothing was tested"

    rerun = _rerun(tmp_path, args)
    ok(rerun)
    assert json_out(rerun)["notices"]["planned"] == 0  # nothing planned twice
    assert _check_all_sent_once(tmp_path, db) == ACCOUNTS


def test_a_failing_helper_fails_the_run_loudly(tmp_path: Path) -> None:
    job = parallel.HelperJob(
        str(tmp_path / "missing.db"), Config(), datetime(2016, 4, 20, tzinfo=UTC), None
    )
    progress: list[int] = []
    helper = parallel.Helper(job, progress.append)
    helper.start()
    helper.queuing_done()
    with pytest.raises(MigctlError, match="helper process failed: StoreError"):
        helper.join(DispatchSummary(), stopping=False)
    assert progress == []


def test_which_runs_may_use_a_helper(tmp_path: Path) -> None:
    from migrate_cli.config import EmailConfig

    db = tmp_path / "x.db"
    null = Config(email=EmailConfig(provider="null"))
    assert parallel.wanted(null, False, db) == ((os.cpu_count() or 1) >= 2)
    assert not parallel.wanted(null, True, db)  # network providers use threads
    limited = Config(email=EmailConfig(provider="null", rate_per_second=5))
    assert not parallel.wanted(limited, False, db)
    capped = Config(email=EmailConfig(provider="null", daily_quota=100))
    assert not parallel.wanted(capped, False, db)
    assert not parallel.wanted(null, False, Path(":memory:"))
    assert not parallel.wanted(Config(), False, db)  # console: two processes would interleave


def _helpers_running() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"migrate_cli.notices.parallel" in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the helper")
def test_a_killed_run_takes_its_helper_down_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(ACCOUNTS), provider="file")
    proc, args = _start_slow_run(tmp_path, db)
    assert wait_for(lambda: bool(_helpers_running()), timeout=60), "no helper started"
    # The helper holds the run lock's descriptor: no second run while it still sends.
    (helper_pid,) = _helpers_running()
    lock = str(db) + ".lock"
    fds = [os.readlink(f) for f in Path(f"/proc/{helper_pid}/fd").iterdir()]
    assert lock in fds, fds
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert wait_for(lambda: not _helpers_running(), timeout=30), "the helper outlived its run"
    rerun = _rerun(tmp_path, args)
    ok(rerun, 0, 3)
    rows = query(db, "SELECT state, attempts FROM outbox")
    assert len(rows) == ACCOUNTS
    assert {r["attempts"] for r in rows} == {1}, "a notice was claimed twice"
    in_doubt = sum(r["state"] == "in_doubt" for r in rows)
    assert {r["state"] for r in rows} <= {"sent", "in_doubt"}
    assert in_doubt <= 200  # at most the killed run's one claimed batch


def test_a_helper_that_cannot_start_leaves_the_run_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(120), provider="file")
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 50)
    monkeypatch.setattr(notices_module, "ENQUEUE_CHUNK", 20)
    monkeypatch.setattr(parallel.sys, "executable", str(tmp_path / "no-such-python"))
    doc = json.loads(in_process(tmp_path, "--now", "2016-04-20", "notify", "--json"))
    assert doc["notices"]["sent"] == _check_all_sent_once(tmp_path, db) == 120


def test_sigterm_while_queuing_stops_the_queuing_and_the_helper(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(ACCOUNTS), provider="file")
    proc, _ = _start_slow_run(tmp_path, db, {"SLOW_QUEUE": "1"})
    assert wait_for(lambda: bool(_helpers_running()), timeout=60), "no helper started"
    queued_at_signal = query(db, "SELECT count(*) AS n FROM outbox")[0]["n"]
    assert queued_at_signal < ACCOUNTS, "queuing was over: nothing was tested"
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert time.monotonic() - started < 10, "the run kept going after SIGTERM"
    assert wait_for(lambda: not _helpers_running(), timeout=30), "the helper outlived its run"
    queued = query(db, "SELECT count(*) AS n FROM outbox")[0]["n"]
    assert queued < ACCOUNTS  # queuing stopped at the next chunk
    states = {r["state"] for r in query(db, "SELECT DISTINCT state FROM outbox")}
    assert states <= {"sent", "pending"}, states


def test_an_error_while_queuing_stops_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from migrate_cli.cli.app import app

    db = setup_store(tmp_path, MAIL, accounts=many_accounts(ACCOUNTS), provider="file")
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 50)
    monkeypatch.setattr(notices_module, "ENQUEUE_CHUNK", 20)
    enqueue = notices_module.enqueue
    calls = 0

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 10:  # the helper is running by then (it starts after 50 notices)
            time.sleep(0.5)
            raise sqlite3.OperationalError("disk I/O error")
        return enqueue(*args, **kwargs)

    monkeypatch.setattr(notices_module, "enqueue", failing)
    cfg = str(tmp_path / "migctl.toml")
    result = CliRunner().invoke(
        app, ["--db", str(db), "--config", cfg, "--now", "2016-04-20", "notify", "--json"]
    )
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert not _helpers_running()
    states = {r["state"] for r in query(db, "SELECT DISTINCT state FROM outbox")}
    assert states <= {"sent", "pending"}, states  # nothing left `sending`
    assert query(db, "SELECT count(*) AS n FROM outbox")[0]["n"] == 9 * 20


def test_a_failing_progress_display_never_undoes_a_send(tmp_path: Path) -> None:
    from migrate_cli.config import load_config
    from migrate_cli.notices.notify import notify
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    db = setup_store(tmp_path, MAIL, accounts=many_accounts(30), provider="file")
    config = load_config(tmp_path / "migctl.toml", explicit=True)

    def broken(n: int) -> None:
        raise BrokenPipeError("the parent is gone")

    with Store(db) as store:
        summary = notify(
            store,
            config,
            load_catalog(store),
            store_timezone(store),
            datetime(2016, 4, 20, tzinfo=UTC),
            progress=broken,
        )
    assert summary.dispatch.sent == _check_all_sent_once(tmp_path, db) == 30


def test_a_spooled_plan_is_the_same_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrate_cli.lifecycle import planning
    from migrate_cli.lifecycle.planning import plan_all
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    db = setup_store(tmp_path, MAIL, accounts=many_accounts(130), provider="file")
    monkeypatch.setattr(planning, "SPOOL_SLICE", 7)  # several slices, one partly filled
    now = datetime(2016, 4, 20, tzinfo=UTC)
    with Store(db) as store:
        catalog, tz = load_catalog(store), store_timezone(store)
        direct = list(plan_all(store, catalog, tz, now))
        spooled = list(plan_all(store, catalog, tz, now, spool=True))
    assert len(direct) >= 130 and spooled == direct


def test_without_a_temporary_folder_the_plan_is_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_cli.lifecycle import planning
    from migrate_cli.lifecycle.planning import plan_all
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    db = setup_store(tmp_path, MAIL, accounts=many_accounts(40), provider="file")

    def no_tmp() -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(planning.tempfile, "TemporaryFile", no_tmp)
    now = datetime(2016, 4, 20, tzinfo=UTC)
    with Store(db) as store:
        catalog, tz = load_catalog(store), store_timezone(store)
        expected = list(plan_all(store, catalog, tz, now))
        assert list(plan_all(store, catalog, tz, now, spool=True)) == expected
        assert len(expected) >= 40
