"""Who is due what notice now: a pure planning function of the store's state (reads only)."""

from __future__ import annotations

import json
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
from migrate_cli.store.stored_migrations import StoredMigration, schedule_history
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

    ``date_changed``: one of their pending accounts has another own date than under the
    schedule version of their last notice; a schedule change is only for them (SPEC §3).
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


@dataclass(frozen=True)
class PastDates:
    """The own dates an account had under a migration's earlier schedule versions, as SQL over
    the pending accounts' columns (alias ``p``): one column per distinct earlier schedule whose
    dates differ from today's. An administrator whose last notice was planned under version
    ``seen`` was told the dates of ``column(seen)``; a schedule change is news to them only if
    one of their pending accounts has another own date now (SPEC §3)."""

    columns: tuple[tuple[str, list[Any]], ...]  # (expression, params) per distinct schedule
    of_version: tuple[int | None, ...]  # version -> its column (None: today's dates)

    def column(self, seen: int | None) -> int | None:
        if seen is None or not 0 <= seen < len(self.of_version):
            return None
        return self.of_version[seen]

    def changed_sql(self, *, only_tbd: bool = False) -> tuple[str, list[Any]]:
        """Per column, '1' when an account's own date then is not its own date now ('0'
        otherwise), concatenated: one character per column ('' without columns).
        ``only_tbd``: only for accounts without a date now (a withdrawn date)."""
        if not self.columns:
            return "''", []
        cond = "p.deadline IS NULL AND " if only_tbd else ""
        parts = [f"({cond}{expr} IS NOT p.deadline)" for expr, _ in self.columns]
        # '' first: one column alone would be an integer, not text
        return "('' || " + " || ".join(parts) + ")", [v for _, ps in self.columns for v in ps]

    def changed_agg(self, *, only_tbd: bool = False) -> tuple[str, list[Any]]:
        """``changed_sql`` over an administrator's accounts: '1' where any of them changed."""
        if not self.columns:
            return "''", []
        cond = "p.deadline IS NULL AND " if only_tbd else ""
        parts = [f"max({cond}{expr} IS NOT p.deadline)" for expr, _ in self.columns]
        # '' first: one column alone would be an integer, not text
        return "('' || " + " || ".join(parts) + ")", [v for _, ps in self.columns for v in ps]

    def listed_sql(self) -> tuple[str, list[Any]]:
        """A JSON array of the account's own date under each column."""
        exprs = [expr for expr, _ in self.columns]
        return f"json_array({', '.join(exprs)})", [v for _, ps in self.columns for v in ps]


def past_dates(store: Store, sm: StoredMigration) -> PastDates:
    """The earlier schedules of a migration as columns (see PastDates)."""
    columns: list[tuple[str, list[Any]]] = []
    seen: dict[Any, int] = {}
    of_version: list[int | None] = []
    for m in schedule_history(store, sm):
        if m is sm.migration:
            of_version.append(None)
            continue
        key = repr(m.mandatory_opt_in)
        if key not in seen:
            seen[key] = len(columns)
            columns.append(deadline_sql(m, "p", until="p.extended_until"))
        of_version.append(seen[key])
    return PastDates(tuple(columns), tuple(of_version))


def told_before(listed: str, column: int | None) -> str:
    """A schedule change's `listed` JSON: each account's earlier own dates (one per column)
    replaced by the one the administrator was told of; [id, name, plan, date, date before]."""
    return json.dumps(
        [
            [*item[:4], item[4][column] if column is not None else item[3]]
            for item in json.loads(listed)
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _plan_sql(
    sm: StoredMigration, past: PastDates, tz: tzinfo, *, listed: bool
) -> tuple[str, list[Any]]:
    """The plan query: per administrator with a pending account, those accounts, their earliest
    date, whether one is TBD and, per earlier schedule, whether one's own date differs now,
    joined with the administrator's last notice and suppression.

    ``listed``: also the accounts as JSON, [id, name, plan, own date, [own date under each
    earlier schedule]], which the notice lists (a dry run needs no names).
    """
    m = sm.migration
    pending_sql, params = pending_accounts_sql(m, tz)
    changed, cparams = past.changed_agg()
    before, bparams = past.listed_sql()
    names = (
        f"json_group_array(json_array(p.id, p.name, p.plan, p.deadline, {before}))"
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
    return sql, [*params, *cparams, *(bparams if listed else []), m.id]


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
    past = past_dates(store, sm)
    sql, params = _plan_sql(sm, past, tz, listed=listed)
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
            date_changed=_changed(changed, past.column(sv)),
        )
        if verdict is None:
            continue
        kind, slot, why = verdict
        if kind == NoticeKind.SCHEDULE_CHANGE and listed_json is not None:
            listed_json = told_before(listed_json, past.column(sv))
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


def _changed(flags: str, column: int | None) -> bool:
    """Whether an administrator's flags (PastDates.changed_agg) say a date moved for them."""
    return column is not None and flags[column] == "1"


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
