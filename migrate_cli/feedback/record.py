"""Record a batch of delivery events in one transaction: match, store, suppress (the one entry point)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from migrate_cli.config import FeedbackConfig
from migrate_cli.store.db import Store


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

    def add(self, other: FeedbackSummary) -> None:
        self.received += other.received
        self.recorded += other.recorded
        self.duplicates += other.duplicates
        self.orphans += other.orphans
        self.malformed += other.malformed
        self.ignored += other.ignored
        self.suppressed += other.suppressed
        self.problems += other.problems


def record_batch(
    store: Store,
    payloads: Sequence[object],
    *,
    config: FeedbackConfig,
    now: datetime,
    actor: str,
) -> FeedbackSummary:
    """Parse and record ``payloads`` (decoded JSON values) in one transaction.

    A payload is one SNS envelope (SES event publishing or an identity notification), one raw SES
    event, one SendGrid event, or a list of SendGrid events (a webhook batch). Malformed or
    unknown payloads are counted, never raised; the same event twice changes nothing. Returns
    only after the store commit, so a caller may acknowledge the source (delete the SQS message,
    answer 2xx) once it returns.
    """
    raise NotImplementedError("built in the branch 'feedback'")
