"""The status report: per migration phase, dates, days left, counts, administrators pending."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from migrate_cli.catalog import StoredMigration, load_catalog, store_timezone
from migrate_cli.enrollment import admins_pending, state_counts
from migrate_cli.errors import NotFoundError
from migrate_cli.phases import RETIRED, overall_phase, phases
from migrate_cli.store import Store
from migrate_cli.timeutil import iso


def migration_status(
    store: Store, sm: StoredMigration, now: datetime, tz: tzinfo
) -> dict[str, Any]:
    m = sm.migration
    per_scope = phases(m, now, tz, enforced_scopes=sm.enforced_scopes)
    tbd_plans = m.per_plan and (
        m.applies_to.plans is None
        or bool(
            set(m.applies_to.plans) - set(m.mandatory_opt_in or {})  # type: ignore[arg-type]
        )
    )
    phase = (
        RETIRED
        if sm.status == "retired"
        else overall_phase(per_scope, has_tbd_plans=bool(tbd_plans))
    )
    counts = state_counts(store, m, tz)
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
        "admins_pending": admins_pending(store, m, tz),
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
    from migrate_cli.outbox import counts
    from migrate_cli.suppressions import unreachable_accounts

    return {
        "now": iso(now),
        "timezone": store.meta("timezone") or "UTC",
        "migrations": [migration_status(store, sm, now, tz) for sm in catalog],
        "outbox": counts(store),
        # Accounts nobody can be told about: every administrator suppressed, or none at all.
        "accounts_all_admins_suppressed": unreachable_accounts(store),
        "accounts_without_admins": int(
            store.scalar(
                "SELECT count(*) FROM accounts a WHERE a.status = 'active' AND NOT EXISTS "
                "(SELECT 1 FROM account_admins x WHERE x.account_id = a.id)"
            )
            or 0
        ),
    }
