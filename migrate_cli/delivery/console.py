"""Development provider that prints each message to a stream (stderr by default)."""

from __future__ import annotations

import sys
import threading
from email.message import EmailMessage
from typing import TextIO

from migrate_cli.config import Config
from migrate_cli.delivery.base import OutgoingEmail, Provider
from migrate_cli.delivery.mime import build_message

SEPARATOR = "-" * 79


class ConsoleProvider(Provider[EmailMessage]):
    """Write every message, as it would go on the wire, to a stream followed by a separator.

    Subclasses change where a message goes by overriding ``write_message`` (and ``open``).
    """

    name = "console"
    development_only = True

    def __init__(self, config: Config, stream: TextIO | None = None) -> None:
        super().__init__(config)
        self._stream = stream
        # Concurrent workers must not interleave two messages on one stream.
        self._lock = threading.Lock()

    @property
    def stream(self) -> TextIO:
        # stderr: stdout belongs to the command's own output (one JSON document with --json).
        # Resolved late so a test or the CLI that swaps sys.stderr is honoured.
        return self._stream if self._stream is not None else sys.stderr

    def build(self, email: OutgoingEmail) -> EmailMessage:
        return build_message(email)

    def deliver(self, message: EmailMessage, email: OutgoingEmail) -> str:
        with self._lock:
            return self.write_message(message, email)

    def write_message(self, msg: EmailMessage, email: OutgoingEmail) -> str:
        """Deliver ``msg``; return the id reported as provider_message_id."""
        # The generator folds with CRLF for SMTP; a terminal wants plain newlines.
        text = msg.as_bytes().decode("ascii", errors="replace").replace("\r\n", "\n")
        stream = self.stream
        stream.write(text.rstrip("\n") + "\n")
        stream.write(SEPARATOR + "\n")
        stream.flush()
        return f"console:{email.message_id.strip('<>')}"
