"""The send loop: take due notices from the outbox, render, send, report each outcome back."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from migrate_cli.config import Config
from migrate_cli.definitions.model import Migration
from migrate_cli.delivery.base import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    ProviderRejectedError,
    SendResult,
    SendStatus,
)
from migrate_cli.delivery.throttle import pacer, retry_delay
from migrate_cli.notices.render import MAX_LISTED_ACCOUNTS, AccountRef, NoticeContext, Renderer
from migrate_cli.store import outbox
from migrate_cli.store.db import Store, parse_db_time
from migrate_cli.store.stored_migrations import StoredMigration
from migrate_cli.timeutil import days_until, local_date
from migrate_cli.vocabulary import NoticeKind, NoticeState

# Notices claimed at once by a run that sends one at a time: a kill leaves at most this many in
# doubt, and their outcomes commit with the next claim (one commit per batch). With concurrency,
# 2 x concurrency are in flight.
SERIAL_BATCH = 10
WAIT_FOR_RETRY = 30.0  # seconds a run waits for a transient retry before leaving it pending


@dataclass
class DispatchSummary:
    """What one dispatch did (this run only)."""

    sent: int = 0
    failed: int = 0
    retry_later: int = 0  # notices left pending after a transient failure, each counted once
    quota_reached: bool = False
    suppressed_at_send: int = 0  # waiting rows dropped: address suppressed or nothing pending
    paused: str | None = None  # the provider kept failing transiently: the rest waits
    by_kind: dict[str, int] = field(default_factory=dict)


class _Inline:
    """An executor that runs each send at once in this thread (local providers)."""

    def submit(self, fn: Callable[..., SendResult], *args: Any) -> Future[SendResult]:
        future: Future[SendResult] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # reported as the send's outcome, like a pool's future
            future.set_exception(exc)
        return future

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _clock_from(start: datetime) -> Callable[[], datetime]:
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


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
        clock: Callable[[], datetime] | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[int], None] | None = None,
        network: bool = False,
    ) -> None:
        self.store = store
        self.config = config
        self.provider_factory = provider_factory
        self.renderer = renderer
        self.migrations = {sm.id: sm for sm in catalog}
        self.tz = tz
        self.now = now  # the (possibly simulated) instant for content: days left etc.
        # Time as it passes from `now` on: the real clock without --now; under --now the
        # rehearsal's timeline, so that sent_at, retries and the Date header agree with it.
        self.clock = clock or _clock_from(now)
        self.stop = stop or threading.Event()
        self.progress = progress or (lambda n: None)
        self.workers = config.email.concurrency if network else 1
        self.summary = DispatchSummary()
        self._limiter = (
            pacer(config.email.rate_per_second) if config.email.rate_per_second else None
        )
        self._quota = config.email.daily_quota
        self._quota_left: int | None = None  # set when a run starts
        self._tries: dict[int, int] = {}  # transient failures of each notice in this run
        self._rested: set[int] = set()  # notices that used max_attempts: not again this run
        self._waiting: set[int] = set()  # notices whose latest outcome is "retry later"
        # The circuit breaker: permanent failures of one kind in a row, held back (nothing
        # suppressed) until another outcome shows they were about the recipients after all.
        self._streak: list[outbox.Outcome] = []
        self._error: ProviderConfigError | None = None  # what stopped the run
        self._transients: list[tuple[str, str | None]] = []  # (email, code) in a row

    def sweep(self) -> None:
        """Drop waiting rows that must no longer go out (see ``outbox.sweep``)."""
        self.summary.suppressed_at_send = outbox.sweep(
            self.store, now=self.clock(), run_at=self.now
        )

    def run(self, only: str | None = None) -> DispatchSummary:
        """Send every due notice (of ``only``), waiting for retries due within WAIT_FOR_RETRY."""
        window = 2 * self.workers if self.workers > 1 else SERIAL_BATCH
        if self._quota:
            used = outbox.sends_since(self.store, self.clock() - timedelta(hours=24))
            self._quota_left = max(0, self._quota - used)
        local = threading.local()
        providers: list[Provider] = []
        lock = threading.Lock()

        def send(email: OutgoingEmail) -> SendResult:
            provider = getattr(local, "provider", None)
            if provider is None:
                provider = local.provider = self.provider_factory()
                with lock:
                    providers.append(provider)
                with provider.redacting():
                    provider.open()
            if self._limiter is not None:
                self._limiter.acquire()
            return provider.send(email)

        pool = (
            ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="migctl-send")
            if self.workers > 1
            else _Inline()
        )
        in_flight: dict[Future[SendResult], tuple[sqlite3.Row, int]] = {}
        done: list[outbox.Outcome] = []
        self._error = None
        try:
            with pool:
                try:
                    self._loop(only, pool, send, window, in_flight, done)
                except BaseException:
                    # The pool's exit would still send what is queued: hand those back.
                    done += [self._untried(row) for row in _cancel_queued(in_flight)]
                    raise
        finally:
            # What was in flight has finished (the pool waited for it on exit): record each real
            # outcome; what never started goes back to pending.
            for future, (row, attempt) in in_flight.items():
                if future.done() and not future.cancelled():
                    done += self._finish(row, attempt, future)
                else:
                    done.append(self._untried(row))
            done += self._release()
            self.summary.retry_later = len(self._waiting)
            self._settle(done)
            for provider in providers:
                with contextlib.suppress(Exception):
                    provider.close()
        if self._error is not None:
            raise self._error
        return self.summary

    def _loop(
        self,
        only: str | None,
        pool: ThreadPoolExecutor | _Inline,
        send: Callable[[OutgoingEmail], SendResult],
        window: int,
        in_flight: dict[Future[SendResult], tuple[sqlite3.Row, int]],
        done: list[outbox.Outcome],
    ) -> None:
        """Claim, send and record until nothing is due (``in_flight`` and ``done`` are the
        caller's, so that what this leaves behind on an error is still recorded)."""
        while True:
            claimed = []
            if self._halted():
                # Queued behind the workers but not started: never hand them over.
                for row in _cancel_queued(in_flight):
                    done.append(self._untried(row))
            if not self._halted():
                room = self._budget(window - len(in_flight), len(in_flight))
                claimed = self._claim(only, room, done)
                done.clear()
                try:
                    emails = [self._render(row) for row, _ in claimed]
                except BaseException:  # nothing of this batch was handed over
                    done += [self._untried(row) for row, _ in claimed]
                    raise
                for i, ((row, attempt), email) in enumerate(zip(claimed, emails, strict=True)):
                    if self._halted():
                        done += [self._untried(r) for r, _ in claimed[i:]]
                        break
                    try:
                        future = pool.submit(send, email)
                    except BaseException:  # e.g. Ctrl-C inside an inline send
                        # This row may have been handed over: it stays `sending` (in
                        # doubt next run); the rest of the batch was not.
                        done += [self._untried(r) for r, _ in claimed[i + 1 :]]
                        raise
                    if future.done():  # sent inline: its outcome may stop the batch
                        done += self._finish(row, attempt, future)
                    else:
                        in_flight[future] = (row, attempt)
            if not in_flight:
                if self._halted():
                    break
                if claimed:  # all sent inline: claim the next batch
                    continue
                self._settle(done)  # the retry times must be in the outbox first
                done.clear()
                if not self._wait_for_retry(only):
                    break
                continue
            finished, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                row, attempt = in_flight.pop(future)
                done += self._finish(row, attempt, future)

    # ------------------------------------------------------------------ outbox

    def _claim(
        self, only: str | None, limit: int, done: list[outbox.Outcome]
    ) -> list[tuple[sqlite3.Row, int]]:
        claimed = outbox.claim(
            self.store,
            only=only,
            limit=limit,
            provider=self.config.email.provider,
            now=self.clock(),
            settle_first=done,
            count_sends=bool(self._quota),
            exclude=self._rested,
        )
        self._report(len(done))
        return claimed

    def _settle(self, done: list[outbox.Outcome]) -> None:
        outbox.settle(self.store, done, now=self.clock(), count_sends=bool(self._quota))
        self._report(len(done))

    def _report(self, n: int) -> None:
        """Progress, after the commit: a failing display never undoes or stops a send."""
        if n:
            with contextlib.suppress(Exception):
                self.progress(n)

    def _budget(self, want: int, in_flight: int) -> int:
        """How many more may be claimed under the daily quota (a rolling 24 hours)."""
        if self._quota_left is None or want <= 0:
            return max(0, want)
        left = self._quota_left - self.summary.sent - in_flight
        if left <= 0 and outbox.pending_count(self.store) > 0:  # something is really held back
            self.summary.quota_reached = True
        return max(0, min(want, left))

    def _wait_for_retry(self, only: str | None) -> bool:
        """Nothing to claim: wait for a retry due soon. False: the run is over (or stopped)."""
        if self.summary.quota_reached:
            return False
        at = outbox.next_retry_at(self.store, only, exclude=self._rested)
        if at is None:
            return False
        wait_s = (at - self.clock()).total_seconds()
        if wait_s > WAIT_FOR_RETRY:
            return False
        return not self.stop.wait(max(0.0, wait_s))

    def _finish(
        self, row: sqlite3.Row, attempt: int, future: Future[SendResult]
    ) -> list[outbox.Outcome]:
        """One finished send: its outcomes; a configuration error or a tripped breaker stops
        the run (``_error``)."""
        exc = future.exception()
        if isinstance(exc, ProviderConfigError):
            self._error = self._error or exc
        done = self._outcome(row, attempt, future, exc)
        if self._tripped():
            error = self._trip(done)
            self._error = self._error or error
        return done

    def _outcome(
        self,
        row: sqlite3.Row,
        attempt: int,
        future: Future[SendResult],
        exc: BaseException | None,
    ) -> list[outbox.Outcome]:
        """The provider's answer as outbox transitions (none while the breaker holds a
        permanent failure back), counted in the summary."""
        s = self.summary
        self._waiting.discard(row["id"])
        result_now = future.result() if exc is None else None
        if result_now is None or result_now.status != SendStatus.TRANSIENT:
            self._transients = []
        if isinstance(exc, ProviderConfigError):
            # Not this notice's fault: back to pending, the attempt not counted.
            return [
                outbox.Outcome(
                    row, NoticeState.PENDING, error=str(exc), code=exc.code, untried=True
                )
            ]
        if exc is not None:
            # An unexpected failure inside the provider: the send may have happened.
            return [
                *self._release(),
                outbox.Outcome(row, NoticeState.IN_DOUBT, error=f"{type(exc).__name__}: {exc}"),
            ]
        result = future.result()
        if result.status == SendStatus.PERMANENT:
            return self._hold(
                outbox.Outcome(
                    row,
                    NoticeState.FAILED,
                    error=result.error,
                    code=result.code,
                    suppress=f"provider:{result.code or self.config.email.provider}",
                )
            )
        done = self._release()
        if result.status == SendStatus.SENT:
            s.sent += 1
            s.by_kind[row["kind"]] = s.by_kind.get(row["kind"], 0) + 1
            done.append(
                outbox.Outcome(
                    row, NoticeState.SENT, provider_message_id=result.provider_message_id
                )
            )
        elif result.status == SendStatus.UNKNOWN:
            # Handed over, no answer: resending could duplicate it. An operator decides.
            done.append(
                outbox.Outcome(row, NoticeState.IN_DOUBT, error=result.error, code=result.code)
            )
        elif result.status == SendStatus.UNSENDABLE:
            s.failed += 1  # never handed over: failed with the cause, the address kept
            done.append(
                outbox.Outcome(row, NoticeState.FAILED, error=result.error, code=result.code)
            )
        else:
            done.append(self._transient(row, attempt, result))
        return done

    def _transient(self, row: sqlite3.Row, attempt: int, result: SendResult) -> outbox.Outcome:
        """Retry later, across runs; failed only after ``retry_for`` of transient failures."""
        now = self.clock()
        since = row["failing_since"]
        window = self.config.email.retry_window
        if since is not None and now - parse_db_time(since) >= window:
            self.summary.failed += 1
            return outbox.Outcome(
                row,
                NoticeState.FAILED,
                error=f"kept failing since {since} (retry_for {self.config.email.retry_for}): "
                f"{result.error}",
                code=result.code,
            )
        self._count_transient(row["email"], result)
        tries = self._tries[row["id"]] = self._tries.get(row["id"], 0) + 1
        if tries >= self.config.email.max_attempts:
            self._rested.add(row["id"])  # a later run tries again
        self._waiting.add(row["id"])
        delay = retry_delay(result, attempt, base=self.config.email.retry_backoff)
        return outbox.Outcome(
            row,
            NoticeState.PENDING,
            error=result.error,
            code=result.code,
            retry_at=now + timedelta(seconds=delay),
            transient=True,
        )

    def _halted(self) -> bool:
        """Whether this run claims and sends no more (a signal, a stop, a pause)."""
        return self.stop.is_set() or self._error is not None or self.summary.paused is not None

    def _untried(self, row: sqlite3.Row) -> outbox.Outcome:
        """Back to pending, never handed over; a row left by a stop says what stopped it."""
        error = self._error
        return outbox.Outcome(
            row,
            NoticeState.PENDING,
            error=str(error) if error else None,
            code=error.code if error else None,
            untried=True,
        )

    # ------------------------------------------------------------------ circuit breaker

    def _count_transient(self, email: str, result: SendResult) -> None:
        """The same transient failure for ``breaker`` recipients in a row: the relay is down or
        hangs. The run pauses (the rest waits for a later run, exit 3) rather than spend
        every notice's tries, and a timeout each, on it."""
        if self._transients and self._transients[-1][1] != result.code:
            self._transients = []
        self._transients.append((email, result.code))
        if len({e for e, _ in self._transients}) >= self.config.email.breaker:
            self.summary.paused = (
                f"{len(self._transients)} recipients in a row failed the same transient way "
                f"({result.code}: {result.error}); sending paused, the notices wait for a later "
                "run"
            )

    def _hold(self, failure: outbox.Outcome) -> list[outbox.Outcome]:
        """Hold a permanent failure back; one of another kind ends the streak before it."""
        if self._error is not None:  # the run is stopping: a failure in flight is not judged
            return [
                outbox.Outcome(
                    failure.row,
                    NoticeState.PENDING,
                    error=failure.error,
                    code=failure.code,
                    untried=True,
                )
            ]
        released = self._release() if self._streak and failure.code != self._streak[0].code else []
        self._streak.append(failure)
        return released

    def _release(self) -> list[outbox.Outcome]:
        """The held failures are the recipients' own: fail them and suppress the addresses."""
        held, self._streak = self._streak, []
        self.summary.failed += len(held)
        return held

    def _tripped(self) -> bool:
        return len({o.row["email"] for o in self._streak}) >= self.config.email.breaker

    def _trip(self, done: list[outbox.Outcome]) -> ProviderRejectedError:
        """The same rejection for every recipient: the provider's problem. Nothing is
        suppressed, the held notices go back to pending, and the run stops."""
        held, self._streak = self._streak, []
        first = held[0]
        error = ProviderRejectedError(
            self.config.email.provider,
            f"{len(held)} different recipients in a row were rejected the same way "
            f"({first.code}: {first.error}); this is taken as a problem with the provider, "
            "the sender or the message, not with the addresses: nothing was suppressed and "
            "the notices stay pending",
            code=first.code,
        )
        done += [
            outbox.Outcome(o.row, NoticeState.PENDING, error=o.error, code=o.code, untried=True)
            for o in held
        ]
        return error

    # ------------------------------------------------------------------ rendering

    def _render(self, row: sqlite3.Row) -> OutgoingEmail:
        return render_row(
            self.store,
            row,
            self.migrations[row["migration_id"]],
            self.renderer,
            self.config,
            self.now,
            self.tz,
            sent_at=self.clock(),
        )


def render_row(
    store: Store,
    row: sqlite3.Row,
    sm: StoredMigration,
    renderer: Renderer,
    config: Config,
    now: datetime,
    tz: tzinfo,
    *,
    sent_at: datetime | None = None,
) -> OutgoingEmail:
    """The notice an outbox row holds, as its administrator will read it: rendered in full
    (the send loop and `outbox show` both call this). ``sent_at``: its Date header."""
    kind = row["kind"]
    listed, total, differ = _accounts(store, row, sm)
    deadline = date.fromisoformat(row["deadline"]) if row["deadline"] else None
    previous = previous_deadline(sm)
    if kind == NoticeKind.SCHEDULE_CHANGE:
        deadline, previous = changed_dates(listed, deadline, previous)
    emergency = kind == NoticeKind.ENFORCED and row["slot"].endswith("-immediate")
    context = NoticeContext(
        migration=sm.migration,
        kind=kind,
        admin_email=row["email"],
        deadline=deadline,
        days_left=(
            days_until(deadline, now, tz) if deadline and kind != NoticeKind.ENFORCED else None
        ),
        accounts=listed,
        accounts_total=total,
        today=local_date(now, tz),
        previous_deadline=previous,
        emergency=emergency,
        reason=sm.immediate_reason if emergency else None,
        deadlines_differ=differ,
    )
    rendered = renderer.render(kind, context)
    return OutgoingEmail(
        key=row["key"],
        to=row["email"],
        from_addr=config.email.from_addr,
        reply_to=config.email.reply_to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=row["message_id"],
        headers={"X-Migctl-Kind": kind, "X-Migctl-Migration": row["migration_id"]},
        date=sent_at,
    )


def _accounts(
    store: Store, row: sqlite3.Row, sm: StoredMigration
) -> tuple[list[AccountRef], int, bool | None]:
    """The accounts a notice lists, by id, how many, and whether their own dates differ (None:
    not known). All of them when the row holds them (a schedule change's headline dates are
    judged on all; the renderer lists the first MAX_LISTED_ACCOUNTS)."""
    if row["listed"] is not None:
        refs = sorted((_listed_account(sm, item) for item in json.loads(row["listed"])), key=_id)
        differ = len({a.deadline for a in refs}) > 1 if all(a.dated for a in refs) else None
        return refs, row["accounts_count"], differ
    # An `enforced` notice is queued in SQL with its account ids only: look the names up.
    ids = json.loads(row["accounts"])
    shown = ids[:MAX_LISTED_ACCOUNTS]
    names = {
        a["id"]: AccountRef(a["id"], a["name"], a["plan"])
        for a in store.query(
            "SELECT id, name, plan FROM accounts WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(shown),),
        )
    }
    return [names.get(a, AccountRef(a, a, "")) for a in shown], len(ids), None


def _id(account: AccountRef) -> str:
    return account.id


def _listed_account(sm: StoredMigration, item: list[Any]) -> AccountRef:
    """One account of a notice's `listed` JSON: [id, name, plan, own date, the own date the
    administrator was told of before] for a schedule change, [..., own date, [own dates under
    earlier schedules]] for the other kinds; rows queued by an earlier migctl hold the first
    three only."""
    if len(item) < 5:
        return AccountRef(item[0], item[1], item[2])
    before = item[3] if isinstance(item[4], list) else item[4]
    return dated_account(sm.migration, item[0], item[1], item[2], item[3], before)


def dated_account(
    m: Migration, account_id: str, name: str, plan: str, own: str | None, before: str | None
) -> AccountRef:
    """An account with its own date and its date before (ISO text, None = TBD); its own date
    is an extension when later than its plan's."""
    day = _day(own) if own else None
    plan_date = m.deadline_for(plan)
    extended = day is not None and plan_date is not None and day > plan_date
    return AccountRef(account_id, name, plan, True, day, _day(before) if before else None, extended)


@lru_cache(maxsize=256)  # a handful of distinct dates across every notice of a run
def _day(text: str) -> date:
    return date.fromisoformat(text)


def changed_dates(
    accounts: list[AccountRef], deadline: date | None, previous: date | None
) -> tuple[date | None, date | None]:
    """A schedule change's headline dates: the earliest new and the earliest old own date of
    the accounts whose date moved (the given ones when no account says)."""
    moved = [a for a in accounts if a.dated and a.deadline != a.previous_deadline]
    if not moved:
        return deadline, previous
    new = [a.deadline for a in moved if a.deadline]
    old = [a.previous_deadline for a in moved if a.previous_deadline]
    return (min(new) if new else None), (min(old) if old else None)


def previous_deadline(sm: StoredMigration) -> date | None:
    """The date before the last schedule change (the earliest of a plan map), None for TBD."""
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


def _cancel_queued(
    in_flight: dict[Future[SendResult], tuple[sqlite3.Row, int]],
) -> list[sqlite3.Row]:
    """Cancel the sends queued behind the workers that have not started; return their rows."""
    rows = []
    for future in [f for f in in_flight if f.cancel()]:
        rows.append(in_flight.pop(future)[0])
    return rows
