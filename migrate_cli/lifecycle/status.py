"""The status report: per migration phase, dates, days left, counts, administrators pending."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from migrate_cli.errors import NotFoundError
from migrate_cli.lifecycle import status_figures
from migrate_cli.lifecycle.phases import ALL_SCOPE, overall_phase, phases
from migrate_cli.store import deliveries, events
from migrate_cli.store.db import Store
from migrate_cli.store.outbox import counts as outbox_counts
from migrate_cli.store.stored_migrations import StoredMigration, load_catalog, store_timezone
from migrate_cli.timeutil import iso, start_of_day
from migrate_cli.vocabulary import Phase

UNREACHABLE_SHOWN = 20  # account ids listed; the count covers them all


def migration_status(
    sm: StoredMigration,
    now: datetime,
    tz: tzinfo,
    figures: dict[str, Any],
    plans: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """One migration's entry, from its status figures (`status_figures.current`).

    ``plans``: the plans of active accounts; a per-plan migration lists those of its audience
    without a date as TBD plans.
    """
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
    migrated = figures["opted_in"] + figures["auto_enrolled"] + figures["enforced"]
    out: dict[str, Any] = {
        "id": m.id,
        "title": m.title,
        "severity": m.severity,
        "phase": phase,
        "grace_period_start": m.grace_period_start.isoformat(),
        "mandatory_opt_in": m.mandatory_json(),
        "days_left": days_left,
        "accounts": {
            "total": figures["total"],
            "pending": figures["pending"],
            "opted_in": figures["opted_in"],
            "auto_enrolled": figures["auto_enrolled"],
            "enforced": figures["enforced"],
        },
        "migrated_share": round(migrated / figures["total"], 4) if figures["total"] else None,
        "admins_pending": figures["admins_pending"],
        "status": sm.status,
    }
    holds = {h.scope: h for h in sm.active_holds(now)}
    # Held past its written date: the operator must see it is not simply in grace.
    overdue = {s for s, h in holds.items() if now >= start_of_day(h.written, tz)}
    if overdue:
        out["phase"] = Phase.HELD
    out["held"] = [h.to_json() for h in holds.values()]
    if m.per_plan:
        out["plans"] = [
            {
                "plan": p.scope,
                "phase": Phase.HELD if p.scope in overdue else p.phase,
                "mandatory_opt_in": p.deadline.isoformat() if p.deadline else None,
                "days_left": p.days_left,
            }
            for p in per_scope
        ]
        dated = {p.scope for p in per_scope}
        audience = m.applies_to.plans if m.applies_to.plans is not None else plans
        tbd_phase = (
            Phase.ENFORCED
            if ALL_SCOPE in sm.enforced_scopes
            else (Phase.SCHEDULED if now < m.grace_start_instant(tz) else Phase.GRACE)
        )
        out["plans"] += [
            {"plan": plan, "phase": tbd_phase, "mandatory_opt_in": None, "days_left": None}
            for plan in sorted(audience - dated)
        ]
        out["plans"].sort(key=lambda p: p["plan"])
        # The map as it reads: every plan, TBD ones as null (SPEC: a plan -> date map).
        out["mandatory_opt_in"] = {p["plan"]: p["mandatory_opt_in"] for p in out["plans"]}
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

    # Under --now in the past, only the accounts that existed then are counted.
    figures, reach = status_figures.current(store, (sm.migration for sm in catalog), tz, now)
    plans = (
        frozenset(
            r[0]
            for r in store.conn.execute(
                "SELECT DISTINCT plan FROM accounts WHERE status = 'active'"
            )
        )
        if any(sm.migration.per_plan for sm in catalog)
        else frozenset()
    )
    migrations = [migration_status(sm, now, tz, figures[sm.id], plans) for sm in catalog]
    # Counted live (events arrive between runs; status_figures' cache is for the accounts).
    delivery = deliveries.figures(store, now)
    for sm, entry in zip(catalog, migrations, strict=True):
        until = status_figures.extended(store, sm.migration, exists_at=now)
        entry["extended"] = {"accounts": sum(until.values()), "until": until}
        entry["delivery"] = delivery.get(sm.id) or deliveries.empty_figures()
    return {
        "now": iso(now),
        "timezone": store.meta("timezone") or "UTC",
        "migrations": migrations,
        "outbox": outbox_counts(store),
        "platform": _platform(events.summary(store, now)),
        # Accounts nobody can be told about: every administrator suppressed, or none at all.
        "accounts_all_admins_suppressed": reach["all_admins_suppressed"],
        "accounts_without_admins": reach["without_admins"],
        "unreachable_accounts": status_figures.unreachable_account_ids(
            store, UNREACHABLE_SHOWN, exists_at=now
        ),
        "delivery_orphans": deliveries.orphans(store),
    }


def _platform(summary: dict[str, Any]) -> dict[str, Any]:
    """Enrollment events not yet delivered to the platform, and the oldest one's instant."""
    return {k: summary[k] for k in ("pending", "oldest", "failing", "oldest_age_seconds")}
