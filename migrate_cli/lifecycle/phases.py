"""Phases of a migration at an instant: a pure function of the definition, now and enforcements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from migrate_cli.definitions.model import ALL_SCOPE as ALL_SCOPE  # re-exported
from migrate_cli.definitions.model import Migration
from migrate_cli.timeutil import days_until, start_of_day
from migrate_cli.vocabulary import Phase

PHASE_ORDER = (Phase.SCHEDULED, Phase.GRACE, Phase.DUE, Phase.ENFORCED)


@dataclass(frozen=True)
class ScopePhase:
    """The phase of one scope: the whole migration ('*') or one plan with its own date."""

    scope: str
    phase: str
    deadline: date | None
    days_left: int | None


def mandatory_instant(deadline: date, tz: tzinfo) -> datetime:
    """The first instant at which the migration may be enforced: midnight starting the date."""
    return start_of_day(deadline, tz)


def scope_phase(
    m: Migration,
    scope: str,
    deadline: date | None,
    now: datetime,
    tz: tzinfo,
    *,
    enforced: bool,
) -> ScopePhase:
    days = days_until(deadline, now, tz) if deadline else None
    if enforced:
        return ScopePhase(scope, Phase.ENFORCED, deadline, days)
    if now < m.grace_start_instant(tz):
        return ScopePhase(scope, Phase.SCHEDULED, deadline, days)
    if deadline is None or now < mandatory_instant(deadline, tz):
        return ScopePhase(scope, Phase.GRACE, deadline, days)
    return ScopePhase(scope, Phase.DUE, deadline, days)


def scopes(m: Migration) -> list[tuple[str, date | None]]:
    """The scopes with their deadlines: '*' for one date or TBD, else one per plan."""
    if isinstance(m.mandatory_opt_in, dict):
        return sorted(m.mandatory_opt_in.items())
    return [(ALL_SCOPE, m.mandatory_opt_in)]


def phases(
    m: Migration,
    now: datetime,
    tz: tzinfo,
    *,
    enforced_scopes: frozenset[str] = frozenset(),
) -> list[ScopePhase]:
    """Phase per scope. ``enforced_scopes`` comes from the store's enforcement records;
    an immediate enforcement is recorded for '*' and covers every plan."""
    return [
        scope_phase(
            m,
            scope,
            deadline,
            now,
            tz,
            enforced=scope in enforced_scopes or ALL_SCOPE in enforced_scopes,
        )
        for scope, deadline in scopes(m)
    ]


def overall_phase(per_scope: list[ScopePhase], *, has_tbd_plans: bool = False) -> str:
    """The migration's phase: the least advanced of its scopes (plans without a date stay in grace)."""
    order = [PHASE_ORDER.index(p.phase) for p in per_scope]
    if has_tbd_plans and PHASE_ORDER.index(Phase.GRACE) < min(order):
        return Phase.GRACE
    return PHASE_ORDER[min(order)]


def plan_in_grace(m: Migration, plan: str, now: datetime, tz: tzinfo) -> bool:
    if now < m.grace_start_instant(tz):
        return False
    deadline = m.deadline_for(plan)
    return deadline is None or now < mandatory_instant(deadline, tz)
