"""Dispatch: claim pending outbox rows, render, send through a provider, record each outcome."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from migrate_cli.config import Config
from migrate_cli.delivery.registry import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    SendResult,
    SendStatus,
)
from migrate_cli.lifecycle import status_figures
from migrate_cli.notices.fastrender import BulkRenderer, shape_key
from migrate_cli.notices.render import AccountRef, NoticeContext, Renderer
from migrate_cli.store.db import Store, audit, db_time
from migrate_cli.store.stored_migrations import StoredMigration
from migrate_cli.timeutil import days_until, local_date

RATE_HEADROOM = 0.035  # share of rate_per_second left unused to absorb client-side jitter
# Rows claimed per commit by the serial loop: bounds what a kill leaves in doubt, while one
# commit per row would cost a third of the throughput of local providers.
SERIAL_BATCH = 10
LOCAL_BATCH = 200  # the most rows a local provider (console, file, null) claims at once
BATCH_SECONDS = 0.02  # ... as many as it sends in this time
POLL_SECONDS = 0.02  # how often a dispatcher looks for rows another process is still queuing
MAX_LISTED_ACCOUNTS = 100  # an email lists this many accounts, then "and N more"
WAIT_FOR_RETRY = 30.0  # seconds a run waits for a transient retry before leaving it pending


@dataclass
class DispatchSummary:
    """What one dispatch did (this run only)."""

    sent: int = 0
    failed: int = 0
    retry_later: int = 0
    in_doubt: int = 0
    quota_reached: bool = False
    suppressed_at_send: int = 0  # waiting rows dropped: address suppressed or nothing pending
    stopped: str | None = None  # a configuration error or a signal stopped the run
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class _Job:
    row: sqlite3.Row
    email: OutgoingEmail
    attempts: int  # including this one (counted by the claim)


_Outcome = tuple[_Job, SendResult | None, BaseException | None]


class Dispatcher:
    """Sends what the outbox holds, never more than once per row, within rate and quota."""

    def __init__(
        self,
        store: Store,
        config: Config,
        provider_factory: Callable[[], Provider],
        renderer: Renderer,
        catalog: list[StoredMigration],
        tz: tzinfo,
        now: datetime,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stop: threading.Event | None = None,
        progress: Callable[[int], None] | None = None,
        network: bool = False,
        descending: bool = False,
        more_coming: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.config = config
        self.provider_factory = provider_factory
        self.renderer = renderer
        self.bulk = BulkRenderer(renderer)
        self.migrations = {sm.id: sm for sm in catalog}
        self.previous_deadlines = {sm.id: _previous_deadline(sm) for sm in catalog}
        self.tz = tz
        self.now = now  # the (possibly simulated) instant for content: days left etc.
        self.today = local_date(now, tz)
        self._dates: dict[str, date] = {}
        self._days: dict[date, int] = {}
        self.clock = clock  # the real clock for retries and the daily quota
        self.stop = stop or threading.Event()
        self.progress = progress or (lambda n: None)
        self.network = network
        # Two dispatchers share a large local run: one takes rows from the lowest id up, the
        # other from the highest down, so they only meet (and race for one batch) at the end.
        self.descending = descending
        self.more_coming = more_coming  # True while another process is still queuing rows
        self.summary = DispatchSummary()
        self._limiter: Any = None
        if config.email.rate_per_second:
            from migrate_cli.delivery.throttle import TokenBucket

            # The bucket's guarantee holds when a send is granted; building, signing and
            # connecting before the request reaches the provider add jitter that can bunch
            # arrivals. Pacing a little under the limit keeps the provider's own count within it.
            paced = config.email.rate_per_second * (1 - RATE_HEADROOM)
            # Where that margin is two sends or more, a grant that came late (a worker woke a
            # fraction of a millisecond after its slot) may be followed by one up to a tenth of
            # an interval early, so lateness is not lost for good while two grants never go out
            # together; the sliding one-second window still caps them at ceil(paced).
            limit = config.email.rate_per_second
            margin = limit - math.ceil(paced)
            # At low rates ceil(paced) is the limit itself: keep the window one send under it.
            window = max(1, min(math.ceil(paced), math.ceil(limit) - 1))
            self._limiter = TokenBucket(paced, burst=1.1 if margin >= 2 else 1, window_limit=window)

    # ------------------------------------------------------------------ public

    def run(self, only: str | None = None, *, sweep: bool = True) -> DispatchSummary:
        if sweep:
            self.sweep()
        quota = self._quota_left()
        if self.network and self.config.email.concurrency > 1:
            self._run_pool(only, quota)
        else:
            self._run_serial(only, quota)
        return self.summary

    def sweep(self) -> None:
        """Before sending, drop what must no longer go out, without losing track of it.

        Rows waiting from an earlier run (quota reached, retry later, `outbox retry`) may be
        addressed to someone suppressed since, or be about accounts that have all migrated
        since (SPEC rule 5: no more mail then). They become `suppressed` with the reason in
        `last_error`; `enforced` notices always go out.
        """
        stamp = db_time(self.clock())
        this_run = db_time(self.now)
        with self.store.transaction(counts=False) as conn:
            muted = conn.execute(
                "UPDATE outbox SET state = 'suppressed', error_code = 'suppressed', "
                "last_error = 'not sent: the address is suppressed', updated_at = ? "
                "WHERE state = 'pending' AND email IN (SELECT email FROM suppressions)",
                (stamp,),
            ).rowcount
            stale = conn.execute(
                "UPDATE outbox SET state = 'suppressed', error_code = 'superseded', "
                "last_error = 'not sent: every account it was about has migrated', "
                "updated_at = ? WHERE state = 'pending' AND kind != 'enforced' "
                "AND created_at != ? AND NOT EXISTS (SELECT 1 FROM json_each(outbox.accounts) j "
                "JOIN accounts a ON a.id = j.value AND a.status = 'active' WHERE NOT EXISTS "
                "(SELECT 1 FROM enrollments e WHERE e.migration_id = outbox.migration_id "
                "AND e.account_id = j.value))",
                (stamp, this_run),
            ).rowcount
        self.summary.suppressed_at_send = muted + stale

    # ------------------------------------------------------------------ claiming

    def _quota_left(self) -> int | None:
        if not self.config.email.daily_quota:
            return None
        since = db_time(self.clock() - timedelta(hours=24))
        used = self.store.scalar(
            "SELECT coalesce(sum(recipients), 0) FROM sends WHERE at > ?", (since,)
        )
        return max(0, self.config.email.daily_quota - int(used))

    def _candidates(self, only: str | None, limit: int) -> list[sqlite3.Row]:
        """The next pending rows due now, read without a lock (the claim re-checks them)."""
        real_now = db_time(self.clock())
        sql = (
            "SELECT * FROM outbox WHERE state = 'pending' AND "
            "(next_attempt_at IS NULL OR next_attempt_at <= ?)"
        )
        params: list[Any] = [real_now]
        if only:
            sql += " AND migration_id = ?"
            params.append(only)
        sql += f" ORDER BY id {'DESC' if self.descending else 'ASC'} LIMIT ?"
        params.append(limit)
        return self.store.query(sql, params)

    def _claim(
        self, only: str | None, limit: int, record: list[_Outcome] | None = None
    ) -> tuple[list[_Job], bool]:
        """Render the next rows, then mark them `sending` in one transaction before any send.

        Rendering happens before the claim and outside any lock: a rendering failure claims
        nothing, and a second dispatcher (the helper process of a large local run) is never
        kept waiting while this one renders. The claim takes only rows still `pending`, so
        two dispatchers never send the same row. ``record`` holds the outcomes of the previous
        batch: they commit in the same transaction (one commit per batch).

        Returns the claimed jobs, and whether there were candidates at all (all of them may
        have been claimed by another dispatcher in the meantime).
        """
        if limit <= 0:
            if record:
                self._record(record)
            return [], False
        rows = self._candidates(only, limit)
        emails = self._build(rows) if rows else []
        stamp = db_time(self.clock())
        with self.store.transaction(counts=False) as conn:
            if record:
                self._record_in(conn, record)
            if not rows:
                claimed = {}
            else:
                # Still pending and still due: another dispatcher may have sent a candidate,
                # or put it back with a retry time, since it was read.
                marks = ",".join("?" * len(rows))
                claimed = dict(
                    conn.execute(
                        "UPDATE outbox SET state = 'sending', attempts = attempts + 1, "
                        f"provider = ?, updated_at = ? WHERE id IN ({marks}) "
                        "AND state = 'pending' "
                        "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                        "RETURNING id, attempts",
                        [self.config.email.provider, stamp, *(r["id"] for r in rows), stamp],
                    ).fetchall()
                )
        if record:
            self._report(len(record))
        if not rows:
            return [], False
        jobs = [
            _Job(row, email, claimed[row["id"]])
            for row, email in zip(rows, emails, strict=True)
            if row["id"] in claimed
        ]
        return jobs, True

    def _build(self, rows: list[sqlite3.Row]) -> list[OutgoingEmail]:
        """Render each row: what it lists comes from the row (``listed``) or, for rows queued
        without it, from one lookup for the whole batch."""
        found: list[tuple[list[AccountRef] | None, int]] = []  # None: look the names up
        lookups: list[list[str]] = []
        missing: set[str] = set()
        for r in rows:
            raw = r["listed"]
            if raw is not None:
                refs = sorted(
                    (AccountRef(i, name, plan) for i, name, plan in json.loads(raw)),
                    key=lambda a: a.id,
                )
                found.append((refs[:MAX_LISTED_ACCOUNTS], r["accounts_count"]))
            else:  # queued before `listed` existed, or an `enforced` notice queued in SQL
                ids = json.loads(r["accounts"])
                missing.update(ids[:MAX_LISTED_ACCOUNTS])
                lookups.append(ids)
                found.append((None, len(ids)))
        names: dict[str, AccountRef] = {}
        if missing:
            names = {
                a["id"]: AccountRef(a["id"], a["name"], a["plan"])
                for a in self.store.query(
                    "SELECT id, name, plan FROM accounts "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted(missing)),),
                )
            }
        pending_lookups = iter(lookups)
        out = []
        for r, (own, total) in zip(rows, found, strict=True):
            if own is None:
                ids = next(pending_lookups)
                own = [names.get(a, AccountRef(a, a, "")) for a in ids[:MAX_LISTED_ACCOUNTS]]
            out.append(self._email(r, own, total))
        return out

    def _email(self, r: sqlite3.Row, listed: list[AccountRef], total: int) -> OutgoingEmail:
        sm = self.migrations[r["migration_id"]]
        kind = r["kind"]
        deadline = self._dates.get(r["deadline"]) if r["deadline"] else None
        if r["deadline"] and deadline is None:
            deadline = self._dates[r["deadline"]] = date.fromisoformat(r["deadline"])
        days_left = self._days_left(deadline) if deadline and kind != "enforced" else None
        emergency = kind == "enforced" and r["slot"].endswith("-immediate")
        reason = sm.immediate_reason if emergency else None
        previous = self.previous_deadlines[sm.id]

        def context() -> NoticeContext:
            return NoticeContext(
                migration=sm.migration,
                kind=kind,
                admin_email=r["email"],
                deadline=deadline,
                days_left=days_left,
                accounts=listed,
                accounts_total=total,
                today=self.today,
                previous_deadline=previous,
                emergency=emergency,
                reason=reason,
            )

        shape = (deadline, previous, days_left, self.today, emergency, reason)
        key = shape_key(sm.migration, kind, *shape, len(listed), total)
        rendered = self.bulk.render_shape(key, kind, r["email"], listed, context)
        return OutgoingEmail(
            key=r["key"],
            to=r["email"],
            from_addr=self.config.email.from_addr,
            reply_to=self.config.email.reply_to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=r["message_id"],
            headers={"X-Migctl-Kind": kind, "X-Migctl-Migration": r["migration_id"]},
        )

    def _days_left(self, deadline: date) -> int:
        days = self._days.get(deadline)
        if days is None:
            days = self._days[deadline] = days_until(deadline, self.now, self.tz)
        return days

    # ------------------------------------------------------------------ recording

    def _record(self, outcomes: list[_Outcome]) -> None:
        """Record a group of outcomes in one transaction."""
        if not outcomes:
            return
        with self.store.transaction(counts=False) as conn:
            self._record_in(conn, outcomes)
        self._report(len(outcomes))

    def _record_in(self, conn: sqlite3.Connection, outcomes: list[_Outcome]) -> None:
        real = self.clock()
        stamp = db_time(real)
        sent: list[tuple[Any, ...]] = []
        for job, result, error in outcomes:
            row_id = job.row["id"]
            attempts = job.attempts
            if error is not None:
                if isinstance(error, ProviderConfigError):
                    # Not this notice's fault: back to pending, nothing marked failed.
                    conn.execute(
                        "UPDATE outbox SET state = 'pending', attempts = attempts - 1, "
                        "last_error = ?, error_code = ?, updated_at = ? WHERE id = ?",
                        (str(error), error.code, stamp, row_id),
                    )
                else:
                    # An unexpected failure inside the provider: the send may have happened.
                    conn.execute(
                        "UPDATE outbox SET state = 'in_doubt', last_error = ?, updated_at = ? "
                        "WHERE id = ?",
                        (f"{type(error).__name__}: {error}", stamp, row_id),
                    )
                    self.summary.in_doubt += 1
                continue
            assert result is not None
            if result.status == SendStatus.SENT:
                sent.append((result.provider_message_id, stamp, stamp, row_id))
                if self.config.email.daily_quota:  # the rolling window only matters then
                    conn.execute("INSERT INTO sends(at, recipients) VALUES (?, 1)", (stamp,))
                self.summary.sent += 1
                kind = job.row["kind"]
                self.summary.by_kind[kind] = self.summary.by_kind.get(kind, 0) + 1
            elif result.status == SendStatus.UNKNOWN:
                # Handed over, no answer: resending could duplicate it. An operator decides.
                conn.execute(
                    "UPDATE outbox SET state = 'in_doubt', last_error = ?, error_code = ?, "
                    "updated_at = ? WHERE id = ?",
                    (result.error, result.code, stamp, row_id),
                )
                self.summary.in_doubt += 1
            elif result.status == SendStatus.PERMANENT:
                conn.execute(
                    "UPDATE outbox SET state = 'failed', last_error = ?, error_code = ?, "
                    "updated_at = ? WHERE id = ?",
                    (result.error, result.code, stamp, row_id),
                )
                status_figures.changed(conn)  # a suppression changes `status` figures
                conn.execute(
                    "INSERT OR IGNORE INTO suppressions(email, reason, source, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (
                        job.row["email"],
                        result.error or "permanent failure",
                        f"provider:{result.code or self.config.email.provider}",
                        stamp,
                    ),
                )
                audit(
                    conn,
                    at=real,
                    actor="migctl",
                    action="suppression.added",
                    detail={
                        "email": job.row["email"],
                        "code": result.code,
                        "key": job.row["key"],
                    },
                )
                self.summary.failed += 1
            elif attempts >= self.config.email.max_attempts:
                conn.execute(
                    "UPDATE outbox SET state = 'failed', last_error = ?, error_code = ?, "
                    "updated_at = ? WHERE id = ?",
                    (
                        f"gave up after {attempts} attempts: {result.error}",
                        result.code,
                        stamp,
                        row_id,
                    ),
                )
                self.summary.failed += 1
            else:
                from migrate_cli.delivery.throttle import retry_delay

                delay = retry_delay(result, attempts)
                conn.execute(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = ?, last_error = ?, "
                    "error_code = ?, updated_at = ? WHERE id = ?",
                    (
                        db_time(real + timedelta(seconds=delay)),
                        result.error,
                        result.code,
                        stamp,
                        row_id,
                    ),
                )
                self.summary.retry_later += 1
        conn.executemany(
            "UPDATE outbox SET state = 'sent', provider_message_id = ?, sent_at = ?, "
            "updated_at = ?, last_error = NULL, error_code = NULL WHERE id = ?",
            sent,
        )

    def _report(self, n: int) -> None:
        """Progress, after the commit: a failing display never undoes or stops a send."""
        with contextlib.suppress(Exception):
            self.progress(n)

    def _release(self, jobs: list[_Job]) -> None:
        """Claimed but never handed to the provider: back to pending, attempt not counted."""
        if not jobs:
            return
        with self.store.transaction(counts=False) as conn:
            conn.executemany(
                "UPDATE outbox SET state = 'pending', attempts = attempts - 1 WHERE id = ? AND state = 'sending'",
                [(j.row["id"],) for j in jobs],
            )

    def _next_retry_wait(self, only: str | None) -> float | None:
        sql = "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending' AND next_attempt_at IS NOT NULL"
        params: list[Any] = []
        if only:
            sql += " AND migration_id = ?"
            params.append(only)
        nxt = self.store.scalar(sql, params)
        if nxt is None:
            return None
        from migrate_cli.store.db import parse_db_time

        wait_s = (parse_db_time(nxt) - self.clock()).total_seconds()
        return max(0.0, wait_s) if wait_s <= WAIT_FOR_RETRY else None

    def _wait_for_retry(self, only: str | None) -> bool:
        """Nothing to claim: wait for a retry due soon. False: the run is over (or stopped)."""
        wait_s = self._next_retry_wait(only)
        if wait_s is None or self.summary.quota_reached:
            return False
        return not self.stop.wait(wait_s)

    def _budget(self, quota: int | None, want: int) -> int:
        if quota is None:
            return want
        left = quota - self.summary.sent - self._inflight_count
        if left <= 0:
            self.summary.quota_reached = True
        return max(0, min(want, left))

    _inflight_count = 0

    # ------------------------------------------------------------------ loops

    def _send_one(self, provider: Provider, email: OutgoingEmail) -> SendResult:
        if self._limiter is not None:
            self._limiter.acquire()
        return provider.send(email)

    def _run_serial(self, only: str | None, quota: int | None) -> None:
        # At most `batch` rows are `sending` at any time, so a killed run leaves at most that
        # many in doubt; their outcomes commit with the next claim (one commit per batch).
        # When sends take microseconds (a local provider), one commit per 10 rows would cost
        # a third of the throughput: the batch then grows to what is sent in BATCH_SECONDS,
        # so a kill still leaves only the sends of the last few milliseconds in doubt.
        batch = max(SERIAL_BATCH, self.config.email.concurrency)
        provider = self.provider_factory()
        done: list[_Outcome] = []
        config_error: ProviderConfigError | None = None
        with provider:
            try:
                while not self.stop.is_set() and config_error is None:
                    self._inflight_count = len(done)
                    jobs, seen = self._claim(only, self._budget(quota, batch), record=done)
                    done = []
                    if not jobs:
                        if seen:
                            continue  # another dispatcher took these rows: look again
                        if self.more_coming():
                            self.stop.wait(POLL_SECONDS)
                            continue
                        if not self._wait_for_retry(only):
                            break
                        continue
                    started = time.perf_counter()
                    for i, job in enumerate(jobs):
                        if self.stop.is_set() or config_error is not None:
                            self._release(jobs[i:])
                            break
                        try:
                            done.append((job, self._send_one(provider, job.email), None))
                        except ProviderConfigError as exc:
                            done.append((job, None, exc))
                            config_error = exc
                        except Exception as exc:  # a provider bug: the send may have happened
                            done.append((job, None, exc))
                    if not self.network and done:
                        per_send = (time.perf_counter() - started) / len(done)
                        batch = _adapted_batch(per_send)
            finally:
                self._record(done)
        if config_error is not None:
            self.summary.stopped = str(config_error)
            raise config_error

    def _run_pool(self, only: str | None, quota: int | None) -> None:
        concurrency = self.config.email.concurrency
        local = threading.local()
        providers: list[Provider] = []
        lock = threading.Lock()

        def worker_send(email: OutgoingEmail) -> SendResult:
            provider = getattr(local, "provider", None)
            if provider is None:
                provider = self.provider_factory()
                provider.open()
                local.provider = provider
                with lock:
                    providers.append(provider)
            return self._send_one(provider, email)

        in_flight: dict[Future[SendResult], _Job] = {}
        config_error: ProviderConfigError | None = None
        try:
            with ThreadPoolExecutor(
                max_workers=concurrency, thread_name_prefix="migctl-send"
            ) as pool:
                while True:
                    if not self.stop.is_set() and config_error is None:
                        room = 2 * concurrency - len(in_flight)
                        self._inflight_count = len(in_flight)
                        jobs = self._claim(only, self._budget(quota, room))[0] if room > 0 else []
                        for job in jobs:
                            in_flight[pool.submit(worker_send, job.email)] = job
                    if not in_flight:
                        if self.stop.is_set() or config_error is not None:
                            break
                        if not self._wait_for_retry(only):
                            break
                        continue
                    done, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
                    outcomes: list[_Outcome] = []
                    for fut in done:
                        job = in_flight.pop(fut)
                        exc = fut.exception()
                        if isinstance(exc, ProviderConfigError):
                            config_error = config_error or exc
                        outcomes.append((job, None if exc else fut.result(), exc))
                    if outcomes:
                        self._record(outcomes)
        finally:
            for provider in providers:
                with contextlib.suppress(Exception):
                    provider.close()
        if config_error is not None:
            self.summary.stopped = str(config_error)
            raise config_error


def _adapted_batch(per_send: float) -> int:
    """Rows to claim next for a local provider: what it sends in BATCH_SECONDS, bounded."""
    if per_send <= 0:
        return LOCAL_BATCH
    return max(SERIAL_BATCH, min(LOCAL_BATCH, int(BATCH_SECONDS / per_send)))


def _previous_deadline(sm: StoredMigration) -> date | None:
    raw = sm.previous_mandatory
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, str):
        return date.fromisoformat(value)
    if isinstance(value, dict) and value:
        return min(date.fromisoformat(v) for v in value.values())
    return None
