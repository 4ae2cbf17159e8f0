"""The status figures (accounts per state, administrators pending, reachability): counted, cached, carried.

Counting them takes seconds at a million accounts (`status` must answer in one), and they depend
on the data only, not on `now`. So they are cached in `status_cache`, one row per key (a
migration's id and definition hash, or '*' for the reachability figures), stamped with the
store's data version they were counted at; a row is used only while its version is current.
Every write that may change a figure bumps the version (`Store.transaction` does it for any
write not declared ``counts=False``; writers that declare it call `changed`). The writers whose
effect is known exactly — opt-in, opt-out and enforcement — instead carry the current rows to
the new version with their effect applied (`Carry`). `refresh` counts whatever is stale (after
an import and at the end of a cron run). No other module reads or writes `status_cache`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from migrate_cli.definitions.model import Migration, canonical_hash
from migrate_cli.lifecycle.enrollment import (
    AUTO_ENROLLED,
    OPTED_IN,
    PENDING,
    STATES,
    audience_sql,
    pending_accounts_sql,
    plan_deadline_sql,
)
from migrate_cli.store.db import BUSY_TIMEOUT_MS, Store, bump_data_version, db_time
from migrate_cli.store.stored_migrations import load_catalog, store_timezone
from migrate_cli.timeutil import utcnow

REACHABILITY_KEY = "*"
Figures = dict[str, Any]


def migration_key(m: Migration) -> str:
    """The status_cache key of a migration's figures (a changed definition is another key)."""
    return f"{m.id}:{canonical_hash(m)}"


# --------------------------------------------------------------------------- reading


def extended(store: Store, m: Migration, *, exists_at: datetime | None = None) -> dict[str, int]:
    """Pending accounts of the audience whose own date is an extension (rule 3b), per date.

    Counted live, not cached: it walks the extensions, a handful of rows, never the accounts.
    """
    where, wparams = audience_sql(m, exists_at=exists_at)
    plan, pparams = plan_deadline_sql(m)
    rows = store.conn.execute(
        "SELECT x.until, count(*) FROM extensions x JOIN accounts a ON a.id = x.account_id "
        f"WHERE x.migration_id = ? AND {where} AND x.until > {plan} AND NOT EXISTS "
        "(SELECT 1 FROM enrollments e WHERE e.migration_id = x.migration_id "
        "AND e.account_id = x.account_id) GROUP BY x.until ORDER BY x.until",
        [m.id, *wparams, *pparams],
    )
    return {until: n for until, n in rows}


def current(
    store: Store, migrations: Iterable[Migration], tz: tzinfo, now: datetime | None = None
) -> tuple[dict[str, Figures], Figures]:
    """The figures of each migration (by id) and the reachability figures: the cached rows
    while current, otherwise counted now and cached (unless a writer holds the store).

    With ``now`` before the creation of some account or a suppression (a status under
    ``--now`` in the past), the figures are counted live over the accounts and suppressions of
    that instant, and not cached.
    """
    if now is not None and recorded_after(store, now):
        return (
            {m.id: count_migration(store, m, tz, exists_at=now) for m in migrations},
            count_reachability(store, exists_at=now),
        )
    version = store.data_version()
    fresh: dict[str, Figures] = {}

    def get(key: str, count: Any, *args: Any) -> Figures:
        row = store.query(
            "SELECT body FROM status_cache WHERE key = ? AND version = ?", (key, version)
        )
        if row:
            body: Figures = json.loads(row[0]["body"])
            return body
        fresh[key] = count(*args)
        return fresh[key]

    by_id = {m.id: get(migration_key(m), count_migration, store, m, tz) for m in migrations}
    reach = get(REACHABILITY_KEY, count_reachability, store)
    _save(store, version, fresh)
    return by_id, reach


def recorded_after(store: Store, now: datetime) -> bool:
    """Whether some account was created, or some address suppressed, after ``now``.

    A scan of the accounts (0.15 s at a million): an index on `created_at` would make it one
    lookup, but SQLite then drives the counting queries' `created_at < ?` through it, row by
    row, and the import's counting took 13 s more at a million accounts."""
    at = db_time(now)
    suppressed = store.scalar("SELECT max(created_at) FROM suppressions")  # a few rows
    if suppressed is not None and str(suppressed) > at:
        return True
    latest = store.scalar("SELECT max(created_at) FROM accounts")
    return latest is not None and str(latest) > at


def refresh(store: Store) -> None:
    """Count and cache every stale figure now, so that the next `status` reads them."""
    current(store, (sm.migration for sm in load_catalog(store)), store_timezone(store))


def _save(store: Store, version: int, fresh: dict[str, Figures]) -> None:
    """Store what was counted, unless a writer holds the store (never wait for it)."""
    if not fresh or str(store.path) == ":memory:":
        return
    conn = store.conn
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return  # busy: the next status counts again
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        if store.data_version() == version:  # nothing changed while counting
            stamp = db_time(utcnow())
            conn.executemany(
                "INSERT INTO status_cache(key, version, body, computed_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET version = excluded.version, "
                "body = excluded.body, computed_at = excluded.computed_at",
                [(k, version, json.dumps(v), stamp) for k, v in fresh.items()],
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# --------------------------------------------------------------------------- writing


def changed(conn: sqlite3.Connection) -> None:
    """The figures may have changed (inside the writer's transaction): `status` recounts."""
    bump_data_version(conn)


class Carry:
    """A write whose effect on the figures is known: carry them to the new version, adjusted.

    Create it inside the writer's transaction, before the write; after each write report it
    (``left_pending``, ``opted_out``); call ``commit`` once at the end of the transaction (still
    inside it). Figures not reported are carried unchanged: the writer declares that it cannot
    change them. A writer using this opens its transaction with ``counts=False`` (one bump, by
    ``commit``). A figure not current before the write stays uncounted (`status` counts it).
    """

    def __init__(self, store: Store, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            raise RuntimeError("internal error: status figures carried outside a transaction")
        self.store = store
        self.conn = conn
        self.before = store.data_version()
        self._adjusted: dict[str, Figures | None] = {}
        self._committed = False

    def left_pending(self, m: Migration, tz: tzinfo, accounts: str, state: str, n: int) -> None:
        """``n`` pending accounts, listed in temp table ``accounts`` (column `id`), are now
        ``state`` (opted in or enforced). Call it after the write."""
        key, figures = self._figures(m, accounts, n)
        if figures is None:
            return
        figures[PENDING] -= n
        figures[state] += n
        if figures[PENDING] == 0:
            figures["admins_pending"] = 0  # nothing pending: nobody left to tell
        elif delta_is_cheaper(n, figures[PENDING]):
            # The administrators whose last pending account just left `pending`.
            figures["admins_pending"] -= admins_without_pending(self.conn, m, tz, accounts)
        else:
            figures["admins_pending"] = admins_pending(self.store, m, tz)
        self._adjusted[key] = figures

    def opted_out(self, m: Migration, tz: tzinfo, accounts: str, n: int) -> None:
        """``n`` opted-in accounts, listed in temp table ``accounts`` (columns `id`,
        `to_pending`: created before the grace start), had their opt-in removed: each is now
        pending or, created since, auto-enrolled. Call it after the write."""
        key, figures = self._figures(m, accounts, n)
        if figures is None:
            return
        back = self.conn.execute(f"SELECT count(*) FROM {accounts} WHERE to_pending").fetchone()[0]
        figures[OPTED_IN] -= n
        figures[PENDING] += back
        figures[AUTO_ENROLLED] += n - back
        if back and delta_is_cheaper(back, figures[PENDING]):
            # The administrators who had no pending account and now have one.
            figures["admins_pending"] += admins_without_pending(
                self.conn, m, tz, accounts, "c.to_pending"
            )
        elif back:
            figures["admins_pending"] = admins_pending(self.store, m, tz)
        self._adjusted[key] = figures

    def _figures(self, m: Migration, accounts: str, n: int) -> tuple[str, Figures | None]:
        key = migration_key(m)
        if key in self._adjusted:
            body = self._adjusted[key]
            figures = None if body is None else dict(body)
        else:
            row = self.conn.execute(
                "SELECT body FROM status_cache WHERE key = ? AND version = ?", (key, self.before)
            ).fetchone()
            figures = json.loads(row[0]) if row else None
        listed = self.conn.execute(f"SELECT count(*) FROM {accounts}").fetchone()[0]
        if figures is not None and listed != n:
            # Checked, not assumed: a write that disagrees with its own list of accounts means
            # the adjustment cannot be trusted; drop the row (`status` recounts it).
            self._adjusted[key] = None
            return key, None
        return key, figures

    def commit(self) -> None:
        """Bump the data version and move the current rows to it (inside the transaction)."""
        if self._committed:
            raise RuntimeError("internal error: status figures carried twice")
        self._committed = True
        conn = self.conn
        bump_data_version(conn)
        after = self.store.data_version()
        for key, figures in self._adjusted.items():
            if figures is None or any(
                isinstance(v, int) and v < 0 for v in figures.values()
            ):  # a negative count: the row was not what we thought; recount it
                conn.execute(
                    "DELETE FROM status_cache WHERE key = ? AND version = ?", (key, self.before)
                )
            else:
                conn.execute(
                    "UPDATE status_cache SET version = ?, body = ? WHERE key = ? AND version = ?",
                    (after, json.dumps(figures), key, self.before),
                )
        conn.execute("UPDATE status_cache SET version = ? WHERE version = ?", (after, self.before))


# --------------------------------------------------------------------------- counting


def count_migration(
    store: Store, m: Migration, tz: tzinfo, *, exists_at: datetime | None = None
) -> Figures:
    """A migration's figures counted from the store: accounts per state, administrators
    pending (of the accounts that existed at ``exists_at``, when given)."""
    return {
        **state_counts(store, m, tz, exists_at=exists_at),
        "admins_pending": admins_pending(store, m, tz, exists_at=exists_at),
    }


def state_counts(
    store: Store, m: Migration, tz: tzinfo, *, exists_at: datetime | None = None
) -> dict[str, int]:
    """Accounts per effective state in the migration's audience (aggregated in SQL)."""
    where, wparams = audience_sql(m, exists_at=exists_at)
    start = db_time(m.grace_start_instant(tz))
    counts = dict.fromkeys(STATES, 0)
    row = store.query(
        "SELECT count(*) AS total, "
        "sum(e.state IS NULL AND a.created_at < ?) AS pending, "
        "sum(e.state IS NULL AND a.created_at >= ?) AS auto_enrolled, "
        "sum(e.state = 'opted_in') AS opted_in, sum(e.state = 'enforced') AS enforced "
        "FROM accounts a LEFT JOIN enrollments e ON e.migration_id = ? AND e.account_id = a.id "
        "WHERE " + where,
        [start, start, m.id, *wparams],
    )[0]
    for state in STATES:
        counts[state] = row[state] or 0
    counts["total"] = row["total"] or 0
    return counts


def admins_pending(
    store: Store, m: Migration, tz: tzinfo, *, exists_at: datetime | None = None
) -> int:
    """Administrators with at least one pending account in the audience."""
    sql, params = pending_accounts_sql(m, tz, exists_at=exists_at)
    # CROSS JOIN keeps SQLite from driving the join from the administrators' side (one lookup
    # per link); GROUP BY sorts once where count(DISTINCT) was several times slower.
    return int(
        store.scalar(
            f"SELECT count(*) FROM (SELECT x.email FROM ({sql}) p "
            "CROSS JOIN account_admins x ON x.account_id = p.id GROUP BY x.email)",
            params,
        )
        or 0
    )


def admins_without_pending(
    conn: sqlite3.Connection, m: Migration, tz: tzinfo, changed: str, only: str = "1"
) -> int:
    """How many administrators of the accounts of temp table ``changed`` (column `id`; rows
    restricted by ``only``) have no pending account outside that table in the migration's
    audience, as the store is now (in the caller's transaction).

    After accounts left `pending`, these administrators lost their last pending account; after
    accounts went back to `pending`, they got their first one back."""
    where, wparams = audience_sql(m, "a")
    conn.execute("DROP TABLE IF EXISTS temp.figures_admins")
    conn.execute("DROP TABLE IF EXISTS temp.figures_links")
    conn.execute(
        "CREATE TEMP TABLE figures_admins AS SELECT x.email AS email FROM "
        f"{changed} c CROSS JOIN account_admins x ON x.account_id = c.id WHERE {only} "
        "GROUP BY x.email"
    )
    # Their other accounts only (an administrator of one account costs no lookup), sorted by
    # account: the accounts are then read in index order rather than at random (half the time
    # at a million accounts).
    conn.execute(
        "CREATE TEMP TABLE figures_links AS SELECT y.account_id AS id, y.email AS email "
        "FROM temp.figures_admins d CROSS JOIN account_admins y ON y.email = d.email "
        f"WHERE y.account_id NOT IN (SELECT id FROM {changed}) ORDER BY y.account_id"
    )
    admins = conn.execute("SELECT count(*) FROM temp.figures_admins").fetchone()[0]
    still_pending = conn.execute(
        "SELECT count(DISTINCT l.email) FROM temp.figures_links l CROSS JOIN accounts a "
        f"ON a.id = l.id WHERE {where} AND a.created_at < ? AND NOT EXISTS "
        "(SELECT 1 FROM enrollments e WHERE e.migration_id = ? AND e.account_id = a.id)",
        [*wparams, db_time(m.grace_start_instant(tz)), m.id],
    ).fetchone()[0]
    conn.execute("DROP TABLE temp.figures_admins")
    conn.execute("DROP TABLE temp.figures_links")
    return int(admins - still_pending)


def delta_is_cheaper(switched: int, pending_after: int) -> bool:
    """Whether adjusting a cached `admins_pending` for ``switched`` accounts
    (``admins_without_pending``) costs less than counting it again (``admins_pending``) over
    the ``pending_after`` pending accounts. Measured at a million accounts: the adjustment
    costs ~8 µs per switched account, the count ~0.2 s plus ~1.5 µs per pending account. Both
    are exact; this only picks the cheaper one (a few accounts: the adjustment, in
    milliseconds; a large share of the pending accounts: the count)."""
    return switched * 5 <= 125_000 + pending_after


def count_reachability(store: Store, *, exists_at: datetime | None = None) -> Figures:
    """Active accounts nobody can be told about: every administrator suppressed, or none."""
    existing = "" if exists_at is None else " AND a.created_at <= ?"
    params = [] if exists_at is None else [db_time(exists_at)]
    return {
        "all_admins_suppressed": unreachable_accounts(store, exists_at=exists_at),
        "without_admins": int(
            store.scalar(
                "SELECT count(*) FROM accounts a WHERE a.status = 'active' AND NOT EXISTS "
                f"(SELECT 1 FROM account_admins x WHERE x.account_id = a.id){existing}",
                params,
            )
            or 0
        ),
    }


def unreachable_accounts(store: Store, *, exists_at: datetime | None = None) -> int:
    """Active accounts whose every administrator is suppressed: nobody can be told (only
    those created by ``exists_at``, when given)."""
    sql, params = _unreachable(exists_at)
    return int(store.scalar(f"SELECT count(*) FROM ({sql})", params) or 0)


def unreachable_account_ids(
    store: Store, limit: int, *, exists_at: datetime | None = None
) -> list[str]:
    """The first ``limit`` of those accounts, by id (counted live: suppressions are few)."""
    sql, params = _unreachable(exists_at)
    return [r[0] for r in store.conn.execute(f"{sql} ORDER BY c.id LIMIT ?", [*params, limit])]


def _unreachable(exists_at: datetime | None) -> tuple[str, list[Any]]:
    """Driven from the suppressed addresses (a few) rather than from every account (a second
    at a million accounts). ``exists_at``: the accounts and suppressions of that instant."""
    if exists_at is None:
        suppressed, sparams = "SELECT email FROM suppressions", []
    else:
        suppressed, sparams = (
            "SELECT email FROM suppressions WHERE created_at <= ?",
            [db_time(exists_at)],
        )
    sql = (
        f"SELECT c.id FROM (SELECT DISTINCT x.account_id AS id FROM ({suppressed}) s "
        "CROSS JOIN account_admins x ON x.email = s.email) c "
        "CROSS JOIN accounts a ON a.id = c.id WHERE a.status = 'active' AND NOT EXISTS "
        "(SELECT 1 FROM account_admins y WHERE y.account_id = c.id "
        f"AND y.email NOT IN ({suppressed}))"
    )
    if exists_at is None:
        return sql, []
    return sql + " AND a.created_at <= ?", [*sparams, *sparams, db_time(exists_at)]
