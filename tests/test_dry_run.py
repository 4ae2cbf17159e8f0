"""The dry run counts exactly what the real run queues: one planner, the same rows (issue 12).

`notify --dry-run` iterates the planner the real run queues from (`plan_all`), on random stores:
dated, per-plan (with TBD plans) and TBD migrations, accounts created before and after the grace
start, closed accounts, administrators of several accounts, suppressed addresses (some already
holding a suppressed notice), opt-ins, an earlier run, a moved mandatory date (schedule changes),
a retired migration, enforced plans, and `now` from before the grace period to past the dates.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate_cli.accounts.records import import_accounts
from migrate_cli.accounts.suppressions import add as suppress
from migrate_cli.definitions.model import load_definitions
from migrate_cli.errors import RuleError
from migrate_cli.lifecycle.enforcement import apply_enforcements, due_enforcements
from migrate_cli.lifecycle.opting import switch
from migrate_cli.lifecycle.planning import plan_all
from migrate_cli.notices.notify import plan_only
from migrate_cli.store.db import Store, db_time
from migrate_cli.store.outbox import PlannedNotice, enqueue
from migrate_cli.store.stored_migrations import get_migration, load_catalog, store_timezone
from migrate_cli.store.sync import sync
from tests.helpers_notices import account, write_csv

YAML = """\
defaults:
  timezone: America/New_York
  notices: {reminder_every: 7d, escalate_before: [14d, 3d], min_gap: 2d}
migrations:
  - id: dated
    title: Dated
    severity: high
    grace_period_start: 2016-04-04
    mandatory_opt_in: DATED
    summary: s
    description: d
  - id: per-plan
    title: Per plan
    severity: medium
    grace_period_start: 2016-04-01
    mandatory_opt_in: {free: 2016-04-25, developer: 2016-06-01}
    summary: s
    description: d
  - id: tbd
    title: Later
    severity: low
    grace_period_start: 2016-04-10
    mandatory_opt_in: TBD
    applies_to: {plans: [enterprise, developer]}
    summary: s
    description: d
"""

PLANS = ["free", "developer", "enterprise", "startup"]
START = datetime(2016, 3, 25, tzinfo=UTC)

accounts_st = st.lists(
    st.tuples(
        st.sampled_from(PLANS),
        st.sampled_from(["2015-01-01", "2016-04-05", "2016-04-20"]),  # before/after grace starts
        st.sampled_from(["active", "active", "active", "closed"]),
        st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),  # administrators
    ),
    min_size=1,
    max_size=14,
)


def _sync(folder: Path, store: Store, dated: str, now: datetime, *, retire: bool = False) -> None:
    text = YAML.replace("DATED", dated)
    if retire:  # the TBD migration is no longer defined: sync retires it
        text = text[: text.index("  - id: tbd")]
    (folder / "m.yaml").write_text(text)
    sync(store, load_definitions(folder / "m.yaml"), now=now, actor="t")


def _build(folder: Path, accounts: list[Any], suppressed: set[int], opted: list[int]) -> Path:
    db = folder / "migctl.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    rows = [
        account(
            f"acc-{i:02d}",
            [f"a{j}@x.test" for j in admins],
            plan=plan,
            created_at=created,
            status=status,
        )
        for i, (plan, created, status, admins) in enumerate(accounts)
    ]
    with Store(db) as store:
        _sync(folder, store, "2016-05-11", START)
        import_accounts(store, write_csv(folder / "a.csv", rows), now=START, actor="t")
        for j in sorted(suppressed):
            suppress(store, f"a{j}@x.test", reason="bounced", source="test", now=START, actor="t")
        tz = store_timezone(store)
        for i in opted:
            if i < len(accounts) and accounts[i][2] == "active":
                with contextlib.suppress(RuleError):  # outside the audience: not the point here
                    switch(
                        store,
                        get_migration(store, "dated"),
                        tz,
                        [f"acc-{i:02d}"],
                        opt_in=True,
                        now=datetime(2016, 4, 6, tzinfo=UTC),
                        actor="t",
                        reason=None,
                    )
    return db


def _earlier_run(db: Path, when: datetime, sent_every: int) -> None:
    """A run at ``when``, then some of its rows sent and the rest left as they are."""
    with Store(db) as store:
        catalog = load_catalog(store)
        tz = store_timezone(store)
        with store.transaction() as conn:
            enqueue(conn, plan_all(store, catalog, tz, when), now=when, from_addr="n@x.test")
            conn.execute(
                "UPDATE outbox SET state = 'sent' WHERE state = 'pending' AND id % ? = 0",
                (sent_every,),
            )


def _check(db: Path, now: datetime) -> None:
    """On the store file and on an in-memory copy (the path of `run --dry-run`)."""
    with Store(db) as disk:
        memory = Store.in_memory_copy(disk)
        for store in (disk, memory):
            _compare(store, now)
        memory.close()


def _compare(store: Store, now: datetime) -> None:
    catalog = load_catalog(store)
    tz = store_timezone(store)
    for only in (None, "per-plan"):
        dry = plan_only(store, catalog, tz, now, only)
        work = Store.in_memory_copy(store)
        try:
            with work.transaction() as conn:
                queued = enqueue(
                    conn, plan_all(work, catalog, tz, now, only), now=now, from_addr="n@x.test"
                )
            keys = [
                r[0]
                for r in work.conn.execute(
                    "SELECT key FROM outbox WHERE created_at = ? ORDER BY id", (db_time(now),)
                )
            ]
        finally:
            work.close()
        assert (dry.planned, dry.suppressed, dry.by_kind) == (
            queued.enqueued,
            queued.suppressed,
            queued.by_kind,
        )
        assert sorted(n.key for n in dry.sample) == sorted(keys)  # a few: all of them shown


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    accounts=accounts_st,
    suppressed=st.sets(st.integers(0, 7), max_size=3),
    opted=st.lists(st.integers(0, 13), max_size=4),
    earlier=st.none() | st.integers(0, 40),
    sent_every=st.integers(1, 3),
    moved=st.sampled_from([None, "2016-05-04", "2016-06-20", "TBD"]),
    retire=st.booleans(),
    enforce_at=st.none() | st.integers(20, 60),
    later=st.integers(0, 80),
)
def test_dry_run_counts_and_sample_equal_the_plan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    accounts: list[Any],
    suppressed: set[int],
    opted: list[int],
    earlier: int | None,
    sent_every: int,
    moved: str | None,
    retire: bool,
    enforce_at: int | None,
    later: int,
) -> None:
    db = _build(tmp_path, accounts, suppressed, opted)
    now = START + timedelta(days=later, hours=13)
    if earlier is not None:
        when = START + timedelta(days=earlier, hours=9)
        _earlier_run(db, when, sent_every)
        now = max(now, START + timedelta(days=earlier + 1, hours=13))
        if moved is not None or retire:  # after the run: schedule changes are due, or none
            with Store(db) as store:
                _sync(
                    tmp_path, store, moved or "2016-05-11", when + timedelta(hours=1), retire=retire
                )
    if enforce_at is not None:  # e.g. per-plan's free accounts (2016-04-25) or everything dated
        at = START + timedelta(days=enforce_at, hours=12)
        with Store(db) as store:
            catalog = load_catalog(store)
            tz = store_timezone(store)
            batches = due_enforcements(store, catalog, tz, at, with_admins=False)
            apply_enforcements(store, catalog, tz, at, batches, actor="t", from_addr="n@x.test")
        now = max(now, at + timedelta(hours=1))
    _check(db, now)


def test_the_dry_run_reports_the_counts(tmp_path: Path) -> None:
    accounts = [("developer", "2015-01-01", "active", [j % 5, 7]) for j in range(12)]
    db = _build(tmp_path, accounts, {7}, [])
    now = datetime(2016, 4, 20, 13, tzinfo=UTC)
    with Store(db) as store:
        catalog = load_catalog(store)
        tz = store_timezone(store)
        summary = plan_only(store, catalog, tz, now, None)
        reference = list(plan_all(store, catalog, tz, now))
    # a0..a4 about each of the three migrations; a7 (suppressed) once per migration.
    assert (summary.planned, summary.suppressed) == (15, 3)
    assert summary.by_kind == {"announcement": 15}
    assert summary.sample == [PlannedNotice(**{**n.__dict__, "listed": None}) for n in reference]


def test_a_suppressed_administrator_holding_the_key_is_not_counted(tmp_path: Path) -> None:
    accounts = [("developer", "2015-01-01", "active", [1])]
    db = _build(tmp_path, accounts, {1}, [])
    when = datetime(2016, 4, 20, 13, tzinfo=UTC)
    _earlier_run(db, when, 1)  # a1's announcements are queued as suppressed
    with Store(db) as store:
        catalog = load_catalog(store)
        tz = store_timezone(store)
        assert store.scalar("SELECT count(*) FROM outbox WHERE state = 'suppressed'") == 3
        dry = plan_only(store, catalog, tz, when + timedelta(hours=1), None)
    assert (dry.planned, dry.suppressed, dry.sample) == (0, 0, [])


def test_an_empty_store_has_nothing_to_count(tmp_path: Path) -> None:
    with Store(tmp_path / "empty.db") as store:
        _sync(tmp_path, store, "2016-05-11", START)
        catalog = load_catalog(store)
        dry = plan_only(
            store, catalog, store_timezone(store), datetime(2016, 4, 20, tzinfo=UTC), None
        )
    assert (dry.planned, dry.suppressed, dry.by_kind, dry.sample) == (0, 0, {}, [])
