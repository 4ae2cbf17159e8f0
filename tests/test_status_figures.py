"""Status figures are cached per data version: reused while nothing changes, never stale."""

from __future__ import annotations

import json
import random
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import migrate_cli.lifecycle.status_figures as figures_module
from migrate_cli.accounts.records import import_accounts
from migrate_cli.accounts.suppressions import add as suppress
from migrate_cli.definitions.model import load_definitions
from migrate_cli.errors import NotFoundError
from migrate_cli.lifecycle.enforcement import (
    apply_enforcements,
    due_enforcements,
    immediate_enforcement,
)
from migrate_cli.lifecycle.enrollment import account_state
from migrate_cli.lifecycle.opting import switch
from migrate_cli.lifecycle.phases import plan_in_grace
from migrate_cli.lifecycle.status import status_report
from migrate_cli.lifecycle.status_figures import (
    REACHABILITY_KEY,
    migration_key,
    unreachable_accounts,
)
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import get_migration, load_catalog, store_timezone
from migrate_cli.store.sync import sync
from tests import fuzz_settings
from tests.conftest import RunCli

NOW = datetime(2016, 4, 20, tzinfo=UTC)
MIG = "email-delivery-changes"


def _figures(store: Store) -> dict[str, object]:
    doc = status_report(store, NOW)
    (m,) = [x for x in doc["migrations"] if x["id"] == MIG]
    return {
        **m["accounts"],
        "admins_pending": m["admins_pending"],
        "unreachable": doc["accounts_all_admins_suppressed"],
    }


def test_second_status_uses_the_cache(synced_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(synced_store) as store:
        first = _figures(store)
        assert store.scalar("SELECT count(*) FROM status_cache") >= 3

        def boom(*args: object, **kwargs: object) -> None:
            raise AssertionError("recounted although nothing changed")

        monkeypatch.setattr(figures_module, "state_counts", boom)
        monkeypatch.setattr(figures_module, "admins_pending", boom)
        assert _figures(store) == first


def test_only_status_figures_touches_the_cache() -> None:
    """One home: the table and the data-version bump are used by lifecycle/status_figures.py
    only (besides the schema that creates the table and the store that defines the bump)."""
    package = Path(figures_module.__file__).parents[1]

    def users(word: str) -> set[str]:
        return {
            p.relative_to(package).as_posix()
            for p in package.rglob("*.py")
            if word in p.read_text(encoding="utf-8")
        }

    assert users("status_cache") == {"lifecycle/status_figures.py", "store/schema.py"}
    assert users("bump_data_version") == {"lifecycle/status_figures.py", "store/db.py"}


def test_every_kind_of_change_refreshes_the_figures(synced_store: Path) -> None:
    with Store(synced_store) as store:
        tz = store_timezone(store)
        before = _figures(store)
        switch(
            store,
            get_migration(store, MIG),
            tz,
            ["globex"],
            opt_in=True,
            now=NOW,
            actor="t",
            reason=None,
        )
        after_opt_in = _figures(store)
        assert after_opt_in["pending"] == before["pending"] - 1
        assert after_opt_in["opted_in"] == before["opted_in"] + 1
        suppress(store, "lucius@wayne.test", reason="t", source="t", now=NOW, actor="t")
        assert _figures(store)["unreachable"] == before["unreachable"] + 1


def test_cli_status_after_import_and_enforce_is_fresh(
    synced_store: Path, runner: RunCli, tmp_path: Path
) -> None:
    def pending() -> int:
        out = runner("--db", synced_store, "--now", "2016-05-12", "status", MIG, "--json")
        return json.loads(out.stdout)["migrations"][0]["accounts"]["pending"]

    start = pending()
    (tmp_path / "more.csv").write_text(
        "id,name,plan,tags,created_at,status,admins\nzz-1,Z,free,,2015-01-01,active,z@z.test\n"
    )
    assert runner("--db", synced_store, "accounts", "import", tmp_path / "more.csv").exit_code == 0
    assert pending() == start + 1
    assert runner("--db", synced_store, "--now", "2016-05-12", "enforce").exit_code == 0
    assert pending() == 0


# --------------------------------------------------------------------------- carried figures
#
# Opt-in, opt-out and enforcement carry the figures `status` counted to the new data version,
# adjusted, instead of invalidating them; an import recounts them after its commit. Whatever the
# sequence, a figure read from the cache must equal a full recount.

WORLD_YAML = """\
defaults:
  timezone: America/New_York
  notices: {reminder_every: 14d, escalate_before: [7d], min_gap: 1d}
migrations:
  - id: dated
    title: Dated
    severity: medium
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    summary: s
    description: d
  - id: perplan
    title: Per plan
    severity: high
    grace_period_start: 2016-04-01
    mandatory_opt_in: {free: 2016-05-01, enterprise: 2016-06-01}
    summary: s
    description: d
  - id: tagged
    title: Tagged
    severity: low
    grace_period_start: 2016-03-22
    mandatory_opt_in: TBD
    applies_to: {plans: [enterprise, developer], tags: [eu]}
    summary: s
    description: d
"""
WORLD_MIGRATIONS = ("dated", "perplan", "tagged")
PLANS = ("free", "developer", "enterprise", "startup")
# Grace for everything; free plan of perplan past its date; dated due; everything dated due.
INSTANTS = tuple(
    datetime(2016, m, d, 15, tzinfo=UTC) for m, d in ((4, 20), (5, 2), (5, 12), (6, 2))
)
HEADER = "id,name,plan,tags,created_at,status,admins\n"


def _account_line(rng: random.Random, acc_id: str) -> str:
    plan = rng.choice(PLANS)
    tags = ";".join(t for t in ("eu", "us") if rng.random() < 0.4)
    # Some after grace starts, none after the first instant (status counts what existed then).
    created = date(2015, 1, 1) + timedelta(days=rng.randrange(470))
    status = "closed" if rng.random() < 0.08 else "active"
    # A small pool, so administrators share accounts across plans and migrations.
    admins = ";".join(sorted(rng.sample(ADMIN_POOL, rng.choice((0, 1, 1, 1, 2, 2, 3)))))
    return f"{acc_id},{acc_id},{plan},{tags},{created.isoformat()},{status},{admins}\n"


ADMIN_POOL = [f"admin{i}@x.test" for i in range(14)]


def _world(folder: Path, seed: int, n: int = 36) -> Path:
    rng = random.Random(seed)
    (folder / "migrations.yaml").write_text(WORLD_YAML)
    (folder / "accounts.csv").write_text(
        HEADER + "".join(_account_line(rng, f"acc-{i:03d}") for i in range(n))
    )
    db = folder / "migctl.db"
    at = datetime(2016, 3, 1, tzinfo=UTC)
    with Store(db) as store:
        sync(store, load_definitions(folder / "migrations.yaml"), now=at, actor="t")
        import_accounts(store, folder / "accounts.csv", now=at, actor="t")
    return db


def _unreachable_reference(store: Store) -> int:
    """The plain query over every account, the reference for suppressions.unreachable_accounts
    (which is driven from the suppressed addresses)."""
    return int(
        store.scalar(
            "SELECT count(*) FROM accounts a WHERE a.status = 'active' "
            "AND EXISTS (SELECT 1 FROM account_admins x WHERE x.account_id = a.id) "
            "AND NOT EXISTS (SELECT 1 FROM account_admins x WHERE x.account_id = a.id "
            "AND x.email NOT IN (SELECT email FROM suppressions))"
        )
        or 0
    )


def _truth(store: Store) -> dict[str, dict[str, Any]]:
    """Every figure counted from scratch (the functions `status` calls on a cache miss)."""
    tz = store_timezone(store)
    out = {
        migration_key(sm.migration): figures_module.count_migration(store, sm.migration, tz)
        for sm in load_catalog(store)
    }
    out[REACHABILITY_KEY] = {
        # The reference query over every account (status counts it from the suppressions).
        "all_admins_suppressed": _unreachable_reference(store),
        "without_admins": figures_module.count_reachability(store)["without_admins"],
    }
    return out


def _cached(store: Store) -> dict[str, dict[str, Any]]:
    """The figures `status` would read now (rows at the current data version)."""
    return {
        r["key"]: json.loads(r["body"])
        for r in store.query(
            "SELECT key, body FROM status_cache WHERE version = ?", (store.data_version(),)
        )
    }


def _assert_exact(store: Store, *, complete: bool) -> None:
    cached, truth = _cached(store), _truth(store)
    for key, figures in cached.items():
        assert figures == truth[key], key
    if complete:  # carried, not dropped
        assert cached.keys() == truth.keys()


def _no_recount(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("status recounted although the writer carried the figures")

    monkeypatch.setattr(figures_module, "state_counts", boom)
    monkeypatch.setattr(figures_module, "admins_pending", boom)
    monkeypatch.setattr(figures_module, "count_reachability", boom)


def _ids(store: Store) -> list[str]:
    return [r[0] for r in store.query("SELECT id FROM accounts ORDER BY id")]


def _eligible(store: Store, migration: str, now: datetime, *, opt_in: bool) -> list[str]:
    """Accounts a switch would accept (active, in the audience, plan in grace, and for an
    opt-out not auto-enrolled)."""
    tz = store_timezone(store)
    m = get_migration(store, migration).migration
    out = []
    for r in store.query("SELECT id, plan FROM accounts ORDER BY id"):
        state = account_state(store, m, tz, r["id"])
        if state is None or not plan_in_grace(m, r["plan"], now, tz):
            continue
        if not opt_in and state == "auto_enrolled":
            continue
        out.append(r["id"])
    return out


def _switch(store: Store, migration: str, ids: list[str], now: datetime, *, opt_in: bool) -> None:
    switch(
        store,
        get_migration(store, migration),
        store_timezone(store),
        ids,
        opt_in=opt_in,
        now=now,
        actor="t",
        reason=None,
    )


def _enforce(
    store: Store, now: datetime, *, only: str | None = None, immediately: bool = False
) -> int:
    tz = store_timezone(store)
    catalog = load_catalog(store)
    if immediately:
        assert only is not None
        batches = [immediate_enforcement(store, get_migration(store, only), tz)]
    else:
        batches = due_enforcements(store, catalog, tz, now, only, with_admins=False)
    report = apply_enforcements(
        store,
        catalog,
        tz,
        now,
        batches,
        actor="t",
        from_addr="n@platform.example",
        reason="test" if immediately else None,
    )
    return sum(report.by_migration().values())


@pytest.fixture
def world(tmp_path: Path) -> Path:
    return _world(tmp_path, seed=7)


def _force_admins_method(mp: pytest.MonkeyPatch, delta: bool) -> None:
    """Writers adjust `admins_pending` by a delta for a few accounts and count it again for
    many; the test stores are small, so force each way in turn."""
    mp.setattr(figures_module, "delta_is_cheaper", lambda switched, pending: delta)


@pytest.fixture(params=["delta", "recount"])
def admins_method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    _force_admins_method(monkeypatch, request.param == "delta")
    return str(request.param)


def _pending_of(store: Store, migration: str) -> list[str]:
    tz = store_timezone(store)
    m = get_migration(store, migration).migration
    return [i for i in _ids(store) if account_state(store, m, tz, i) == "pending"]


@pytest.mark.parametrize("migration", WORLD_MIGRATIONS)
def test_opt_in_and_opt_out_carry_exact_figures(
    world: Path, migration: str, admins_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = INSTANTS[0]
    with Store(world) as store:
        status_report(store, now)
        _assert_exact(store, complete=True)
        ids = _eligible(store, migration, now, opt_in=True)
        assert len(ids) >= 4
        before = store.data_version()
        _switch(store, migration, ids[::2], now, opt_in=True)
        assert store.data_version() == before + 1  # one bump
        _assert_exact(store, complete=True)
        # Everything pending (the case where every administrator drops out).
        _switch(store, migration, _pending_of(store, migration), now, opt_in=True)
        _assert_exact(store, complete=True)
        assert (
            _cached(store)[migration_key(get_migration(store, migration).migration)][
                "admins_pending"
            ]
            == 0
        )
        out = _eligible(store, migration, now, opt_in=False)
        _switch(store, migration, out[1::3], now, opt_in=False)
        _assert_exact(store, complete=True)
        _switch(store, migration, out, now, opt_in=False)
        _assert_exact(store, complete=True)
        with monkeypatch.context() as mp:
            _no_recount(mp)
            status_report(store, now)  # reads the carried rows only


def test_opt_in_without_a_current_row_writes_none(world: Path) -> None:
    now = INSTANTS[0]
    with Store(world) as store:
        status_report(store, now)
        suppress(store, "admin1@x.test", reason="t", source="t", now=now, actor="t")
        assert _cached(store) == {}  # a suppression still invalidates
        _switch(store, "dated", _eligible(store, "dated", now, opt_in=True)[:5], now, opt_in=True)
        assert _cached(store) == {}  # nothing fabricated: the next status recounts
        status_report(store, now)
        _assert_exact(store, complete=True)


def test_refused_or_no_op_switch_leaves_the_figures(world: Path) -> None:
    now = INSTANTS[0]
    with Store(world) as store:
        status_report(store, now)
        version, cached = store.data_version(), _cached(store)
        ids = _eligible(store, "dated", now, opt_in=True)
        with pytest.raises(NotFoundError):
            _switch(store, "dated", [ids[0], "no-such-account"], now, opt_in=True)
        assert (store.data_version(), _cached(store)) == (version, cached)
        opted = store.query("SELECT account_id FROM enrollments LIMIT 1")
        assert not opted
        _switch(store, "dated", ids[:1], now, opt_in=True)
        version, cached = store.data_version(), _cached(store)
        _switch(store, "dated", ids[:1], now, opt_in=True)  # already opted in: no change
        assert (store.data_version(), _cached(store)) == (version, cached)


def test_opt_out_of_an_account_now_created_after_the_grace_start(world: Path) -> None:
    """Opted in, then re-imported with a creation date after the grace start: the opt-out makes
    it auto-enrolled, not pending."""
    now = INSTANTS[0]
    with Store(world) as store:
        ids = _pending_of(store, "dated")
        _switch(store, "dated", ids[:2], now, opt_in=True)
        (row,) = store.query("SELECT * FROM accounts WHERE id = ?", (ids[0],))
        admins = ";".join(
            r[0]
            for r in store.query("SELECT email FROM account_admins WHERE account_id = ?", (ids[0],))
        )
        csv = Path(str(world) + ".csv")
        csv.write_text(
            HEADER + f"{ids[0]},{row['name']},{row['plan']},,2016-04-10,active,{admins}\n"
        )
        import_accounts(store, csv, now=now, actor="t")
        _assert_exact(store, complete=True)  # the import recounted
        _switch(store, "dated", ids[:2], now, opt_in=False)
        _assert_exact(store, complete=True)
        m = get_migration(store, "dated").migration
        assert account_state(store, m, store_timezone(store), ids[0]) == "auto_enrolled"


@pytest.mark.parametrize(
    ("now", "only", "immediately"),
    [
        (INSTANTS[2], "dated", False),  # whole migration at its date
        (INSTANTS[1], "perplan", False),  # one plan (free) of a per-plan migration
        (INSTANTS[3], "perplan", False),  # both dated plans in one transaction
        (INSTANTS[0], "perplan", True),  # immediate: every plan, scope '*'
        (INSTANTS[0], "tagged", True),
    ],
)
def test_enforcement_carries_exact_figures(
    world: Path,
    now: datetime,
    only: str,
    immediately: bool,
    admins_method: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Store(world) as store:
        # Some opted in first, so that some administrators keep pending accounts elsewhere.
        _switch(
            store,
            only,
            _eligible(store, only, INSTANTS[0], opt_in=True)[::3],
            INSTANTS[0],
            opt_in=True,
        )
        status_report(store, now)
        before = store.data_version()
        assert _enforce(store, now, only=only, immediately=immediately) > 0
        assert store.data_version() == before + 1  # one bump for the migration's transaction
        _assert_exact(store, complete=True)
        with monkeypatch.context() as mp:
            _no_recount(mp)
            doc = status_report(store, now)
        (mig,) = [x for x in doc["migrations"] if x["id"] == only]
        if immediately or only == "dated":
            assert mig["accounts"]["pending"] == 0 and mig["admins_pending"] == 0


def test_import_recounts_at_its_end(
    world: Path, runner: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(world) as store:
        status_report(store, INSTANTS[0])
        version = store.data_version()
    (world.parent / "more.csv").write_text(
        HEADER + "acc-000,Renamed,enterprise,eu,2015-01-01,active,admin3@x.test\n"
        "zz-1,Z,free,,2015-01-01,active,z@z.test\n"
    )
    result = runner("--db", world, "accounts", "import", world.parent / "more.csv")
    assert result.exit_code == 0, result.output
    with Store(world) as store:
        assert store.data_version() == version + 1
        _assert_exact(store, complete=True)
        _no_recount(monkeypatch)
        out = runner("--db", world, "--now", "2016-04-20", "status", "--json")
        assert out.exit_code == 0, out.output
    # An import that changes nothing neither bumps nor recounts.
    assert runner("--db", world, "accounts", "import", world.parent / "more.csv").exit_code == 0
    with Store(world) as store:
        assert store.data_version() == version + 1


def _import_changes(folder: Path, store: Store, rng: random.Random, k: int) -> Path:
    """A CSV updating ``k`` random accounts (plan, tags, dates, status, administrators) and
    adding one."""
    ids = _ids(store)
    lines = [_account_line(rng, acc) for acc in rng.sample(ids, min(k, len(ids)))]
    lines.append(_account_line(rng, f"new-{rng.randrange(10**6):06d}"))
    path = folder / f"imp-{rng.randrange(10**9)}.csv"
    path.write_text(HEADER + "".join(lines))
    return path


OPS = ("status", "opt_in", "opt_out", "enforce", "immediate", "import", "suppress")


@fuzz_settings.examples(40, 300)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_any_sequence_of_writes_keeps_the_figures_exact(seed: int, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["auto", "delta", "recount"]), label="admins method")
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        if method != "auto":
            _force_admins_method(mp, method == "delta")
        folder = Path(tmp)
        db = _world(folder, seed)
        rng = random.Random(seed)
        with Store(db) as store:
            status_report(store, INSTANTS[0])
            for _ in range(data.draw(st.integers(3, 10), label="steps")):
                op = data.draw(st.sampled_from(OPS), label="op")
                now = data.draw(st.sampled_from(INSTANTS), label="now")
                migration = data.draw(st.sampled_from(WORLD_MIGRATIONS), label="migration")
                complete = bool(_cached(store)) and _cached(store).keys() == _truth(store).keys()
                if op == "status":
                    status_report(store, now)
                    complete = True
                elif op in ("opt_in", "opt_out"):
                    opt_in = op == "opt_in"
                    pool = _eligible(store, migration, now, opt_in=opt_in)
                    if not pool:
                        continue
                    picked = data.draw(
                        st.lists(st.sampled_from(pool), min_size=1, unique=True), label="ids"
                    )
                    _switch(store, migration, picked, now, opt_in=opt_in)
                elif op == "enforce":
                    _enforce(store, now)
                elif op == "immediate":
                    _enforce(store, now, only=migration, immediately=True)
                elif op == "import":
                    import_accounts(
                        store, _import_changes(folder, store, rng, 4), now=now, actor="t"
                    )
                    complete = True
                else:
                    # At the first instant: a status at any instant is then after it (a status
                    # before a suppression counts without the cache, by design).
                    suppress(
                        store,
                        rng.choice(ADMIN_POOL),
                        reason="t",
                        source="t",
                        now=INSTANTS[0],
                        actor="t",
                    )
                    complete = False
                _assert_exact(store, complete=complete)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_unreachable_count_matches_the_reference_query(tmp_path: Path, seed: int) -> None:
    db = _world(tmp_path, seed)
    rng = random.Random(seed)
    with Store(db) as store:
        assert unreachable_accounts(store) == _unreachable_reference(store) == 0
        for email in rng.sample(ADMIN_POOL, 9):
            suppress(store, email, reason="t", source="t", now=INSTANTS[0], actor="t")
            assert unreachable_accounts(store) == _unreachable_reference(store)
        assert _unreachable_reference(store) > 0
