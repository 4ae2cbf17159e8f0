"""The status report: per migration phase, dates, days left, counts, administrators pending."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, tzinfo
from functools import partial
from typing import Any

from migrate_cli.accounts.suppressions import unreachable_accounts
from migrate_cli.definitions.model import Migration
from migrate_cli.errors import NotFoundError
from migrate_cli.lifecycle.enrollment import admins_pending, state_counts
from migrate_cli.lifecycle.phases import overall_phase, phases
from migrate_cli.lifecycle.status_cache import REACHABILITY_KEY, migration_key
from migrate_cli.store.db import BUSY_TIMEOUT_MS, Store, db_time
from migrate_cli.store.outbox import counts as outbox_counts
from migrate_cli.store.stored_migrations import StoredMigration, load_catalog, store_timezone
from migrate_cli.timeutil import iso, utcnow
from migrate_cli.vocabulary import Phase


class FiguresCache:
    """Status figures depend on the data, not on `now`: keep them per data version.

    Every write transaction that can change them bumps `meta.data_version` (Store.transaction),
    so a cached figure is used only when nothing changed since it was counted. Counting a
    million accounts takes seconds; repeated `status` calls between changes take a fraction.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.version = store.data_version()
        self.fresh: dict[str, dict[str, Any]] = {}

    def figures(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        row = self.store.query(
            "SELECT body FROM status_cache WHERE key = ? AND version = ?", (key, self.version)
        )
        if row:
            body: dict[str, Any] = json.loads(row[0]["body"])
            return body
        body = compute()
        self.fresh[key] = body
        return body

    def save(self) -> None:
        """Store what was counted, unless a writer holds the store (never wait for it)."""
        if not self.fresh or str(self.store.path) == ":memory:":
            return
        conn = self.store.conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return  # busy: the next status counts again
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            if self.store.data_version() == self.version:  # nothing changed while counting
                stamp = db_time(utcnow())
                conn.executemany(
                    "INSERT INTO status_cache(key, version, body, computed_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET version = excluded.version, "
                    "body = excluded.body, computed_at = excluded.computed_at",
                    [(k, self.version, json.dumps(v), stamp) for k, v in self.fresh.items()],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def migration_status(
    store: Store, sm: StoredMigration, now: datetime, tz: tzinfo, cache: FiguresCache | None = None
) -> dict[str, Any]:
    cache = cache or FiguresCache(store)
    m = sm.migration
    per_scope = phases(m, now, tz, enforced_scopes=sm.enforced_scopes)
    tbd_plans = m.per_plan and (
        m.applies_to.plans is None
        or bool(
            set(m.applies_to.plans) - set(m.mandatory_opt_in or {})  # type: ignore[arg-type]
        )
    )
    phase = (
        Phase.RETIRED
        if sm.status == "retired"
        else overall_phase(per_scope, has_tbd_plans=bool(tbd_plans))
    )
    figures = cache.figures(migration_key(m), lambda: _migration_figures(store, m, tz))
    counts = figures
    upcoming = [p.days_left for p in per_scope if p.days_left is not None and p.days_left >= 0]
    days_left = (
        min(upcoming)
        if upcoming
        else (
            max(p.days_left for p in per_scope if p.days_left is not None)
            if any(p.days_left is not None for p in per_scope)
            else None
        )
    )
    migrated = counts["opted_in"] + counts["auto_enrolled"] + counts["enforced"]
    out: dict[str, Any] = {
        "id": m.id,
        "title": m.title,
        "severity": m.severity,
        "phase": phase,
        "grace_period_start": m.grace_period_start.isoformat(),
        "mandatory_opt_in": m.mandatory_json(),
        "days_left": days_left,
        "accounts": {
            "total": counts["total"],
            "pending": counts["pending"],
            "opted_in": counts["opted_in"],
            "auto_enrolled": counts["auto_enrolled"],
            "enforced": counts["enforced"],
        },
        "migrated_share": round(migrated / counts["total"], 4) if counts["total"] else None,
        "admins_pending": figures["admins_pending"],
        "status": sm.status,
    }
    if m.per_plan:
        out["plans"] = [
            {
                "plan": p.scope,
                "phase": p.phase,
                "mandatory_opt_in": p.deadline.isoformat() if p.deadline else None,
                "days_left": p.days_left,
            }
            for p in per_scope
        ]
    if m.applies_to.to_json():
        out["applies_to"] = m.applies_to.to_json()
    return out


def status_report(store: Store, now: datetime, migration_id: str | None = None) -> dict[str, Any]:
    """The `status --json` document (SPEC section 4 keys, plus a few more)."""
    tz = store_timezone(store)
    catalog = load_catalog(store)
    if migration_id is not None:
        catalog = [sm for sm in catalog if sm.id == migration_id]
        if not catalog:
            known = (
                ", ".join(sm.id for sm in load_catalog(store)) or "none — run `migctl sync` first"
            )
            raise NotFoundError(f"no migration {migration_id!r} in the store (known: {known})")

    cache = FiguresCache(store)
    migrations = [migration_status(store, sm, now, tz, cache) for sm in catalog]
    reach = cache.figures(REACHABILITY_KEY, lambda: _reachability(store))
    cache.save()
    return {
        "now": iso(now),
        "timezone": store.meta("timezone") or "UTC",
        "migrations": migrations,
        "outbox": outbox_counts(store),
        # Accounts nobody can be told about: every administrator suppressed, or none at all.
        "accounts_all_admins_suppressed": reach["all_admins_suppressed"],
        "accounts_without_admins": reach["without_admins"],
    }


def refresh_figures(store: Store, now: datetime) -> None:
    """Count and cache the status figures now, unless current (cron runs and imports do it so
    that `status` stays fast). ``now`` is not needed: the figures depend on the data only."""
    del now
    tz = store_timezone(store)
    cache = FiguresCache(store)
    for sm in load_catalog(store):
        cache.figures(
            migration_key(sm.migration), partial(_migration_figures, store, sm.migration, tz)
        )
    cache.figures(REACHABILITY_KEY, lambda: _reachability(store))
    cache.save()


def _migration_figures(store: Store, m: Migration, tz: tzinfo) -> dict[str, Any]:
    return {**state_counts(store, m, tz), "admins_pending": admins_pending(store, m, tz)}


def _reachability(store: Store) -> dict[str, Any]:
    return {
        "all_admins_suppressed": unreachable_accounts(store),
        "without_admins": int(
            store.scalar(
                "SELECT count(*) FROM accounts a WHERE a.status = 'active' AND NOT EXISTS "
                "(SELECT 1 FROM account_admins x WHERE x.account_id = a.id)"
            )
            or 0
        ),
    }
