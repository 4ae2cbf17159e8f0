"""`plan --until` at scale equals the day-by-day simulation it replaced, on every input tried.

The rehearsal groups each migration's administrators once by what the verdict depends on and
steps the days on the groups (`lifecycle/rehearsal.py`). The reference (`rehearsal_reference`)
copies the store into memory and runs the real enforcement, planner and outbox every day. Random
small stores cover: one date, per-plan dates with TBD plans, TBD, each migration with its own
cadence (reminder_every, escalate_before, min_gap) in its migrations.yaml; administrators of
several accounts across plans; accounts created after the grace start; closed accounts; early
opt-ins; suppressed addresses; notices queued, sent or left pending before the rehearsal
(also at its very instant, or after it); a moved date (schedule changes); a retired migration; an
enforcement already done; dates already past when it starts; a date moved into the past (held by
min_notice); two schedule changes, some administrators told of the first (PastDates); an
immediate enforcement followed by an account imported late (rule 3); accounts extended to dates
of their own (rule 3b).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st

from migrate_cli.accounts.records import import_accounts
from migrate_cli.accounts.suppressions import add as suppress
from migrate_cli.definitions.model import load_definitions
from migrate_cli.errors import NotFoundError, RuleError
from migrate_cli.lifecycle.enforcement import (
    apply_enforcements,
    due_enforcements,
    immediate_enforcement,
)
from migrate_cli.lifecycle.extensions import extend
from migrate_cli.lifecycle.opting import switch
from migrate_cli.lifecycle.planning import plan_all
from migrate_cli.lifecycle.rehearsal import simulate
from migrate_cli.store.db import Store
from migrate_cli.store.outbox import enqueue
from migrate_cli.store.stored_migrations import get_migration, load_catalog, store_timezone
from migrate_cli.store.sync import sync
from tests import fuzz_settings
from tests.helpers_notices import account, write_csv
from tests.rehearsal_reference import reference_simulate

PLANS = ["free", "developer", "enterprise", "startup"]
MIGRATIONS = ["dated", "per-plan", "tbd"]
START = datetime(2016, 3, 25, tzinfo=UTC)
DATES = ["2016-04-12", "2016-04-25", "2016-05-11", "2016-06-01"]
EXTENDED = ["2016-04-20", "2016-05-11", "2016-05-30", "2016-06-15"]  # some refused: not later

cadence_st = st.fixed_dictionaries(
    {
        "reminder_every": st.sampled_from(["36h", "7d", "10d", "never"]),
        "escalate_before": st.lists(st.sampled_from(["14d", "7d", "3d", "1d"]), unique=True),
        "min_gap": st.sampled_from(["0d", "1d", "2d", "3d"]),
    }
)
accounts_st = st.lists(
    st.tuples(
        st.sampled_from(PLANS),
        st.sampled_from(["2015-01-01", "2016-04-05", "2016-04-20"]),  # before/after grace starts
        st.sampled_from(["active", "active", "active", "closed"]),
        st.lists(st.integers(0, 7), min_size=0, max_size=3, unique=True),  # administrators
    ),
    min_size=1,
    max_size=14,
)


def _yaml(dated: str, per_plan: dict[str, str], cadence: dict[str, dict[str, Any]]) -> str:
    """migrations.yaml as an operator writes it; the TBD migration last (retire cuts it off)."""
    plan_map = "{" + ", ".join(f"{p}: {d}" for p, d in per_plan.items()) + "}"
    blocks = {
        "dated": ("high", "2016-04-04", dated, ""),
        "per-plan": ("medium", "2016-04-01", plan_map if per_plan else "TBD", ""),
        "tbd": ("low", "2016-04-10", "TBD", "    applies_to: {plans: [enterprise, developer]}\n"),
    }
    text = "defaults:\n  timezone: America/New_York\nmigrations:\n"
    for mid, (severity, start, mandatory, extra) in blocks.items():
        c = cadence[mid]
        text += (
            f"  - id: {mid}\n    title: {mid}\n    severity: {severity}\n"
            f"    grace_period_start: {start}\n    mandatory_opt_in: {mandatory}\n"
            f"    summary: s\n    description: d\n{extra}"
            f"    notices: {{reminder_every: {c['reminder_every']}, "
            f"escalate_before: [{', '.join(c['escalate_before'])}], min_gap: {c['min_gap']}}}\n"
        )
    return text


def _sync(folder: Path, store: Store, text: str, now: datetime, *, retire: bool = False) -> None:
    if retire:  # the TBD migration is no longer defined: sync retires it
        text = text[: text.index("  - id: tbd")]
    (folder / "migrations.yaml").write_text(text)
    sync(store, load_definitions(folder / "migrations.yaml"), now=now, actor="t")


def _queue(store: Store, when: datetime, sent_every: int) -> None:
    """A run's notices queued at ``when``; some sent, the others left pending."""
    catalog = load_catalog(store)
    tz = store_timezone(store)
    with store.transaction() as conn:
        enqueue(conn, plan_all(store, catalog, tz, when), now=when, from_addr="n@x.test")
        conn.execute(
            "UPDATE outbox SET state = 'sent' WHERE state = 'pending' AND id % ? = 0",
            (sent_every,),
        )


_QUIET = {"reminder_every": "7d", "escalate_before": [], "min_gap": "0d"}


@fuzz_settings.examples(80, 600)
# Found by mutation: an `enforced` notice is the administrator's last notice for the planner,
# here for the TBD-plan account they still have (a reminder every 36 hours).
@example(
    accounts=[("free", "2015-01-01", "active", [0]), ("developer", "2015-01-01", "active", [0])],
    dated="2016-04-12",
    per_plan={"free": "2016-04-12"},
    cadence={"dated": _QUIET, "per-plan": {**_QUIET, "reminder_every": "36h"}, "tbd": _QUIET},
    suppressed=set(),
    opted=[],
    earlier=None,
    sent_every=1,
    moved=None,
    moved_again=None,
    retire=False,
    enforce_at=None,
    later=0,
    queued_at_start=False,
    days=80,
    hour=13,
    rewind=False,
    immediate=None,
    late_plan=None,
    extended=[],
)
# Two accounts of one administrator extended past their plan's date, to different dates.
@example(
    accounts=[
        ("free", "2015-01-01", "active", [0]),
        ("free", "2015-01-01", "active", [0, 1]),
        ("free", "2015-01-01", "active", [1]),
    ],
    dated="2016-04-12",
    per_plan={"free": "2016-04-12"},
    cadence={"dated": _QUIET, "per-plan": _QUIET, "tbd": _QUIET},
    suppressed=set(),
    opted=[],
    earlier=None,
    sent_every=1,
    moved=None,
    moved_again=None,
    retire=False,
    enforce_at=None,
    later=0,
    queued_at_start=False,
    days=80,
    hour=13,
    rewind=False,
    immediate=None,
    late_plan=None,
    extended=[
        ("per-plan", 1, "2016-05-11"),
        ("per-plan", 2, "2016-05-30"),
        ("dated", 0, "2016-04-20"),
    ],
)
# Per-plan dates moved twice; administrators of mixed plans told of the first change, or not.
@example(
    accounts=[
        ("free", "2015-01-01", "active", [0, 1]),
        ("enterprise", "2015-01-01", "active", [0, 2]),
        ("developer", "2015-01-01", "active", [3]),
        ("enterprise", "2015-01-01", "active", [1]),
    ],
    dated="2016-04-25",
    per_plan={"free": "2016-04-25", "enterprise": "2016-05-11"},
    cadence={"dated": _QUIET, "per-plan": _QUIET, "tbd": _QUIET},
    suppressed=set(),
    opted=[],
    earlier=10,
    sent_every=2,
    moved="2016-05-04",
    moved_again="TBD",
    retire=False,
    enforce_at=None,
    later=0,
    queued_at_start=False,
    days=40,
    hour=13,
    rewind=False,
    immediate=None,
    late_plan=None,
    extended=[("per-plan", 3, "2016-05-30")],
)
# An immediate enforcement of a TBD migration, then an account imported late (rule 3).
@example(
    accounts=[("enterprise", "2015-01-01", "active", [0])],
    dated="2016-04-12",
    per_plan={"free": "2016-04-12"},
    cadence={"dated": _QUIET, "per-plan": _QUIET, "tbd": _QUIET},
    suppressed=set(),
    opted=[],
    earlier=None,
    sent_every=1,
    moved=None,
    moved_again=None,
    retire=False,
    enforce_at=None,
    later=0,
    queued_at_start=False,
    days=7,
    hour=13,
    rewind=False,
    immediate="tbd",
    late_plan="developer",
    extended=[],
)
@given(
    accounts=accounts_st,
    dated=st.sampled_from(DATES),
    per_plan=st.dictionaries(
        st.sampled_from(PLANS), st.sampled_from(DATES), min_size=1, max_size=3
    ),
    cadence=st.fixed_dictionaries({m: cadence_st for m in MIGRATIONS}),
    suppressed=st.sets(st.integers(0, 7), max_size=3),
    opted=st.lists(st.tuples(st.sampled_from(MIGRATIONS), st.integers(0, 13)), max_size=4),
    earlier=st.none() | st.integers(0, 40),
    sent_every=st.integers(1, 3),
    moved=st.sampled_from([None, "2016-05-04", "2016-06-20", "TBD", "2016-04-05"]),  # 04-05: held
    # a second change, after a run that told some administrators of the first
    moved_again=st.sampled_from([None, None, "2016-05-20", "TBD"]),
    retire=st.booleans(),
    enforce_at=st.none() | st.integers(20, 60),
    later=st.integers(0, 70),
    queued_at_start=st.booleans(),
    days=st.sampled_from([80, 60, 40, 20, 7, 2, 1, 0]),  # long first: the dates come
    hour=st.sampled_from([13, 4]),  # 04:00 UTC is midnight in New York: the mandatory instant
    rewind=st.booleans(),
    immediate=st.sampled_from([None, "tbd", "per-plan"]),
    late_plan=st.none() | st.sampled_from(PLANS),
    extended=st.lists(
        st.tuples(st.sampled_from(MIGRATIONS), st.integers(0, 13), st.sampled_from(EXTENDED)),
        max_size=4,
    ),
)
def test_the_rehearsal_equals_the_day_by_day_simulation(
    tmp_path_factory: Any,
    accounts: list[Any],
    dated: str,
    per_plan: dict[str, str],
    cadence: dict[str, dict[str, Any]],
    suppressed: set[int],
    opted: list[tuple[str, int]],
    earlier: int | None,
    sent_every: int,
    moved: str | None,
    moved_again: str | None,
    retire: bool,
    enforce_at: int | None,
    later: int,
    queued_at_start: bool,
    days: int,
    hour: int,
    rewind: bool,
    immediate: str | None,
    late_plan: str | None,
    extended: list[tuple[str, int, str]],
) -> None:
    fuzz_settings.count("rehearsal equivalence")
    folder = tmp_path_factory.mktemp("rehearsal")
    text = _yaml(dated, per_plan, cadence)
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
    now = START + timedelta(days=later, hours=hour)
    with Store(folder / "migctl.db") as store:
        _sync(folder, store, text, START)
        import_accounts(store, write_csv(folder / "a.csv", rows), now=START, actor="t")
        for j in sorted(suppressed):
            suppress(store, f"a{j}@x.test", reason="bounced", source="test", now=START, actor="t")
        tz = store_timezone(store)
        for mid, i in opted:
            with contextlib.suppress(RuleError):  # closed, outside the audience, not in grace
                switch(
                    store,
                    get_migration(store, mid),
                    tz,
                    [f"acc-{i % len(accounts):02d}"],
                    opt_in=True,
                    now=datetime(2016, 4, 11, tzinfo=UTC),
                    actor="t",
                    reason=None,
                )
        for mid, i, until in extended:
            # refused: closed, outside the audience, switched, TBD, not later than its date
            with contextlib.suppress(RuleError, NotFoundError):
                extend(
                    store,
                    get_migration(store, mid),
                    tz,
                    f"acc-{i % len(accounts):02d}",
                    until=date.fromisoformat(until),
                    reason="asked",
                    now=datetime(2016, 4, 11, 6, tzinfo=UTC),
                    actor="t",
                )
        if earlier is not None:
            when = START + timedelta(days=earlier, hours=9)
            _queue(store, when, sent_every)
            now = max(now, START + timedelta(days=earlier + 1, hours=hour))
            if moved is not None or retire:  # after the run: schedule changes are due
                _sync(folder, store, text.replace(dated, moved or dated), when, retire=retire)
            if moved is not None and moved_again is not None:
                # Some administrators are told of the first change, then the dates move
                # again: each is compared with the dates they were told of (PastDates).
                _queue(store, when + timedelta(days=2), sent_every)
                again = text.replace(dated, moved_again)
                _sync(folder, store, again, when + timedelta(days=2, hours=1), retire=retire)
                now = max(now, START + timedelta(days=earlier + 3, hours=hour))
        if enforce_at is not None:
            at = START + timedelta(days=enforce_at, hours=12)
            catalog = load_catalog(store)
            batches = due_enforcements(store, catalog, tz, at, with_admins=False)
            apply_enforcements(store, catalog, tz, at, batches, actor="t", from_addr="n@x.test")
            now = max(now, START + timedelta(days=enforce_at + 1, hours=hour))
        if immediate is not None:  # `enforce --immediately`, then an account imported late
            at = START + timedelta(days=18, hours=12)
            sm = get_migration(store, immediate)
            if sm.status == "active":
                batch = immediate_enforcement(store, sm, tz)
                apply_enforcements(
                    store,
                    load_catalog(store),
                    tz,
                    at,
                    [batch],
                    actor="t",
                    from_addr="n@x.test",
                    reason="CVE",
                )
            if late_plan is not None:
                late = account("late-1", ["a0@x.test", "a6@x.test"], plan=late_plan)
                import_accounts(store, write_csv(folder / "late.csv", [late]), now=at, actor="t")
            now = max(now, START + timedelta(days=19, hours=hour))
        if rewind and earlier is not None:  # rehearsing from before the notices already sent
            now -= timedelta(days=3)
        if queued_at_start:  # a run at the rehearsal's own instant, its notices partly unsent
            _queue(store, now, sent_every + 1)
        until = now.astimezone(tz).date() + timedelta(days=days)
        expected = [d.to_json() for d in reference_simulate(store, now, until, from_addr="n@x")]
        got = [d.to_json() for d in simulate(store, now, until)]
    event(f"days {len(expected) // 20 * 20}+")
    for d in expected:  # what the examples exercised (pytest --hypothesis-show-statistics)
        for mid, kinds in d["notices"].items():
            for kind in kinds:
                event(f"{mid}: {kind}")
        for mid in d["enforced"]:
            event(f"{mid}: accounts enforced on day {'0' if d is expected[0] else 'n'}")
    # Serialised: the order of migrations and kinds (what the table and the JSON show) too.
    assert json.dumps(got) == json.dumps(expected)
