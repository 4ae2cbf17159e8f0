"""Development provider that keeps every sent message in a process-wide list (for tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email.message import EmailMessage

from migrate_cli.delivery.base import OutgoingEmail, Provider
from migrate_cli.delivery.mime import build_message


@dataclass(frozen=True)
class Sent:
    """One accepted message: what went on the wire and the notice it came from."""

    message: EmailMessage
    email: OutgoingEmail


# Process-wide like Django's locmem outbox: every instance (one per worker) appends here.
outbox: list[Sent] = []
_lock = threading.Lock()


def clear() -> None:
    """Empty the outbox (a test calls this before it sends)."""
    with _lock:
        outbox.clear()


def sent() -> list[Sent]:
    """A copy of the outbox, safe to read while workers are still sending."""
    with _lock:
        return list(outbox)


class MemoryProvider(Provider[EmailMessage]):
    """Build every message like the MIME providers do and append it to ``outbox``."""

    name = "memory"
    development_only = True

    def build(self, email: OutgoingEmail) -> EmailMessage:
        return build_message(email)

    def deliver(self, message: EmailMessage, email: OutgoingEmail) -> str:
        with _lock:
            outbox.append(Sent(message, email))
        return f"memory:{email.message_id.strip('<>')}"
