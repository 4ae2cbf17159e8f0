"""Opt-in and opt-out: accounts switched early (or back) under the grace-period rules."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from migrate_cli.definitions.model import Migration
from migrate_cli.errors import NotFoundError, RuleError
from migrate_cli.lifecycle import status_figures
from migrate_cli.lifecycle.enrollment import (
    AUTO_ENROLLED,
    OPTED_IN,
    PENDING,
    audience_sql,
    state_sql,
)
from migrate_cli.lifecycle.phases import mandatory_instant, plan_in_grace
from migrate_cli.store import events
from migrate_cli.store.db import Store, db_time
from migrate_cli.store.stored_migrations import StoredMigration


@dataclass
class SwitchReport:
    """What an opt-in/opt-out did, per account."""

    changed: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "unchanged": self.already,
            "changed_count": len(self.changed),
            "unchanged_count": len(self.already),
        }


def _refusal(m: Migration, tz: tzinfo, now: datetime, plan: str | None = None) -> str:
    start = m.grace_start_instant(tz)
    if now < start:
        return (
            f"{m.id}: the grace period starts {m.grace_period_start.isoformat()}; "
            "opt-in and opt-out open then"
        )
    dates = m.deadlines()
    deadline = m.deadline_for(plan) if plan else (dates[0] if dates else None)
    when = deadline.isoformat() if deadline else "the mandatory date"
    who = f" for plan {plan!r}" if plan and m.per_plan else ""
    return (
        f"{m.id}: the grace period{who} ended at {when} "
        f"({mandatory_instant(deadline, tz).isoformat() if deadline else ''}); "
        "accounts can no longer opt in or out"
    )


def switch(
    store: Store,
    sm: StoredMigration,
    tz: tzinfo,
    account_ids: Iterable[str],
    *,
    opt_in: bool,
    now: datetime,
    actor: str,
    reason: str | None,
) -> SwitchReport:
    """Opt accounts in (or out) in one transaction; any refused account and nothing changes."""
    m = sm.migration
    if sm.status == "retired":
        raise RuleError(f"{m.id} is retired; opt-in and opt-out are closed")
    if now < m.grace_start_instant(tz):
        raise RuleError(_refusal(m, tz, now))
    ids = list(dict.fromkeys(a.strip() for a in account_ids if a.strip()))
    if not ids:
        raise RuleError("no accounts given (use --account ID or --from-file FILE)")
    report = SwitchReport()
    where, wparams = audience_sql(m)
    expr, sparams = state_sql(m, tz)
    stamp = db_time(now)
    # counts=False: the temp tables would count as changes; the status figures' Carry bumps
    # the data version once, carrying the figures `status` had counted, when accounts switch.
    with store.transaction(counts=False) as conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS switch_ids (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM switch_ids")
        conn.executemany("INSERT OR IGNORE INTO switch_ids VALUES (?)", ((i,) for i in ids))
        rows = conn.execute(
            f"SELECT s.id, a.id IS NOT NULL, a.status, a.plan, {expr}, "
            f"CASE WHEN a.id IS NULL THEN 0 ELSE ({where}) END "
            "FROM switch_ids s LEFT JOIN accounts a ON a.id = s.id "
            "LEFT JOIN enrollments e ON e.migration_id = ? AND e.account_id = s.id",
            [*sparams, *wparams, m.id],
        ).fetchall()
        missing = [r[0] for r in rows if not r[1]]
        if missing:
            raise NotFoundError(_listing("unknown account(s)", missing) + "; nothing was changed")
        closed = [r[0] for r in rows if r[2] == "closed"]
        if closed:
            raise RuleError(_listing("closed account(s)", closed) + "; nothing was changed")
        outside = [r[0] for r in rows if not r[5]]
        if outside:
            raise RuleError(
                _listing(f"account(s) outside the audience of {m.id}", outside)
                + "; nothing was changed"
            )
        late = sorted(p for p in {r[3] for r in rows} if not plan_in_grace(m, p, now, tz))
        if late:
            raise RuleError(_refusal(m, tz, now, late[0]))
        if not opt_in:
            auto = [r[0] for r in rows if r[4] == AUTO_ENROLLED]
            if auto:
                raise RuleError(
                    _listing(
                        "account(s) created after the grace period started are "
                        "always enrolled and cannot opt out",
                        auto,
                    )
                )
        target_from = PENDING if opt_in else OPTED_IN
        to_change = [r[0] for r in rows if r[4] == target_from]
        report.already = [r[0] for r in rows if r[4] != target_from]
        report.changed = to_change
        # No change, no write: a repeated opt-in leaves the store (and its figures) untouched.
        carry = status_figures.Carry(store, conn) if to_change else None
        # The accounts that change, and whether each one ends up pending (an opt-out of an
        # account created after the grace period started makes it auto-enrolled).
        conn.execute("DROP TABLE IF EXISTS temp.switch_changed")
        conn.execute("CREATE TEMP TABLE switch_changed (id TEXT PRIMARY KEY, to_pending INTEGER)")
        if opt_in:
            conn.execute(
                "INSERT INTO switch_changed SELECT s.id, 0 FROM switch_ids s "
                "JOIN accounts a ON a.id = s.id "
                "LEFT JOIN enrollments e ON e.migration_id = ? AND e.account_id = s.id "
                f"WHERE {expr} = 'pending' ORDER BY s.id",
                [m.id, *sparams],
            )
            switched = conn.execute(
                "INSERT INTO enrollments(migration_id, account_id, state, changed_at, actor, reason) "
                "SELECT ?, id, 'opted_in', ?, ?, ? FROM temp.switch_changed",
                [m.id, stamp, actor, reason],
            ).rowcount
            if carry is not None:
                carry.left_pending(m, tz, "temp.switch_changed", OPTED_IN, switched)
        else:
            conn.execute(
                "INSERT INTO switch_changed SELECT s.id, a.created_at < ? FROM switch_ids s "
                "JOIN enrollments e ON e.migration_id = ? AND e.account_id = s.id "
                "AND e.state = 'opted_in' JOIN accounts a ON a.id = s.id ORDER BY s.id",
                [db_time(m.grace_start_instant(tz)), m.id],
            )
            switched = conn.execute(
                "DELETE FROM enrollments WHERE migration_id = ? AND state = 'opted_in' "
                "AND account_id IN (SELECT id FROM temp.switch_changed)",
                (m.id,),
            ).rowcount
            if carry is not None:
                carry.opted_out(m, tz, "temp.switch_changed", switched)
        events.record(
            conn,
            m.id,
            "SELECT id AS account_id, CASE WHEN ? THEN 'opted_in' WHEN to_pending THEN 'pending' "
            "ELSE 'auto_enrolled' END AS state, CASE WHEN ? THEN 'pending' ELSE 'opted_in' END "
            "AS previous_state FROM temp.switch_changed",
            [opt_in, opt_in],
            now=now,
            actor=actor,
            reason=reason,
        )
        action = "enrollment.opted_in" if opt_in else "enrollment.opted_out"
        conn.executemany(
            "INSERT INTO audit(at, actor, action, migration_id, account_id, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ((stamp, actor, action, m.id, acc, _reason_json(reason)) for acc in to_change),
        )
        if carry is not None:
            carry.commit()
        conn.execute("DROP TABLE temp.switch_changed")
        conn.execute("DROP TABLE temp.switch_ids")
    return report


def _reason_json(reason: str | None) -> str | None:
    return json.dumps({"reason": reason}) if reason else None


def _listing(what: str, ids: list[str]) -> str:
    shown = ", ".join(ids[:10])
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return f"{what}: {shown}{more}"
