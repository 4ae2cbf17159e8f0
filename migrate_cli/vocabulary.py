"""The domain's words, one StrEnum each: the same strings in the store, the JSON and the CLI."""

from __future__ import annotations

import enum


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Enrollment(enum.StrEnum):
    """The state of one account for one migration (SPEC §1)."""

    PENDING = "pending"  # still on the old behaviour
    OPTED_IN = "opted_in"  # switched early by the customer or an operator
    AUTO_ENROLLED = "auto_enrolled"  # created on or after the grace start
    ENFORCED = "enforced"  # switched by the platform at the mandatory date


class Phase(enum.StrEnum):
    """Where a migration (or one plan of it) stands at an instant."""

    SCHEDULED = "scheduled"
    GRACE = "grace"
    DUE = "due"
    ENFORCED = "enforced"
    RETIRED = "retired"
    # Its date has passed but min_notice holds it (rule 3a): enforced no earlier than shown.
    HELD = "held"


class NoticeKind(enum.StrEnum):
    ANNOUNCEMENT = "announcement"
    REMINDER = "reminder"
    SCHEDULE_CHANGE = "schedule_change"
    ENFORCED = "enforced"


class NoticeState(enum.StrEnum):
    """Where one notice stands in the outbox."""

    PENDING = "pending"  # waiting to be sent (or for its next attempt)
    SENDING = "sending"  # claimed by a run; a kill leaves it here, the next run marks it in doubt
    SENT = "sent"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"  # may have reached the provider: an operator settles it
    SUPPRESSED = "suppressed"  # never sent: the address is suppressed or nothing is pending


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


def choices(words: type[enum.StrEnum]) -> tuple[str, ...]:
    """The values of a vocabulary, in their declared order (for help texts and CHECKs)."""
    return tuple(w.value for w in words)


class AlertEvent(enum.StrEnum):
    """What a run can alert operators about (`[alerts] on` in migctl.toml)."""

    ENFORCED = "enforced"  # accounts were switched
    HELD = "held"  # a mandatory date is held by the minimum notice
    FAILED = "failed"  # notices failed for good
    IN_DOUBT = "in_doubt"  # notices may or may not have reached the provider
    PROVIDER_STOPPED = "provider_stopped"  # the provider stopped the run
    FEEDBACK_FAILED = "feedback_failed"  # the delivery events could not be pulled (the run went on)


class DeliveryOutcome(enum.StrEnum):
    """What the provider reported about a notice after accepting it (`feedback`)."""

    DELIVERED = "delivered"  # the recipient's server accepted it
    DEFERRED = "deferred"  # the recipient's server delays it; the provider keeps trying
    BOUNCED = "bounced"  # refused: hard (permanent) or soft (transient), see BounceType
    COMPLAINED = "complained"  # the recipient marked it as spam
    REJECTED = "rejected"  # the provider refused to send it at all (e.g. a virus, a suppression)


class BounceType(enum.StrEnum):
    HARD = "hard"  # the address does not exist or refuses for good: suppressed at once
    SOFT = "soft"  # mailbox full, greylisted, too large: suppressed after a few in a window
