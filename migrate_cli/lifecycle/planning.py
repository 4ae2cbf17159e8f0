"""Who is due what: a pure planning function of the store's state and 'now' (reads only)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import marshal
import sqlite3
import tempfile
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import Any

from migrate_cli.definitions.model import Migration, NoticeSettings
from migrate_cli.lifecycle.enrollment import pending_accounts_sql
from migrate_cli.lifecycle.phases import mandatory_instant
from migrate_cli.store.db import Store, db_time, parse_db_time
from migrate_cli.store.stored_migrations import StoredMigration
from migrate_cli.timeutil import format_duration, local_date

ANNOUNCEMENT = "announcement"
REMINDER = "reminder"
SCHEDULE_CHANGE = "schedule_change"
ENFORCED = "enforced"
KINDS = (ANNOUNCEMENT, REMINDER, SCHEDULE_CHANGE, ENFORCED)
SEP = "\x1f"  # unit separator: cannot appear in account ids


@dataclass(frozen=True)
class PlannedNotice:
    """One notice due now, with the reason an operator can read."""

    migration_id: str
    email: str
    kind: str
    slot: str
    account_ids: tuple[str, ...]
    deadline: date | None
    days_left: int | None
    why: str
    schedule_version: int
    suppressed: bool = False
    # JSON [[id, name, plan], ...] of the accounts, in any order (dispatch sorts and cuts it).
    listed: str | None = None

    @property
    def key(self) -> str:
        return notice_key(self.migration_id, self.email, self.kind, self.slot)


def notice_key(migration_id: str, email: str, kind: str, slot: str) -> str:
    """The idempotency key: one notice per (migration, administrator, kind, slot), ever."""
    return f"{migration_id}|{email}|{kind}|{slot}"


def message_id(key: str, from_addr: str) -> str:
    """A Message-ID derived from the key, so a resend (never intended) would be recognisable."""
    return f"<migctl.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{_id_domain(from_addr)}>"


@lru_cache(maxsize=64)  # one sender per run: parsed once, not once per notice
def _id_domain(from_addr: str) -> str:
    return from_addr.rsplit("@", 1)[-1].strip(" >") or "migctl.invalid"


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
) -> Slot | None:
    """The latest reminder or escalation slot at or before ``now`` (missed runs collapse).

    ``deadline`` is the local date of ``deadline_at``; it names escalation slots.
    """
    best: Slot | None = None
    if settings.reminder_every and now >= grace_start:
        k = int((now - grace_start) / settings.reminder_every)
        if k >= 1:
            at = grace_start + k * settings.reminder_every
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
            at = deadline_at - offset
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
) -> tuple[str, str, str] | None:
    """(kind, slot, why) due for one administrator now, or None. Pure: no store access."""
    start = m.grace_start_instant(tz)
    if now < start:
        return None
    deadline_at = mandatory_instant(deadline, tz) if deadline else None
    if deadline_at is not None and now >= deadline_at:
        return None  # past the date: enforcement (and its `enforced` notice) takes over
    if last_at is None:
        return ANNOUNCEMENT, "announcement", _started(m.grace_period_start)
    if now - last_at < settings.min_gap:
        return None
    if seen_version is not None and schedule_version > seen_version:
        return (
            SCHEDULE_CHANGE,
            f"schedule-v{schedule_version}",
            "the mandatory date was set or moved",
        )
    slot = latest_slot(settings, start, deadline_at, now, schedule_version, deadline=deadline)
    if slot is None or slot.at <= last_at:
        return None
    return REMINDER, slot.name, slot.why


@lru_cache(maxsize=64)
def _started(day: date) -> str:
    return f"grace period started {day.isoformat()}"


def _plan_sql(
    m: Migration, tz: tzinfo, aggregates: str, select: str, *, emails: tuple[str, str] | None
) -> tuple[str, list[Any]]:
    """The plan query: ``aggregates`` per administrator (agg), then ``select`` over agg joined
    with the administrator's last notice (`last`) and the suppression list (`s`).

    ``emails``: only administrators in this inclusive range, read from the links' email index
    (a page of the dry run's sample); otherwise every pending account is joined to its links.
    """
    pending_sql, params = pending_accounts_sql(m, tz)
    if emails is None:
        # CROSS JOIN keeps SQLite from driving the join from the administrators' side (one
        # lookup per link); the GROUP BY sorts once.
        links = "FROM p CROSS JOIN account_admins x ON x.account_id = p.id "
        in_page = ""
        page: tuple[str, ...] = ()
    else:
        links = (
            "FROM account_admins x CROSS JOIN p ON p.id = x.account_id "
            "WHERE x.email BETWEEN ? AND ? "
        )
        in_page = "AND email BETWEEN ? AND ? "  # not the migration's whole outbox per page
        page = emails
    sql = (
        f"WITH p AS ({pending_sql}), "
        f"agg AS (SELECT x.email AS email, {aggregates} {links}GROUP BY x.email), "
        "last AS (SELECT email, max(created_at) AS last_at, max(schedule_version) AS sv "
        f"FROM outbox WHERE migration_id = ? {in_page}AND state != 'suppressed' GROUP BY email) "
        f"SELECT {select} FROM agg LEFT JOIN last ON last.email = agg.email "
        "LEFT JOIN suppressions s ON s.email = agg.email"
    )
    return sql, [*params, *page, m.id, *page]


# Per administrator: how many pending accounts, the earliest date and whether one is TBD.
_DEADLINES = "min(p.deadline) AS deadline, max(p.deadline IS NULL) AS has_tbd"


class _Judge:
    """The verdict for one administrator from what the plan query says about them.

    Shared by the planner (once per administrator) and the dry run's tally (once per group of
    administrators the query found alike), so the two cannot disagree.
    """

    def __init__(self, sm: StoredMigration, tz: tzinfo, now: datetime) -> None:
        self.sm = sm
        self.tz = tz
        self.now = now
        self.dates: dict[str, date] = {}  # a handful of distinct dates: parse each once

    def __call__(
        self, raw: str | None, has_tbd: int, last_raw: str | None, sv: int | None
    ) -> tuple[date | None, tuple[str, str, str] | None]:
        """(the administrator's deadline, (kind, slot, why) or None)."""
        dates = self.dates
        deadline = (
            (dates.get(raw) or dates.setdefault(raw, date.fromisoformat(raw))) if raw else None
        )
        # An administrator with a TBD-plan account keeps getting notices about those accounts
        # even after their dated accounts pass the deadline.
        if deadline is not None and has_tbd and self.now >= mandatory_instant(deadline, self.tz):
            deadline = None
        sm = self.sm
        verdict = decide(
            sm.migration,
            sm.migration.notices,
            self.tz,
            self.now,
            deadline=deadline,
            last_at=parse_db_time(last_raw) if last_raw else None,
            seen_version=sv,
            schedule_version=sm.schedule_version,
        )
        return deadline, verdict


def _plannable(sm: StoredMigration, tz: tzinfo, now: datetime) -> bool:
    return (
        sm.status == "active"
        and now >= sm.migration.grace_start_instant(tz)
        and "*" not in sm.enforced_scopes
    )


def plan_migration(
    store: Store,
    sm: StoredMigration,
    tz: tzinfo,
    now: datetime,
    *,
    listed: bool = True,
    spool: bool = False,
    emails: tuple[str, str] | None = None,
    groups: list[Group] | None = None,
) -> Iterator[PlannedNotice]:
    """Announcement/reminder/schedule_change notices for one migration, streamed from SQL.

    ``spool``: read the whole plan into a temporary file first (see ``_spooled``), so that no
    read of the store stays open while the caller writes. ``emails``: only the administrators
    in this inclusive range of addresses. ``groups``: only the administrators whose verdict
    inputs are one of these (see ``Tally.due_groups``), and the suppressed ones.
    """
    m = sm.migration
    if not _plannable(sm, tz, now):
        return
    sql, params = _plan_sql(
        m,
        tz,
        "count(*) AS n, group_concat(p.id, char(31)) AS ids, "
        + _DEADLINES
        + (
            ", json_group_array(json_array(p.id, p.name, p.plan)) AS listed"
            if listed  # what the notice will list, for dispatch (a dry run needs no names)
            else ", NULL AS listed"
        ),
        "agg.email, agg.n, agg.ids, agg.deadline, agg.has_tbd, agg.listed, last.last_at, "
        "last.sv, s.email IS NOT NULL AS suppressed",
        emails=emails,
    )
    judge = _Judge(sm, tz, now)
    existing = _existing_keys_checker(store, m.id)
    today = local_date(now, tz)
    # Plain tuples, not sqlite3.Row: this loop runs once per administrator.
    if groups is not None:
        alike = " OR ".join(
            "(agg.deadline IS ? AND agg.has_tbd IS ? AND last.last_at IS ? AND last.sv IS ?)"
            for _ in groups
        )
        sql += f" WHERE s.email IS NOT NULL{' OR ' + alike if alike else ''}"
        params = [*params, *(value for group in groups for value in group)]
    cur = store.conn.execute(sql + " ORDER BY agg.email", params)
    rows = _spooled(cur) if spool else cur
    for email, _n, joined_ids, raw, has_tbd, listed_json, last_raw, sv, suppressed in rows:
        deadline, verdict = judge(raw, has_tbd, last_raw, sv)
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


Group = tuple[str | None, int, str | None, int | None]


@dataclass
class Tally:
    """What a migration's plan holds, counted without listing it (the dry run's figures)."""

    planned: int = 0
    suppressed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    admins: int = 0  # administrators with a pending account, due a notice or not
    # The verdict inputs (deadline, TBD flag, last notice, seen version) of the groups of
    # unsuppressed administrators that are due a notice.
    due_groups: list[Group] = field(default_factory=list)


def tally_migration(store: Store, sm: StoredMigration, tz: tzinfo, now: datetime) -> Tally:
    """The counts ``plan_migration`` would yield, without a row per administrator.

    The plan query groups the administrators by everything the verdict depends on (their
    deadline, TBD flag, last notice and the schedule version it saw), so the verdict is decided
    once per group, a handful of groups for a million administrators. Suppressed administrators
    stay one per group: their verdict also depends on the keys they already hold.
    """
    tally = Tally()
    if not _plannable(sm, tz, now):
        return tally
    sql, params = _plan_sql(
        sm.migration,
        tz,
        _DEADLINES,
        "agg.deadline, agg.has_tbd, last.last_at, last.sv, "
        "CASE WHEN s.email IS NULL THEN NULL ELSE agg.email END AS held, count(*)",
        emails=None,
    )
    judge = _Judge(sm, tz, now)
    existing = _existing_keys_checker(store, sm.id)
    for raw, has_tbd, last_raw, sv, held, n in store.conn.execute(
        sql + " GROUP BY 1, 2, 3, 4, 5", params
    ):
        tally.admins += n
        _deadline, verdict = judge(raw, has_tbd, last_raw, sv)
        if verdict is None:
            continue
        kind, slot, _why = verdict
        if held is None:
            tally.planned += n
            tally.by_kind[kind] = tally.by_kind.get(kind, 0) + n
            tally.due_groups.append((raw, has_tbd, last_raw, sv))
        elif not existing(held, kind, slot):
            tally.suppressed += 1
    return tally


def sample_migration(
    store: Store, sm: StoredMigration, tz: tzinfo, now: datetime, tally: Tally, limit: int
) -> list[PlannedNotice]:
    """The first ``limit`` notices of ``plan_migration`` (in its order), for the dry run's table.

    When most administrators with pending accounts are due (a first announcement), the rows
    are planned page by page of administrators (by address, growing pages): the first pages
    hold them, and a million-account plan is not sorted to show its first rows. Otherwise (an
    ordinary reminder day) pages would read most administrators one by one, at several times
    the cost per administrator of one plan query: the plan query then runs once (about the cost
    of the tally), keeping only the administrators of the tally's due groups and the suppressed
    ones (checked one by one as ever).
    """
    due = tally.planned + tally.suppressed
    if limit <= 0 or due == 0:
        return []
    if due * SPARSE_PLAN < tally.admins:
        groups = tally.due_groups if len(tally.due_groups) <= MAX_SAMPLE_GROUPS else None
        plan = plan_migration(store, sm, tz, now, listed=False, groups=groups)
        return list(itertools.islice(plan, limit))
    out: list[PlannedNotice] = []
    after = ""
    page = FIRST_SAMPLE_PAGE
    while len(out) < limit:
        emails = [
            r[0]
            for r in store.conn.execute(
                "SELECT DISTINCT email FROM account_admins WHERE email > ? ORDER BY email LIMIT ?",
                (after, page),
            )
        ]
        if not emails:
            break
        out.extend(plan_migration(store, sm, tz, now, listed=False, emails=(emails[0], emails[-1])))
        after = emails[-1]
        page = min(page * 4, LAST_SAMPLE_PAGE)
    return out[:limit]


FIRST_SAMPLE_PAGE = 256  # administrators in the first page of the dry run's sample
LAST_SAMPLE_PAGE = 65_536
SPARSE_PLAN = 4  # fewer due than 1 in this many administrators: one filtered plan query
MAX_SAMPLE_GROUPS = 200  # more due groups than this: the filtered query streams everyone


SPOOL_SLICE = 5_000


def _spooled(cur: sqlite3.Cursor) -> Iterator[Any]:
    """The cursor's rows, read to the end into a temporary file first, then replayed.

    A cursor left open on the store pins its snapshot while it is read. Meanwhile other
    connections write (a large run's queuing commits and its helper process sending): the
    write-ahead log cannot be checkpointed, grows by every page they write (2 GB for a million
    notices) and every page read, in every process, searches a longer log index. Reading the
    plan out first (a few seconds per million rows, bounded memory) ends the read at once.
    """
    try:
        spool_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the with below
    except OSError:  # no writable temporary folder: stream as usual (slower, still correct)
        yield from cur
        return
    with spool_file as spool:
        # Length-prefixed blobs: marshal.load() on a file reads item by item through the file
        # object (~5 us per row); loads() of one slice's bytes is ten times faster.
        while rows := cur.fetchmany(SPOOL_SLICE):
            blob = marshal.dumps(rows)
            spool.write(len(blob).to_bytes(8, "little"))
            spool.write(blob)
        cur.close()  # the snapshot is released here
        spool.seek(0)
        while size := spool.read(8):
            yield from marshal.loads(spool.read(int.from_bytes(size, "little")))


def enforcement_batch(scope: str, deadline: date | None, late: str | None = None) -> str:
    """The slot of the `enforced` notice for one enforcement batch (the date stays last)."""
    tail = deadline.isoformat() if deadline else "immediate"
    return f"enforced-{scope}-late{late}-{tail}" if late else f"enforced-{scope}-{tail}"


def enqueue_enforced(
    conn: sqlite3.Connection,
    sm: StoredMigration,
    batch: str,
    now: datetime,
    from_addr: str,
    *,
    accounts: str | None = None,
) -> tuple[int, int]:
    """Queue one `enforced` notice per administrator of an enforcement batch, in SQL.

    Called in the enforcement's own transaction, so a batch is never recorded without its
    notices. ``accounts``: a table (column `id`, in account order) holding exactly the batch's
    accounts, all active, when the caller has it (the enforcement that just switched them);
    otherwise they are read back from `enrollments`. Returns (queued to send, suppressed).
    """
    m = sm.migration
    immediate = batch.endswith("-immediate")
    why = "emergency change enforced immediately" if immediate else "the mandatory date passed"
    deadline = None if immediate else _batch_date(batch)
    stamp = db_time(now)
    conn.create_function(
        "migctl_message_id", 1, lambda key: message_id(key, from_addr), deterministic=True
    )
    # ON CONFLICT(key) only: a row already queued for this key stays as it is, while any other
    # constraint failure is an error (OR IGNORE would silently drop rows).
    cur = conn.execute(
        "INSERT INTO outbox(key, migration_id, email, kind, slot, state, schedule_version, "
        "accounts, accounts_count, deadline, why, message_id, created_at, updated_at) "
        "SELECT g.key, ?, g.email, 'enforced', ?, "
        "CASE WHEN s.email IS NULL THEN 'pending' ELSE 'suppressed' END, ?, g.ids, g.n, ?, "
        "? || '; ' || g.n || ' account(s) switched', migctl_message_id(g.key), ?, ? FROM ("
        "  SELECT ? || '|' || x.email || '|enforced|' || ? AS key, x.email AS email, "
        "  json_group_array(e.account_id) AS ids, count(*) AS n FROM "
        + (
            f"  (SELECT id AS account_id FROM {accounts}) e "
            "  CROSS JOIN account_admins x ON x.account_id = e.account_id "
            if accounts
            else "  (SELECT account_id FROM enrollments WHERE migration_id = ? "
            "   AND state = 'enforced' AND batch = ? ORDER BY account_id) e "
            "  CROSS JOIN account_admins x ON x.account_id = e.account_id "
            "  JOIN accounts a ON a.id = e.account_id AND a.status = 'active' "
        )
        + "  GROUP BY x.email"
        ") g LEFT JOIN suppressions s ON s.email = g.email WHERE true "
        "ON CONFLICT(key) DO NOTHING",
        (
            m.id,
            batch,
            sm.schedule_version,
            deadline.isoformat() if deadline else None,
            why,
            stamp,
            stamp,
            m.id,
            batch,
            *(() if accounts else (m.id, batch)),
        ),
    )
    queued = cur.rowcount
    suppressed = conn.execute(
        "SELECT count(*) FROM outbox WHERE migration_id = ? AND kind = 'enforced' AND slot = ? "
        "AND state = 'suppressed' AND created_at = ?",
        (m.id, batch, stamp),
    ).fetchone()[0]
    return queued - suppressed, suppressed


def _batch_date(batch: str) -> date | None:
    tail = batch[-10:]
    try:
        return date.fromisoformat(tail)
    except ValueError:
        return None


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
    spool: bool = False,
) -> Iterator[PlannedNotice]:
    """Every announcement, reminder and schedule change due now across migrations.

    `enforced` notices are queued by the enforcement itself, in its own transaction.
    """
    for sm in catalog:
        if only is not None and sm.id != only:
            continue
        yield from plan_migration(store, sm, tz, now, listed=listed, spool=spool)


def tally_all(
    store: Store,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    only: str | None,
    sample: int,
) -> tuple[Tally, list[PlannedNotice]]:
    """The dry run: what ``plan_all`` would yield, counted, and its first ``sample`` notices."""
    chosen = [sm for sm in catalog if only is None or sm.id == only]
    total = Tally()
    shown: list[PlannedNotice] = []
    for tally, rows in _tallies(store, chosen, tz, now, sample):
        total.planned += tally.planned
        total.suppressed += tally.suppressed
        total.admins += tally.admins
        for kind, n in tally.by_kind.items():
            total.by_kind[kind] = total.by_kind.get(kind, 0) + n
        shown += rows[: sample - len(shown)]
    return total, shown


TALLY_THREADS = 2


def _tally_and_sample(
    store: Store, sm: StoredMigration, tz: tzinfo, now: datetime, sample: int
) -> tuple[Tally, list[PlannedNotice]]:
    """One migration's tally and first rows, read in one transaction (one snapshot), so the
    rows shown agree with the counts even while a run is writing."""
    conn = store.conn
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        tally = tally_migration(store, sm, tz, now)
        return tally, sample_migration(store, sm, tz, now, tally, sample)
    finally:
        if own:
            conn.execute("COMMIT")  # nothing was written: this only ends the read


def _tallies(
    store: Store, chosen: list[StoredMigration], tz: tzinfo, now: datetime, sample: int
) -> list[tuple[Tally, list[PlannedNotice]]]:
    """Each migration's tally and rows; on a store file, two at a time, each on its own
    connection.

    SQLite runs a statement without Python's lock, so two tallies use both cores through the
    parts of a query the sorter's threads do not cover (the scan and the joins). After a
    failure no other migration is started, and on an error or Ctrl-C in this thread the
    statements still running are interrupted rather than waited for (seconds at a million).
    """
    if len(chosen) < 2 or str(store.path) == ":memory:":
        return [_tally_and_sample(store, sm, tz, now, sample) for sm in chosen]
    readers: list[sqlite3.Connection] = []

    def own(sm: StoredMigration) -> tuple[Tally, list[PlannedNotice]]:
        with Store(store.path, create=False) as reader:
            readers.append(reader.conn)
            try:
                return _tally_and_sample(reader, sm, tz, now, sample)
            finally:
                readers.remove(reader.conn)

    results: dict[int, tuple[Tally, list[PlannedNotice]]] = {}
    queue = iter(enumerate(chosen))
    with ThreadPoolExecutor(max_workers=TALLY_THREADS) as pool:
        # At most TALLY_THREADS in flight, the next submitted only after a success: after an
        # error nothing new starts (the pool's exit waits for the one still running).
        running = {pool.submit(own, sm): i for i, sm in itertools.islice(queue, TALLY_THREADS)}
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = future.result()
                    for i, sm in itertools.islice(queue, 1):
                        running[pool.submit(own, sm)] = i
        except BaseException:
            for conn in list(readers):
                with contextlib.suppress(sqlite3.Error):  # closed meanwhile: nothing to stop
                    conn.interrupt()  # safe from another thread; the statement raises there
            raise
    return [results[i] for i in range(len(chosen))]
