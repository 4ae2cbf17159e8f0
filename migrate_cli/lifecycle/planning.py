"""Who is due what notice now: a pure planning function of the store's state (reads only)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from migrate_cli.definitions.model import Migration, NoticeSettings
from migrate_cli.lifecycle.enrollment import deadline_sql, pending_accounts_sql
from migrate_cli.lifecycle.phases import mandatory_instant
from migrate_cli.store.db import Store, parse_db_time
from migrate_cli.store.outbox import PlannedNotice, notice_key
from migrate_cli.store.stored_migrations import StoredMigration
from migrate_cli.timeutil import format_duration, local_date, start_of_day
from migrate_cli.vocabulary import NoticeKind

SEP = "\x1f"  # unit separator: cannot appear in account ids


@dataclass(frozen=True)
class Slot:
    """A cadence slot: an instant at which a reminder becomes due, with a stable name."""

    at: datetime
    name: str
    why: str


def latest_slot(
    settings: NoticeSettings,
    grace_start: datetime,
    deadline_at: datetime | None,
    now: datetime,
    schedule_version: int,
    *,
    deadline: date | None = None,
    tz: tzinfo = UTC,
) -> Slot | None:
    """The latest reminder or escalation slot at or before ``now`` (missed runs collapse).

    ``deadline`` is the local date of ``deadline_at``; it names escalation slots. Durations of
    whole days step local calendar days in ``tz`` (SPEC §3): across a DST change a slot stays
    at local midnight instead of landing at 01:00, a day late for a midnight cron.
    """
    best: Slot | None = None
    if settings.reminder_every and now >= grace_start:
        days = _whole_days(settings.reminder_every)
        first = local_date(grace_start, tz)
        k = (
            (local_date(now, tz) - first).days // days
            if days
            else int((now - grace_start) / settings.reminder_every)
        )
        if k >= 1:
            at = (
                start_of_day(first + timedelta(days=k * days), tz)
                if days
                else grace_start + k * settings.reminder_every
            )
            # Named by its instant, not its number: a changed `reminder_every` or grace start
            # renumbers the slots, and a reused name would collide with a key already sent.
            best = Slot(
                at,
                f"r-{at:%Y%m%dT%H%M%SZ}",
                f"reminder #{k} (every {format_duration(settings.reminder_every)})",
            )
    if deadline_at is not None:
        day = (deadline or deadline_at.date()).isoformat()
        for offset in settings.escalate_before:
            whole = _whole_days(offset)
            at = (
                start_of_day(local_date(deadline_at, tz) - timedelta(days=whole), tz)
                if whole
                else deadline_at - offset
            )
            if grace_start < at <= now and (best is None or at > best.at):
                # The schedule version and the date are part of the name: a moved date re-arms
                # escalations, and so does an administrator's own deadline moving later (their
                # earliest-dated account opted in or was enforced), without reusing a sent key.
                best = Slot(
                    at,
                    f"v{schedule_version}-e{format_duration(offset)}-{day}",
                    f"{format_duration(offset)} before the mandatory date",
                )
    return best


def _whole_days(duration: timedelta) -> int:
    """The number of days of a duration written in whole days (``7d``), else 0 (``36h``)."""
    return duration.days if duration == timedelta(days=duration.days) else 0


def decide(
    m: Migration,
    settings: NoticeSettings,
    tz: tzinfo,
    now: datetime,
    *,
    deadline: date | None,
    last_at: datetime | None,
    seen_version: int | None,
    schedule_version: int,
    date_changed: bool = True,
) -> tuple[str, str, str] | None:
    """(kind, slot, why) due for one administrator now, or None. Pure: no store access.

    ``date_changed``: one of their pending accounts has a new own date since the schedule's
    previous version; a schedule change is only for them (SPEC §3).
    """
    start = m.grace_start_instant(tz)
    if now < start:
        return None
    deadline_at = mandatory_instant(deadline, tz) if deadline else None
    if deadline_at is not None and now >= deadline_at:
        return None  # past the date: enforcement (and its `enforced` notice) takes over
    if last_at is None:
        return NoticeKind.ANNOUNCEMENT, "announcement", _started(m.grace_period_start)
    if now - last_at < settings.min_gap:
        return None
    if seen_version is not None and schedule_version > seen_version and date_changed:
        return (
            NoticeKind.SCHEDULE_CHANGE,
            f"schedule-v{schedule_version}",
            "the mandatory date of their accounts was set or moved",
        )
    slot = latest_slot(
        settings, start, deadline_at, now, schedule_version, deadline=deadline, tz=tz
    )
    # A slot within min_gap of the last notice is folded into the next due one: it is not
    # sent late as a second notice a few days after the first (SPEC §3, docs/notices.md).
    if slot is None or slot.at <= last_at or slot.at < last_at + settings.min_gap:
        return None
    return NoticeKind.REMINDER, slot.name, slot.why


@lru_cache(maxsize=64)
def _started(day: date) -> str:
    return f"grace period started {day.isoformat()}"


def previous_date_sql(sm: StoredMigration) -> tuple[str, list[Any]]:
    """SQL expression, over the pending accounts' columns (alias ``p``), of an account's own
    date before the latest schedule change (its own date itself when the schedule never
    changed)."""
    before = sm.before_last_change()
    if before is None or before is sm.migration:
        return "p.deadline", []
    return deadline_sql(before, "p", until="p.extended_until")


def _plan_sql(sm: StoredMigration, tz: tzinfo, *, listed: bool) -> tuple[str, list[Any]]:
    """The plan query: per administrator with a pending account, those accounts, their earliest
    date, whether one is TBD and whether one's own date changed in the latest schedule change,
    joined with the administrator's last notice and suppression.

    ``listed``: also the accounts as JSON, with their own dates now and before the change,
    which the notice lists (a dry run needs no names).
    """
    m = sm.migration
    pending_sql, params = pending_accounts_sql(m, tz)
    previous, pparams = previous_date_sql(sm)
    changed = f"max({previous} IS NOT p.deadline)"
    names = (
        f"json_group_array(json_array(p.id, p.name, p.plan, p.deadline, {previous}))"
        if listed
        else "NULL"
    )
    sql = (
        f"WITH p AS ({pending_sql}), "
        "agg AS (SELECT x.email AS email, group_concat(p.id, char(31)) AS ids, "
        "min(p.deadline) AS deadline, max(p.deadline IS NULL) AS has_tbd, "
        f"{changed} AS changed, {names} AS listed "
        # CROSS JOIN keeps SQLite from driving the join from the administrators' side (one
        # lookup per link); the GROUP BY sorts once.
        "FROM p CROSS JOIN account_admins x ON x.account_id = p.id GROUP BY x.email), "
        "last AS (SELECT email, max(created_at) AS last_at, max(schedule_version) AS sv "
        "FROM outbox WHERE migration_id = ? AND state != 'suppressed' GROUP BY email) "
        "SELECT agg.email, agg.ids, agg.deadline, agg.has_tbd, agg.changed, agg.listed, "
        "last.last_at, last.sv, s.email IS NOT NULL FROM agg LEFT JOIN last "
        "ON last.email = agg.email "
        "LEFT JOIN suppressions s ON s.email = agg.email ORDER BY agg.email"
    )
    return sql, [*params, *pparams, *(pparams if listed else []), m.id]


def _plannable(sm: StoredMigration, tz: tzinfo, now: datetime) -> bool:
    return (
        sm.status == "active"
        and now >= sm.migration.grace_start_instant(tz)
        and not sm.enforced_immediately
    )


def plan_migration(
    store: Store, sm: StoredMigration, tz: tzinfo, now: datetime, *, listed: bool = True
) -> Iterator[PlannedNotice]:
    """Announcement/reminder/schedule_change notices for one migration, streamed from SQL."""
    m = sm.migration
    if not _plannable(sm, tz, now):
        return
    sql, params = _plan_sql(sm, tz, listed=listed)
    existing = _existing_keys_checker(store, m.id)
    today = local_date(now, tz)
    dates: dict[str, date] = {}  # a handful of distinct dates: parse each once
    # Plain tuples, not sqlite3.Row: this loop runs once per administrator.
    for (
        email,
        joined_ids,
        raw,
        has_tbd,
        changed,
        listed_json,
        last_raw,
        sv,
        suppressed,
    ) in store.conn.execute(sql, params):
        deadline = (
            (dates.get(raw) or dates.setdefault(raw, date.fromisoformat(raw))) if raw else None
        )
        # An administrator with a TBD-plan account keeps getting notices about those accounts
        # even after their dated accounts pass the deadline.
        if deadline is not None and has_tbd and now >= mandatory_instant(deadline, tz):
            deadline = None
        verdict = decide(
            m,
            m.notices,
            tz,
            now,
            deadline=deadline,
            last_at=parse_db_time(last_raw) if last_raw else None,
            seen_version=sv,
            schedule_version=sm.schedule_version,
            date_changed=bool(changed),
        )
        if verdict is None:
            continue
        kind, slot, why = verdict
        # Only suppressed rows are invisible to `last`, so only they can collide with a key.
        if suppressed and existing(email, kind, slot):
            continue
        ids = tuple(sorted(joined_ids.split(SEP)))
        days = (deadline - today).days if deadline else None  # days_until, today hoisted
        detail = f"{why}; {len(ids)} pending account(s)"
        detail += f"; {days} day(s) left" if days is not None else "; mandatory date not set"
        yield PlannedNotice(
            m.id,
            email,
            kind,
            slot,
            ids,
            deadline,
            days,
            detail,
            sm.schedule_version,
            suppressed=bool(suppressed),
            listed=listed_json,
        )


def _existing_keys_checker(store: Store, migration_id: str) -> Any:
    def exists(email: str, kind: str, slot: str) -> bool:
        return (
            store.scalar(
                "SELECT 1 FROM outbox WHERE key = ?", (notice_key(migration_id, email, kind, slot),)
            )
            is not None
        )

    return exists


def plan_all(
    store: Store,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    only: str | None = None,
    *,
    listed: bool = True,
) -> Iterator[PlannedNotice]:
    """Every announcement, reminder and schedule change due now across migrations.

    `enforced` notices are queued by the enforcement itself, in its own transaction.
    """
    for sm in catalog:
        if only is not None and sm.id != only:
            continue
        yield from plan_migration(store, sm, tz, now, listed=listed)
