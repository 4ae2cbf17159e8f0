"""Enrollments: audiences and effective states of accounts, in SQL."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from migrate_cli.definitions.model import Migration
from migrate_cli.store.db import Store, db_time
from migrate_cli.store.stored_migrations import StoredMigration

PENDING = "pending"
OPTED_IN = "opted_in"
AUTO_ENROLLED = "auto_enrolled"
ENFORCED = "enforced"
STATES = (PENDING, OPTED_IN, AUTO_ENROLLED, ENFORCED)


def audience_sql(
    m: Migration, alias: str = "a", *, exists_at: datetime | None = None
) -> tuple[str, list[Any]]:
    """WHERE fragment selecting the active accounts a migration applies to.

    ``exists_at``: only the accounts created on or before that instant (a status or rehearsal
    under ``--now`` in the past must not count accounts that do not exist yet).
    """
    clauses = [f"{alias}.status = 'active'"]
    params: list[Any] = []
    if exists_at is not None:
        clauses.append(f"{alias}.created_at <= ?")
        params.append(db_time(exists_at))
    if m.applies_to.plans is not None:
        plans = sorted(m.applies_to.plans)
        clauses.append(f"{alias}.plan IN ({','.join('?' * len(plans))})")
        params.extend(plans)
    if m.applies_to.tags is not None:
        tags = sorted(m.applies_to.tags)
        clauses.append(
            f"EXISTS (SELECT 1 FROM account_tags t WHERE t.account_id = {alias}.id "
            f"AND t.tag IN ({','.join('?' * len(tags))}))"
        )
        params.extend(tags)
    return " AND ".join(clauses), params


def state_sql(
    m: Migration, tz: tzinfo, alias: str = "a", enrollment: str = "e"
) -> tuple[str, list[Any]]:
    """SQL expression of an account's effective state (needs a LEFT JOIN on enrollments)."""
    return (
        f"COALESCE({enrollment}.state, CASE WHEN {alias}.created_at >= ? "
        f"THEN '{AUTO_ENROLLED}' ELSE '{PENDING}' END)",
        [db_time(m.grace_start_instant(tz))],
    )


def deadline_sql(
    m: Migration, alias: str = "a", *, until: str | None = None
) -> tuple[str, list[Any]]:
    """SQL expression of the account's own mandatory date (NULL = TBD): its plan's date, or
    its extension when that is later (rule 3b; a plan that became TBD has no date at all).

    ``until``: an expression of the account's extension date (NULL: none) when the caller
    has joined `extensions` already; otherwise it is looked up.
    """
    plan, params = plan_deadline_sql(m, alias)
    if plan == "NULL":
        return plan, params
    if until is not None:
        return f"max({plan}, COALESCE({until}, ''))", params
    # max() of two strings is NULL when the plan's date is; ISO dates compare as text.
    return (
        f"max({plan}, COALESCE((SELECT x.until FROM extensions x "
        f"WHERE x.migration_id = ? AND x.account_id = {alias}.id), ''))",
        [*params, m.id],
    )


def plan_deadline_sql(m: Migration, alias: str = "a") -> tuple[str, list[Any]]:
    """SQL expression of the mandatory date of the account's plan, extensions aside."""
    if isinstance(m.mandatory_opt_in, dict):
        if not m.mandatory_opt_in:
            return "NULL", []
        parts = " ".join("WHEN ? THEN ?" for _ in m.mandatory_opt_in)
        params: list[Any] = []
        for plan, d in sorted(m.mandatory_opt_in.items()):
            params.extend([plan, d.isoformat()])
        return f"(CASE {alias}.plan {parts} ELSE NULL END)", params
    if m.mandatory_opt_in is None:
        return "NULL", []
    return "?", [m.mandatory_opt_in.isoformat()]


def pending_accounts_sql(
    m: Migration, tz: tzinfo, *, exists_at: datetime | None = None
) -> tuple[str, list[Any]]:
    """SELECT of the pending accounts in a migration's audience: id, name, plan, deadline (its
    own date) and extended_until (its extension, NULL without one)."""
    where, wparams = audience_sql(m, exists_at=exists_at)
    deadline, dparams = deadline_sql(m, until="ext.until")
    sql = (
        f"SELECT a.id, a.name, a.plan, {deadline} AS deadline, ext.until AS extended_until "
        "FROM accounts a LEFT JOIN extensions ext ON ext.migration_id = ? "
        "AND ext.account_id = a.id "
        "WHERE " + where + " AND a.created_at < ? AND NOT EXISTS "
        "(SELECT 1 FROM enrollments e WHERE e.migration_id = ? AND e.account_id = a.id)"
    )
    return sql, [*dparams, m.id, *wparams, db_time(m.grace_start_instant(tz)), m.id]


def account_state(store: Store, m: Migration, tz: tzinfo, account_id: str) -> str | None:
    """The effective state of one account, or None when it is outside the audience."""
    where, wparams = audience_sql(m)
    expr, sparams = state_sql(m, tz)
    row = store.query(
        f"SELECT {expr} AS state FROM accounts a LEFT JOIN enrollments e "
        "ON e.migration_id = ? AND e.account_id = a.id WHERE a.id = ? AND " + where,
        [*sparams, m.id, account_id, *wparams],
    )
    return row[0]["state"] if row else None


def account_enrollments(
    store: Store, catalog: list[StoredMigration], tz: tzinfo, account_id: str
) -> list[dict[str, Any]]:
    """Per migration: the account's effective state (or 'not in audience')."""
    out = []
    for sm in catalog:
        state = account_state(store, sm.migration, tz, account_id)
        row = store.query(
            "SELECT changed_at, actor, reason FROM enrollments WHERE migration_id = ? AND account_id = ?",
            (sm.id, account_id),
        )
        extension = store.query(
            "SELECT until, reason, actor, at FROM extensions WHERE migration_id = ? AND account_id = ?",
            (sm.id, account_id),
        )
        out.append(
            {
                "migration": sm.id,
                "state": state or "not_in_audience",
                "changed_at": row[0]["changed_at"] if row else None,
                "actor": row[0]["actor"] if row else None,
                "extension": dict(extension[0]) if extension else None,
            }
        )
    return out
