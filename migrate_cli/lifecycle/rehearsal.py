"""plan --until: rehearse day by day what cron would do, from administrators grouped once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from migrate_cli.lifecycle.enrollment import pending_accounts_sql
from migrate_cli.lifecycle.phases import ALL_SCOPE, mandatory_instant, scopes
from migrate_cli.lifecycle.planning import PastDates, decide, past_dates
from migrate_cli.store.db import Store, db_time, parse_db_time
from migrate_cli.store.stored_migrations import StoredMigration, load_catalog, store_timezone
from migrate_cli.timeutil import local_date
from migrate_cli.vocabulary import NoticeKind

MAX_DAYS = 3_660
CHANGED = "!"  # in a batch key: its accounts' own dates under earlier schedules follow

# (total steps, label) -> a context giving advance(n); the CLI passes a progress bar.
Progress = Callable[[int, str], AbstractContextManager[Callable[[int], None]]]


@dataclass
class Day:
    day: date
    notices: dict[str, dict[str, int]] = field(default_factory=dict)  # migration -> kind -> n
    enforced: dict[str, int] = field(default_factory=dict)  # migration -> accounts

    def to_json(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "notices": self.notices, "enforced": self.enforced}

    @property
    def empty(self) -> bool:
        return not self.notices and not self.enforced


@dataclass
class _Group:
    """Unsuppressed administrators of one migration whose verdict inputs are alike.

    Nobody opts in during a rehearsal and every send succeeds, so administrators alike today
    stay alike: each day decides the group once, with the rule the real run uses.
    """

    scopes: frozenset[str]  # batch keys (with a date) holding a pending account of theirs
    has_tbd: bool  # a pending account without a date
    tbd_changed: str  # ... whose date an earlier schedule had: a '1' per such PastDates column
    last_at: datetime | None  # their last notice of this migration (suppressed ones excluded)
    seen: int | None  # the highest schedule version among those notices
    admins: int

    def notified(self, now: datetime, schedule_version: int) -> None:
        """A notice queued now: the planner's `last` (max created_at, max version) moves."""
        self.last_at = now if self.last_at is None else max(self.last_at, now)
        self.seen = schedule_version if self.seen is None else max(self.seen, schedule_version)

    def date_changed(self, column: int | None) -> bool:
        """A pending account of theirs has another own date now than under the earlier
        schedule ``column`` (PastDates): a batch key marked so, or a withdrawn date."""
        if column is None:
            return False
        if self.tbd_changed[column] == "1":
            return True
        return any(k.partition(CHANGED)[2][column : column + 1] == "1" for k in self.scopes)


@dataclass
class _Migration:
    """One active migration as the rehearsal steps it."""

    sm: StoredMigration
    # Batch key -> its date: a scope (TBD ones left out) for its plan's date, and
    # "<scope>@<date>" for the accounts of that scope extended to that date (rule 3b); either
    # followed by CHANGED and PastDates.changed_sql's flags when the account's own date was
    # another under an earlier schedule.
    dates: dict[str, date]
    base: dict[str, str]  # batch key -> its scope
    pending: dict[str, int]  # batch key -> pending accounts (with or without administrators)
    groups: list[_Group]
    past: PastDates
    plannable: bool  # not enforced immediately for everyone (then no notice is planned)
    # Enforced immediately for everyone: no group is read; the pending accounts that joined
    # since (switched as a late batch) and their unsuppressed administrators (told of it).
    late: int = 0
    late_admins: int = 0

    @property
    def immediate(self) -> bool:
        """Enforced at once by an operator: late accounts are due whatever their date."""
        return not self.plannable


def _deadline(
    g: _Group, dates: dict[str, date], tz: tzinfo, now: datetime
) -> tuple[bool, date | None]:
    """(any pending account left, the administrator's deadline), as the planner derives them:
    the earliest date of their pending accounts, or none when a TBD account outlives it."""
    if not g.scopes and not g.has_tbd:
        return False, None
    deadline = min((dates[s] for s in g.scopes), default=None)
    if deadline is not None and g.has_tbd and now >= mandatory_instant(deadline, tz):
        deadline = None
    return True, deadline


def _read(store: Store, sm: StoredMigration, tz: tzinfo) -> _Migration:
    """Group one migration's administrators by their verdict inputs, in one SQL pass, and
    count its pending accounts per enforcement scope."""
    m = sm.migration
    plan_dates = {scope: d for scope, d in scopes(m) if d is not None}
    order = sorted(plan_dates)
    pending_sql, params = pending_accounts_sql(m, tz)
    # Whether an account's own date was another under each earlier schedule, as the planner
    # decides it.
    past = past_dates(store, sm)
    flags, pparams = past.changed_sql()
    # The batch key of a pending account with a date: its scope (its plan, or '*' for one
    # date for everyone) and its own date, as "<scope index>@<date>" (no commas: joinable),
    # then CHANGED and those flags.
    mark = f"'{CHANGED}' || {flags}"
    if order == [ALL_SCOPE]:
        scope_sql: str = (
            f"CASE WHEN p.deadline IS NULL THEN NULL ELSE '0@' || p.deadline || {mark} END"
        )
        scope_params: list[Any] = [*pparams]
    elif order:
        scope_sql = (
            "CASE WHEN p.deadline IS NULL THEN NULL ELSE CASE p.plan "
            + " ".join("WHEN ? THEN ?" for _ in order)
            + f" END || '@' || p.deadline || {mark} END"
        )
        scope_params = [v for i, scope in enumerate(order) for v in (scope, str(i))]
        scope_params += pparams
    else:
        scope_sql, scope_params = "NULL", []
    dates = dict(plan_dates)
    base = {scope: scope for scope in order}

    def key_of(raw: str) -> str:
        """The scope itself for its plan's date; "<scope>@<date>" for an extension's; either
        followed by CHANGED and the PastDates flags when the date was another before."""
        index, own = raw.split("@")
        own, _, flags = own.partition(CHANGED)
        mark = CHANGED + flags if "1" in flags else ""
        scope = order[int(index)]
        key = (scope if own == plan_dates[scope].isoformat() else f"{scope}@{own}") + mark
        if key not in dates:
            dates[key], base[key] = date.fromisoformat(own), scope
        return key

    pending = dict.fromkeys(order, 0)
    for raw, n in store.conn.execute(
        f"SELECT {scope_sql} AS scope, count(*) FROM ({pending_sql}) p GROUP BY 1",
        [*scope_params, *params],
    ):
        if raw is not None:
            pending[key_of(raw)] = n
    plannable = not sm.enforced_immediately
    found: dict[tuple[frozenset[str], bool, str, str | None, int | None], int] = {}
    tbd_flags, tparams = past.changed_agg(only_tbd=True)
    if plannable:
        # Suppressed administrators are left out: their notices are queued as `suppressed`,
        # counted nowhere, and never seen by the planner's `last`.
        sql = (
            f"WITH p AS ({pending_sql}), "
            f"agg AS (SELECT x.email AS email, group_concat(DISTINCT {scope_sql}) AS scopes, "
            f"max(p.deadline IS NULL) AS has_tbd, {tbd_flags} AS tbd_changed "
            "FROM p CROSS JOIN account_admins x ON x.account_id = p.id GROUP BY x.email), "
            "last AS (SELECT email, max(created_at) AS last_at, max(schedule_version) AS sv "
            "FROM outbox WHERE migration_id = ? AND state != 'suppressed' GROUP BY email) "
            "SELECT agg.scopes, agg.has_tbd, agg.tbd_changed, last.last_at, last.sv, count(*) "
            "FROM agg LEFT JOIN last ON last.email = agg.email "
            "WHERE NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email = agg.email) "
            "GROUP BY 1, 2, 3, 4, 5"
        )
        for joined, has_tbd, tbd_changed, last_raw, sv, n in store.conn.execute(
            sql, [*params, *scope_params, *tparams, m.id]
        ):
            # group_concat's order is unspecified: the same set may come in two orders.
            key = (
                frozenset(key_of(raw) for raw in str(joined).split(",")) if joined else frozenset(),
                bool(has_tbd),
                str(tbd_changed),
                last_raw,
                sv,
            )
            found[key] = found.get(key, 0) + n
    groups = [
        _Group(s, tbd, changed, parse_db_time(last) if last else None, sv, n)
        for (s, tbd, changed, last, sv), n in found.items()
    ]
    late = late_admins = 0
    if not plannable:
        late, late_admins = store.conn.execute(
            f"WITH p AS ({pending_sql}) SELECT (SELECT count(*) FROM p), "
            "(SELECT count(DISTINCT x.email) FROM p CROSS JOIN account_admins x "
            "ON x.account_id = p.id WHERE NOT EXISTS "
            "(SELECT 1 FROM suppressions s WHERE s.email = x.email))",
            params,
        ).fetchone()
    return _Migration(sm, dates, base, pending, groups, past, plannable, late, late_admins)


def _enforce(r: _Migration, tz: tzinfo, now: datetime, day: Day) -> None:
    """Every scope whose date has passed switches its pending accounts; each administrator of
    a switched account gets one `enforced` notice per scope (batch)."""
    sm = r.sm
    if r.immediate and r.late:  # due at once, whatever their date
        day.enforced[sm.id] = day.enforced.get(sm.id, 0) + r.late
        if r.late_admins:
            kinds = day.notices.setdefault(sm.id, {})
            kinds[NoticeKind.ENFORCED] = kinds.get(NoticeKind.ENFORCED, 0) + r.late_admins
        r.late = r.late_admins = 0
        for scope in r.pending:
            r.pending[scope] = 0
        return
    # A run switches every due account of a scope in one batch (its plan's date passed, or
    # its own extension's): each administrator is told once per scope and run.
    due: dict[str, list[str]] = {}
    for key in sorted(r.dates):
        if now >= mandatory_instant(r.dates[key], tz) and r.pending[key]:
            due.setdefault(r.base[key], []).append(key)
    for keys in due.values():
        day.enforced[sm.id] = day.enforced.get(sm.id, 0) + sum(r.pending[k] for k in keys)
        for k in keys:
            r.pending[k] = 0
        told = 0 if r.plannable else r.late_admins
        r.late_admins = 0
        for g in r.groups:
            if g.scopes & set(keys):
                told += g.admins
                g.scopes = g.scopes - set(keys)
                g.notified(now, sm.schedule_version)
        if told:
            kinds = day.notices.setdefault(sm.id, {})
            kinds[NoticeKind.ENFORCED] = kinds.get(NoticeKind.ENFORCED, 0) + told


def _plan(r: _Migration, tz: tzinfo, now: datetime, day: Day) -> None:
    """Announcements, reminders and schedule changes due now, decided once per group."""
    sm = r.sm
    m = sm.migration
    if not r.plannable or now < m.grace_start_instant(tz):
        return
    for g in r.groups:
        pending, deadline = _deadline(g, r.dates, tz, now)
        if not pending:
            continue
        verdict = decide(
            m,
            m.notices,
            tz,
            now,
            deadline=deadline,
            last_at=g.last_at,
            seen_version=g.seen,
            schedule_version=sm.schedule_version,
            date_changed=g.date_changed(r.past.column(g.seen)),
        )
        if verdict is None:
            continue
        kinds = day.notices.setdefault(sm.id, {})
        kinds[verdict[0]] = kinds.get(verdict[0], 0) + g.admins
        g.notified(now, sm.schedule_version)


def days_of(now: datetime, until: date, tz: tzinfo) -> Iterator[datetime]:
    """The instants of the rehearsed runs: now, then the same local time on each later day."""
    start = local_date(now, tz)
    wall = now.astimezone(tz).time()  # naive local time of day, kept on every day
    yield now
    for offset in range(1, (until - start).days + 1):
        # Step calendar days in the store's timezone, not 24-hour blocks: across a DST change
        # `now + 24h` lands on another local hour, so a day would repeat and --until's day
        # would be skipped (or an enforcement simulated an hour off).
        local = datetime.combine(start + timedelta(days=offset), wall, tzinfo=tz)
        yield local.astimezone(UTC)


@contextlib.contextmanager
def _no_progress(_total: int, _label: str) -> Iterator[Callable[[int], None]]:
    yield lambda _n: None


def simulate(
    store: Store,
    now: datetime,
    until: date,
    *,
    progress: Progress = _no_progress,
) -> list[Day]:
    """Every day from now to ``until`` at the same time of day; nobody opts in; sends succeed.

    Reads the store once (one snapshot) and writes nothing; ``progress`` is told of each
    migration read and each day stepped.
    """
    tz = store_timezone(store)
    start = local_date(now, tz)
    if until < start:
        raise ValueError(f"--until {until.isoformat()} is before now ({start.isoformat()})")
    if (until - start).days > MAX_DAYS:
        raise ValueError(f"--until is more than {MAX_DAYS} days ahead")
    catalog = load_catalog(store)
    active = [sm for sm in catalog if sm.status == "active"]
    n_days = (until - start).days + 1
    days: list[Day] = []
    # A migration's read (a pass over its accounts) costs far more than stepping every day on
    # the groups: each read counts as many steps as there are days, so the bar's time
    # estimate holds from the first read on.
    with progress((len(active) + 1) * n_days, "rehearsing") as advance:
        conn = store.conn
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")  # one snapshot for every read
        try:
            rehearsed = []
            for sm in active:
                rehearsed.append(_read(store, sm, tz))
                advance(n_days)
            # Notices already queued at this very instant and not yet sent count on the first
            # day, as cron would report them with the ones it queues now.
            queued_now = conn.execute(
                "SELECT migration_id, kind, count(*) FROM outbox WHERE state = 'pending' "
                "AND created_at = ? GROUP BY migration_id, kind",
                (db_time(now),),
            ).fetchall()
        finally:
            if own:
                conn.execute("COMMIT")  # nothing was written: this only ends the read
        for offset, t in enumerate(days_of(now, until, tz)):
            day = Day(local_date(t, tz))
            for r in rehearsed:
                _enforce(r, tz, t, day)
            for r in rehearsed:
                _plan(r, tz, t, day)
            if offset == 0:
                for mid, kind, n in queued_now:
                    kinds = day.notices.setdefault(mid, {})
                    kinds[kind] = kinds.get(kind, 0) + n
            # Listed as cron's outbox would group them: by migration id, then kind.
            day.notices = {
                mid: dict(sorted(day.notices[mid].items())) for mid in sorted(day.notices)
            }
            days.append(day)
            advance(1)
    return days
