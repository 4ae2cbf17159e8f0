"""The adoption report's figures, from the store: what `report --json` prints and the HTML draws."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from migrate_cli.lifecycle.enrollment import audience_sql, pending_accounts_sql, state_sql
from migrate_cli.lifecycle.rehearsal import simulate
from migrate_cli.lifecycle.status import status_report
from migrate_cli.progress import NO_PROGRESS, Progress
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import StoredMigration, load_catalog, store_timezone
from migrate_cli.timeutil import iso, local_date
from migrate_cli.vocabulary import Enrollment, NoticeKind, NoticeState

TOP_ADMINS = 20
NEXT_DAYS = 14
STATES = [s.value for s in Enrollment]


def report_figures(
    store: Store, now: datetime, migration_id: str | None = None, progress: Progress = NO_PROGRESS
) -> dict[str, Any]:
    """Every figure of the report, per migration (retired ones left out unless asked for)."""
    tz = store_timezone(store)
    status = status_report(store, now, migration_id)  # raises NotFoundError for an unknown id
    catalog = {sm.id: sm for sm in load_catalog(store)}
    wanted = [
        m for m in status["migrations"] if migration_id is not None or m["status"] == "active"
    ]
    today = local_date(now, tz)
    progress.phase("rehearsing the next 14 days")
    # One rehearsal for every migration (it reads each migration's accounts once).
    upcoming = simulate(store, now, today + timedelta(days=NEXT_DAYS - 1))
    progress.phase("counting", len(wanted))
    migrations = []
    for entry in wanted:
        sm = catalog[entry["id"]]
        migrations.append(
            {
                **entry,
                "milestones": milestones(store, sm, today),
                "adoption": adoption(store, sm, tz, today),
                "by_plan": plan_shares(store, sm, tz),
                "notices": notice_counts(store, sm.id),
                "top_admins": top_admins(store, sm, tz),
                "next_days": [
                    {
                        "date": d.day.isoformat(),
                        "notices": d.notices.get(sm.id, {}),
                        "enforced": d.enforced.get(sm.id, 0),
                    }
                    for d in upcoming
                ],
            }
        )
        progress.advance(1)
    return {
        "now": iso(now),
        "timezone": status["timezone"],
        "outbox": status["outbox"],
        # Accounts nobody can be told about (every administrator suppressed): count, first ids.
        "accounts_all_admins_suppressed": status["accounts_all_admins_suppressed"],
        "unreachable_accounts": status["unreachable_accounts"],
        "delivery_orphans": status["delivery_orphans"],
        "migrations": migrations,
    }


@lru_cache(maxsize=4096)
def _local_day(instant: str, tz: tzinfo) -> date:
    return local_date(datetime.fromisoformat(instant), tz)


def _day(stamp: str, tz: tzinfo) -> date:
    # Stored instants are UTC to the microsecond; a minute decides the local day.
    return _local_day(stamp[:16] + ":00+00:00", tz)


def adoption(store: Store, sm: StoredMigration, tz: tzinfo, today: date) -> dict[str, Any]:
    """Accounts per state at the end of each day from the grace start to today.

    The accounts counted are today's audience (as `status` counts it); each one is placed in
    time by when it changed: opt-ins and opt-outs from the audit log, enforcements from their
    enrollment, auto-enrolment and joining from `created_at`. The last day equals `status`."""
    m = sm.migration
    start = m.grace_period_start
    if today < start:
        return {"days": [], **{s: [] for s in STATES}, "total": []}
    n_days = (today - start).days + 1
    where, wparams = audience_sql(m)
    expr, sparams = state_sql(m, tz)
    joined = [0] * (n_days + 1)  # accounts entering the audience (created) per day index
    auto = [0] * (n_days + 1)
    enforced = [0] * (n_days + 1)
    opted = [0] * (n_days + 1)  # +1 when an opt-in starts, -1 when it ends

    def index(stamp: str | None) -> int:
        if stamp is None:
            return n_days  # beyond the chart
        return min(max((_day(stamp, tz) - start).days, 0), n_days)

    for r in store.iterate(
        f"SELECT a.created_at, {expr} AS state, e.changed_at FROM accounts a "
        "LEFT JOIN enrollments e ON e.migration_id = ? AND e.account_id = a.id WHERE " + where,
        [*sparams, m.id, *wparams],
    ):
        joined[index(r["created_at"])] += 1
        if r["state"] == Enrollment.AUTO_ENROLLED:
            auto[index(r["created_at"])] += 1
        elif r["state"] == Enrollment.ENFORCED:
            enforced[index(r["changed_at"])] += 1
    # Each opt-in lasts until the account's next opt event (an opt-out), or until now.
    for r in store.iterate(
        "SELECT ev.action, ev.at, ev.until FROM (SELECT account_id, action, at, "
        "LEAD(at) OVER (PARTITION BY account_id ORDER BY id) AS until FROM audit "
        "WHERE migration_id = ? AND action IN ('enrollment.opted_in', 'enrollment.opted_out')) ev "
        "JOIN accounts a ON a.id = ev.account_id WHERE ev.action = 'enrollment.opted_in' AND "
        + where,
        [m.id, *wparams],
    ):
        opted[index(r["at"])] += 1
        if r["until"] is not None:
            opted[index(r["until"])] -= 1
    series: dict[str, list[int]] = {s: [] for s in STATES}
    totals: list[int] = []
    running = dict.fromkeys(("total", "auto", "enforced", "opted"), 0)
    for i in range(n_days):
        running["total"] += joined[i]
        running["auto"] += auto[i]
        running["enforced"] += enforced[i]
        running["opted"] += opted[i]
        switched = running["auto"] + running["enforced"] + running["opted"]
        series[Enrollment.PENDING].append(running["total"] - switched)
        series[Enrollment.OPTED_IN].append(running["opted"])
        series[Enrollment.AUTO_ENROLLED].append(running["auto"])
        series[Enrollment.ENFORCED].append(running["enforced"])
        totals.append(running["total"])
    days = [(start + timedelta(days=i)).isoformat() for i in range(n_days)]
    return {"days": days, **series, "total": totals}


def milestones(store: Store, sm: StoredMigration, today: date) -> list[dict[str, str]]:
    """The days worth marking on the time axis: grace start, schedule changes, escalation
    days and mandatory dates (per plan), sorted."""
    m = sm.migration
    out = [{"date": m.grace_period_start.isoformat(), "what": "grace period starts"}]
    for r in store.query(
        "SELECT at, detail FROM audit WHERE migration_id = ? AND action = 'migration.rescheduled' "
        "ORDER BY id",
        (m.id,),
    ):
        detail = json.loads(r["detail"]) if r["detail"] else {}
        out.append(
            {
                "date": _day(r["at"], store_timezone(store)).isoformat(),
                "what": f"schedule changed: {detail.get('from')} → {detail.get('to')}",
            }
        )
    deadlines = (
        sorted(m.mandatory_opt_in.items())
        if isinstance(m.mandatory_opt_in, dict)
        else [("", m.mandatory_opt_in)]
        if m.mandatory_opt_in
        else []
    )
    for plan, day in deadlines:
        suffix = f" ({plan})" if plan else ""
        out.append({"date": day.isoformat(), "what": "mandatory date" + suffix})
        for offset in m.notices.escalate_before:
            out.append(
                {
                    "date": (day - offset).isoformat(),
                    "what": f"escalation, {offset.days} day(s) before{suffix}",
                }
            )
    return sorted(out, key=lambda x: x["date"])


def plan_shares(store: Store, sm: StoredMigration, tz: tzinfo) -> list[dict[str, Any]]:
    """Per plan of the audience: accounts per state and the migrated share."""
    m = sm.migration
    where, wparams = audience_sql(m)
    expr, sparams = state_sql(m, tz)
    by_plan: dict[str, Counter[str]] = {}
    for r in store.query(
        f"SELECT a.plan, {expr} AS state, count(*) AS n FROM accounts a LEFT JOIN enrollments e "
        "ON e.migration_id = ? AND e.account_id = a.id WHERE " + where + " GROUP BY a.plan, state",
        [*sparams, m.id, *wparams],
    ):
        by_plan.setdefault(r["plan"], Counter())[r["state"]] = r["n"]
    out = []
    for plan, counts in sorted(by_plan.items()):
        total = sum(counts.values())
        migrated = total - counts[Enrollment.PENDING]
        out.append(
            {
                "plan": plan,
                "total": total,
                **{s: counts[s] for s in STATES},
                "migrated_share": round(migrated / total, 4) if total else None,
            }
        )
    return out


def notice_counts(store: Store, migration_id: str) -> dict[str, dict[str, int]]:
    """Per notice kind: how many are in each outbox state (queued = pending or sending)."""
    out = {k.value: {s.value: 0 for s in NoticeState} for k in NoticeKind}
    for r in store.query(
        "SELECT kind, state, count(*) AS n FROM outbox WHERE migration_id = ? GROUP BY kind, state",
        (migration_id,),
    ):
        out.setdefault(r["kind"], {s.value: 0 for s in NoticeState})[r["state"]] = r["n"]
    return out


def top_admins(store: Store, sm: StoredMigration, tz: tzinfo) -> list[dict[str, Any]]:
    """The administrators with the most pending accounts (ties by address)."""
    sql, params = pending_accounts_sql(sm.migration, tz)
    return [
        {"email": r["email"], "pending": r["n"]}
        for r in store.query(
            f"SELECT x.email AS email, count(*) AS n FROM ({sql}) p "
            "CROSS JOIN account_admins x ON x.account_id = p.id "
            "GROUP BY x.email ORDER BY n DESC, x.email LIMIT ?",
            [*params, TOP_ADMINS],
        )
    ]
