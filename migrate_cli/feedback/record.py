"""Record a batch of delivery events in one transaction: match, store, suppress (the one entry point)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from migrate_cli.accounts.suppressions import add_in as suppress
from migrate_cli.config import FeedbackConfig
from migrate_cli.delivery.ses import ses_tag_value
from migrate_cli.feedback.events import DeliveryEvent, read_payload
from migrate_cli.lifecycle.status_figures import changed
from migrate_cli.store import deliveries
from migrate_cli.store.db import Store
from migrate_cli.timeutil import format_duration
from migrate_cli.vocabulary import BounceType, DeliveryOutcome


@dataclass
class FeedbackSummary:
    """What one batch (or one pull, one import, one webhook request) did; summaries add up."""

    received: int = 0  # events seen in the payloads
    recorded: int = 0  # new events stored against a known notice
    duplicates: int = 0  # events the store already had: changed nothing
    orphans: int = 0  # events for notices this store does not know: kept, reported
    malformed: int = 0  # payloads or events that could not be read: counted, not stored
    ignored: int = 0  # well-formed events of a type migctl does not act on (opens, clicks, ...)
    suppressed: list[str] = field(default_factory=list)  # addresses suppressed by this batch
    problems: list[str] = field(default_factory=list)  # one line per malformed item (no secrets)
    orphaned: list[str] = field(
        default_factory=list
    )  # one line per orphan: provider, kind, address

    def add(self, other: FeedbackSummary) -> None:
        self.received += other.received
        self.recorded += other.recorded
        self.duplicates += other.duplicates
        self.orphans += other.orphans
        self.malformed += other.malformed
        self.ignored += other.ignored
        self.suppressed += other.suppressed
        self.problems += other.problems
        self.orphaned += other.orphaned

    def to_json(self) -> dict[str, object]:
        return {
            "received": self.received,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "orphans": self.orphans,
            "malformed": self.malformed,
            "ignored": self.ignored,
            "suppressed": self.suppressed,
            "problems": self.problems,
            "orphaned": self.orphaned,
        }


def record_batch(
    store: Store,
    payloads: Sequence[object],
    *,
    config: FeedbackConfig,
    now: datetime,
    actor: str,
    labels: Sequence[str] | None = None,
) -> FeedbackSummary:
    """Parse and record ``payloads`` (decoded JSON values) in one transaction.

    A payload is one SNS envelope (SES event publishing or an identity notification), one raw SES
    event, one SendGrid event, or a list of SendGrid events (a webhook batch). Malformed or
    unknown payloads are counted, never raised; the same event twice changes nothing. Returns
    only after the store commit, so a caller may acknowledge the source (delete the SQS message,
    answer 2xx) once it returns. ``labels``: how problems name each payload (default
    ``item N``, 1-based; `feedback import` passes ``line N``).
    """
    summary = FeedbackSummary()
    events: list[tuple[DeliveryEvent, str]] = []
    for i, payload in enumerate(payloads):
        label = labels[i] if labels is not None else f"item {i + 1}"
        for item in read_payload(payload):
            where = label + item.where
            if item.problem is not None:
                summary.received += 1
                summary.malformed += 1
                summary.problems.append(f"{where}: {item.problem}")
            elif item.ignored:
                summary.received += 1
                summary.ignored += 1
            else:
                summary.received += len(item.events)
                events.extend((e, where) for e in item.events)
    # Event time order, so that a batch does the same whatever order its events came in.
    events.sort(key=lambda pair: (pair[0].event_at, pair[0].key))
    with store.transaction(counts=False) as conn:
        soft: dict[str, set[str]] = defaultdict(set)  # address -> its new soft bounces
        for event, where in events:
            notice = _match(conn, event)
            if not deliveries.insert(
                conn,
                event_key=event.key,
                provider=event.provider,
                notice_key=notice,
                email=event.email,
                outcome=event.outcome,
                bounce_type=event.bounce_type,
                detail=event.detail,
                event_at=event.event_at,
                now=now,
            ):
                summary.duplicates += 1
            elif notice is None:
                summary.orphans += 1
                summary.orphaned.append(
                    f"{where}: {event.provider} {_word(event)} for {event.email}"
                )
            else:
                summary.recorded += 1
                if (
                    event.outcome is DeliveryOutcome.COMPLAINED
                    or event.bounce_type is BounceType.HARD
                    or event.known_bad
                ):
                    _suppress(conn, summary, event, notice, _word(event), now, actor)
                elif event.bounce_type is BounceType.SOFT:
                    soft[event.email].add(event.key)
        for address in sorted(soft):
            _soft_bounces(conn, summary, address, soft[address], config, now, actor)
        if summary.suppressed:
            changed(conn)  # `status` counts the accounts whose every administrator is suppressed
    return summary


def _match(conn: sqlite3.Connection, event: DeliveryEvent) -> str | None:
    """The notice an event is about: by what migctl put in the message (our key, the SES
    tag), else by the provider's message id, else by our Message-ID header."""
    if event.notice_key:
        found = deliveries.known_key(conn, event.notice_key, event.email)
        if found:
            return found
    if event.tag_value:
        # The tag is a one-way encoding of the key: compare against the address's notices.
        for key in deliveries.notice_keys_of(conn, event.email):
            if ses_tag_value(key) == event.tag_value:
                return key
    if event.provider_message_ids:
        found = deliveries.key_by_provider_message_id(conn, event.provider_message_ids, event.email)
        if found:
            return found
    if event.message_id:
        return deliveries.key_by_message_id(conn, event.message_id, event.email)
    return None


def _word(event: DeliveryEvent) -> str:
    """How an event reads in a reason or a summary: `hard bounce`, `complaint`, `delivery`..."""
    if event.outcome is DeliveryOutcome.BOUNCED:
        return f"{event.bounce_type} bounce"
    return {
        DeliveryOutcome.COMPLAINED: "complaint",
        DeliveryOutcome.DELIVERED: "delivery",
        DeliveryOutcome.DEFERRED: "delay",
        DeliveryOutcome.REJECTED: "rejection",
    }[event.outcome]


def _suppress(
    conn: sqlite3.Connection,
    summary: FeedbackSummary,
    event: DeliveryEvent,
    notice: str,
    reason: str,
    now: datetime,
    actor: str,
) -> None:
    """Suppress the event's address; the pending notices to it then follow the outbox's own
    rule for suppressed addresses (planning queues them `suppressed`, dispatch sweeps them)."""
    if suppress(
        conn,
        event.email,
        reason=f"{reason}: {event.detail}" if event.detail else reason,
        source=f"feedback:{event.provider}",
        now=now,
        actor=actor,
        detail={
            "event": event.key,
            "notice": notice,
            "outcome": str(event.outcome),
            "event_at": event.event_at.isoformat(),
        },
    ):
        summary.suppressed.append(event.email)


def _soft_bounces(
    conn: sqlite3.Connection,
    summary: FeedbackSummary,
    address: str,
    new: set[str],
    config: FeedbackConfig,
    now: datetime,
    actor: str,
) -> None:
    """Suppress after `soft_bounce_limit` soft bounces within `soft_bounce_window` (by event
    time), counting earlier batches too; only a window holding one of this batch's bounces
    counts, so an address an operator un-suppressed is not suppressed again by old bounces."""
    bounces = deliveries.soft_bounce_times(conn, address)
    span, limit = config.soft_bounce_span, config.soft_bounce_limit
    left = 0
    for right, (at, key) in enumerate(bounces):
        while at - bounces[left][0] > span:
            left += 1
        window = bounces[left : right + 1]
        if len(window) >= limit and any(k in new for _, k in window):
            last = deliveries.detail_of(conn, key)
            reason = f"{len(window)} soft bounces within {format_duration(span)}" + (
                f" (last: {last})" if last else ""
            )
            if suppress(
                conn,
                address,
                reason=reason,
                source=f"feedback:{key.split(':', 1)[0]}",
                now=now,
                actor=actor,
                detail={
                    "event": key,
                    "soft_bounces": len(window),
                    "event_at": at.isoformat(),
                },
            ):
                summary.suppressed.append(address)
            return
