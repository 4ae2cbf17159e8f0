"""The run lock: one holder at a time, the others exit 75 at once naming it; no stale locks."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from helpers_enforce import (
    MAIL,
    base_env,
    command,
    holder_pid,
    migctl,
    read_log,
    setup_store,
    wait_for,
)

from migrate_cli.errors import EXIT_LOCKED, LockHeldError
from migrate_cli.store.lock import store_lock


def start_run(folder: Path, log: Path, sleep: float, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(folder, *args, "run", "--json", wrapper=True),
        cwd=folder,
        env=base_env({"ENFTEST_LOG": str(log), "ENFTEST_SLEEP": str(sleep)}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lock_is_held(db: Path) -> bool:
    try:
        with store_lock(db, timeout=0):
            return False
    except LockHeldError:
        return True


@pytest.mark.slow
def test_two_concurrent_runs_one_runs_the_other_exits_75_naming_the_holder(
    tmp_path: Path,
) -> None:
    db = setup_store(tmp_path, MAIL, provider="null")
    log = tmp_path / "sent.log"
    first = start_run(tmp_path, log, 0.6, "--now", "2016-05-11")
    try:
        assert wait_for(lambda: len(read_log(log)) >= 1), "the first run never started sending"
        # Frozen mid-send, the holder keeps the lock for as long as the test wants: the second
        # run can only finish by giving up, never by waiting for the holder (no clock involved).
        os.kill(first.pid, signal.SIGSTOP)
        assert lock_is_held(db), "the holder finished before it could be frozen"
        second = migctl(tmp_path, "--now", "2016-05-11", "run", "--json")
        assert second.returncode == EXIT_LOCKED, second
        message = " ".join(second.stderr.split())  # Rich wraps stderr at 80 columns
        assert f"pid {first.pid}" in message and "(run)" in message
        assert second.stdout == ""
        assert lock_is_held(db)
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert '"enforced":{"mail":6}' in out
    keys = read_log(log)
    assert len(keys) == 7 and len(set(keys)) == 7


@pytest.mark.slow
def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, provider="null")
    log = tmp_path / "sent.log"
    victim = start_run(tmp_path, log, 0.5, "--now", "2016-05-11")
    assert wait_for(lambda: len(read_log(log)) >= 1), "the run never started sending"
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    assert holder_pid(db) == victim.pid  # the note stays behind, the OS lock does not

    nxt = migctl(
        tmp_path,
        "--now",
        "2016-05-11",
        "run",
        "--json",
        env={"ENFTEST_LOG": str(log)},
        wrapper=True,
    )
    # The killed run's claimed rows are in doubt: exit 3, never 75 (the OS freed its lock).
    assert nxt.returncode == 3, nxt
    keys = read_log(log)
    assert len(keys) == len(set(keys))


def test_every_state_changing_command_exits_75_while_the_lock_is_held(
    synced_store: Path, runner, tmp_path: Path
) -> None:
    (tmp_path / "ids.txt").write_text("acme-prod\n")
    with store_lock(synced_store, command="run"):
        for args in (
            ["run"],
            ["run", "--dry-run"],
            ["enforce"],
            ["enforce", "email-delivery-changes", "--immediately", "--reason", "r"],
            ["sync", "--file", str(Path(__file__).parent.parent / "migrations.yaml")],
            ["opt-in", "email-delivery-changes", "--account", "acme-prod"],
            ["accounts", "import", str(Path(__file__).parent.parent / "examples/accounts.csv")],
            ["notify"],
            ["outbox", "resolve", "1", "--sent"],
            ["outbox", "retry"],
            ["suppress", "add", "x@y.test"],
        ):
            r = runner("--db", synced_store, "--now", "2016-05-11", *args)
            assert r.exit_code == EXIT_LOCKED, (args, r.stdout, r.stderr)
            assert f"pid {os.getpid()}" in " ".join(r.stderr.split()), args
        # Reading is never blocked by a run.
        for args in (["status", "--json"], ["plan", "--until", "2016-05-20", "--json"]):
            r = runner("--db", synced_store, "--now", "2016-05-11", *args)
            assert r.exit_code == 0, (args, r.stdout, r.stderr)
    # Released: the next command proceeds.
    r = runner("--db", synced_store, "--now", "2016-05-11", "enforce", "--json")
    assert r.exit_code == 0, r.stderr


def test_lock_wait_is_bounded(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    refused: list[LockHeldError] = []

    def second_holder() -> None:
        try:
            with store_lock(db):
                pass
        except LockHeldError as exc:
            refused.append(exc)

    with store_lock(db, command="run"):
        waiter = threading.Thread(target=second_holder)
        waiter.start()
        # Only a guard against hanging forever: the wait itself is 0.5 s, 120 times less.
        waiter.join(timeout=60)
        assert not waiter.is_alive(), "store_lock waited for the holder instead of giving up"
    (info,) = refused
    assert info.exit_code == EXIT_LOCKED
    assert "holds the lock" in str(info)
    with store_lock(db):  # free again
        pass
