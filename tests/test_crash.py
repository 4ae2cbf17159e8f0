"""Crash safety of `migctl run`: SIGKILL at random points, SIGTERM, then a rerun finishes the job.

The provider (helpers_enforce.LoggingProvider, swapped in through a wrapper script) appends each
notice key to a log with fsync *before* it reports SENT, so the log is the ground truth of what
was delivered. After the dust settles: no key delivered twice, every delivered key is `sent` or
`in_doubt`, nothing left `sending`, no account half-enforced, and the store is intact.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers_enforce import (
    MAIL,
    base_env,
    command,
    holder_pid,
    query,
    read_log,
    setup_store,
    wait_for,
    write_yaml,
)

from migrate_cli.notices.dispatch import SERIAL_BATCH

ACCOUNTS = 2_000
KILLS = 5


def many_accounts(n: int) -> str:
    """n accounts, one administrator each; every 10th also has a team address shared by 5."""
    rows = ["id,name,plan,tags,created_at,status,admins"]
    for i in range(n):
        admins = [f"u{i}@x.test"] + ([f"team{i // 50}@x.test"] if i % 10 == 0 else [])
        plan = "enterprise" if i % 3 == 0 else "free"
        rows.append(f"acc-{i:05d},Account {i},{plan},,2015-01-01,active,{';'.join(admins)}")
    return "\n".join(rows) + "\n"


def expected_admins(n: int) -> int:
    return n + len({i // 50 for i in range(n) if i % 10 == 0})


def start(folder: Path, log: Path, sleep: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(folder, "--now", "2016-05-11T12:00:00", "run", "--json", wrapper=True),
        cwd=folder,
        env=base_env({"ENFTEST_LOG": str(log), "ENFTEST_SLEEP": str(sleep)}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def enforcement_state(db: Path, accounts: int) -> str:
    """'none' or 'complete'; anything in between fails the test."""
    enforced = query(db, "SELECT count(*) AS n FROM enrollments WHERE state = 'enforced'")[0]["n"]
    record = query(db, "SELECT accounts FROM enforcements WHERE migration_id = 'mail'")
    audits = query(
        db, "SELECT count(DISTINCT account_id) AS n FROM audit WHERE action = 'enrollment.enforced'"
    )[0]["n"]
    notices = query(db, "SELECT count(*) AS n FROM outbox WHERE kind = 'enforced'")[0]["n"]
    if enforced == 0:
        assert record == [] and audits == 0 and notices == 0
        return "none"
    assert enforced == accounts
    assert record[0]["accounts"] == accounts
    assert audits == accounts  # every enforced account has its audit event
    assert notices == expected_admins(accounts)  # queued in the same transaction
    return "complete"


def check_invariants(db: Path, log: Path) -> dict[str, int]:
    assert query(db, "PRAGMA integrity_check")[0][0] == "ok"
    delivered = read_log(log)
    dupes = [k for k, n in Counter(delivered).items() if n > 1]
    assert dupes == [], f"{len(dupes)} notice(s) delivered more than once, e.g. {dupes[:3]}"
    outbox = {r["key"]: r["state"] for r in query(db, "SELECT key, state FROM outbox")}
    for key in delivered:
        assert outbox.get(key) in ("sent", "in_doubt"), (key, outbox.get(key))
    sent = {k for k, s in outbox.items() if s == "sent"}
    assert sent <= set(delivered), "a row is `sent` that the provider never accepted"
    by_state = Counter(outbox.values())
    assert by_state["sending"] == 0
    return dict(by_state)


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun(tmp_path: Path) -> None:
    seed = int(os.environ.get("MIGCTL_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (set MIGCTL_CRASH_SEED to replay)")
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(ACCOUNTS), provider="null")
    # A changed file: the first run also syncs, one more place to be killed in.
    write_yaml(tmp_path, MAIL.replace("Mail delivery change", "Mail delivery change (v2)"))
    log = tmp_path / "delivered.log"
    killed_before_enforcement = 0
    for attempt in range(KILLS):
        proc = start(tmp_path, log, 0.001)
        assert wait_for(lambda p=proc: holder_pid(db) == p.pid or p.poll() is not None)
        if attempt < 2:
            # The first two kills aim at sync/enforcement; nothing outside marks a point in
            # there, so a short random delay does (any point is a valid one to kill at).
            time.sleep(rng.uniform(0.0, 0.25))
        else:
            # The others land in the sending, after a random number of further deliveries.
            target = len(read_log(log)) + rng.randint(1, 400)
            wait_for(lambda p=proc, t=target: len(read_log(log)) >= t or p.poll() is not None)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        if enforcement_state(db, ACCOUNTS) == "none":
            killed_before_enforcement += 1
        claimed = query(db, "SELECT count(*) AS n FROM outbox WHERE state = 'sending'")[0]["n"]
        # What the next run reports in doubt is at most one claimed batch.
        assert claimed <= SERIAL_BATCH
        check_invariants_partial(db, log)

    for _ in range(3):  # run to completion (a final run finds nothing left)
        final = subprocess.run(
            command(tmp_path, "--now", "2016-05-11T12:00:00", "run", "--json", wrapper=True),
            cwd=tmp_path,
            env=base_env({"ENFTEST_LOG": str(log)}),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        summary = json.loads(final.stdout)
        # Partial (3) exactly while a killed run's claimed rows are reported in doubt.
        assert final.returncode == (3 if summary["notices"]["in_doubt"] else 0), final.stderr
        if not query(db, "SELECT 1 FROM outbox WHERE state = 'pending'"):
            break
    assert enforcement_state(db, ACCOUNTS) == "complete"
    pending = query(
        db,
        "SELECT count(*) AS n FROM accounts a WHERE a.status = 'active' AND NOT EXISTS "
        "(SELECT 1 FROM enrollments e WHERE e.migration_id = 'mail' AND e.account_id = a.id)",
    )[0]["n"]
    assert pending == 0
    by_state = check_invariants(db, log)
    assert set(by_state) <= {"sent", "in_doubt"}, by_state
    assert sum(by_state.values()) == expected_admins(ACCOUNTS)
    assert by_state.get("in_doubt", 0) <= KILLS * SERIAL_BATCH
    assert summary["notices"]["in_doubt"] == by_state.get("in_doubt", 0)
    unsent_in_doubt = len(
        {k for k, s in query_keys(db).items() if s == "in_doubt"} - set(read_log(log))
    )
    print(
        f"kills={KILLS} before-enforcement={killed_before_enforcement} states={by_state} "
        f"in-doubt-but-never-delivered={unsent_in_doubt}"
    )


def query_keys(db: Path) -> dict[str, str]:
    return {r["key"]: r["state"] for r in query(db, "SELECT key, state FROM outbox")}


def check_invariants_partial(db: Path, log: Path) -> None:
    """After a kill: intact store, nothing delivered twice, every `sent` row really delivered."""
    assert query(db, "PRAGMA integrity_check")[0][0] == "ok"
    delivered = read_log(log)
    assert len(delivered) == len(set(delivered))
    sent = {k for k, s in query_keys(db).items() if s == "sent"}
    assert sent <= set(delivered)


@pytest.mark.slow
def test_sigterm_finishes_the_send_in_flight_and_records_it(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(300), provider="null")
    log = tmp_path / "delivered.log"
    proc = start(tmp_path, log, 0.01)
    assert wait_for(lambda: len(read_log(log)) >= 20), "the run never started sending"
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # Stopped cleanly: nothing failed or in doubt, so not partial (the rest is still pending).
    assert proc.returncode == 0, err
    summary = json.loads(out)
    keys = query_keys(db)
    delivered = read_log(log)
    states = Counter(keys.values())
    assert states["sending"] == 0 and states["in_doubt"] == 0
    assert {k for k, s in keys.items() if s == "sent"} == set(delivered)
    assert summary["notices"]["sent"] == len(delivered)
    assert states["pending"] > 0, "the run should have stopped early"
    # The rest goes out on the next run, once each.
    rerun = subprocess.run(
        command(tmp_path, "--now", "2016-05-11T12:00:00", "run", "--json", wrapper=True),
        cwd=tmp_path,
        env=base_env({"ENFTEST_LOG": str(log)}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    delivered = read_log(log)
    assert len(delivered) == len(set(delivered)) == expected_admins(300)
    assert set(query_keys(db).values()) == {"sent"}


@pytest.mark.slow
def test_a_kill_puts_only_the_sends_in_flight_in_doubt(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, accounts=many_accounts(300), provider="null")
    log = tmp_path / "delivered.log"
    proc = start(tmp_path, log, 0.01)
    assert wait_for(lambda: len(read_log(log)) >= 20), "the run never started sending"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    keys = query_keys(db)
    unrecorded = {k for k, s in keys.items() if s == "sending"}
    delivered = set(read_log(log))
    # Rows `sending` after the kill become in doubt: they should be the send in flight (and
    # at most a handful whose outcome was not yet committed), not a whole claimed batch.
    assert len(unrecorded) <= 10, (len(unrecorded), len(unrecorded & delivered))
