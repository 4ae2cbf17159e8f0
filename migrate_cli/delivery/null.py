"""Provider that accepts every message and delivers nothing (benchmarks, rehearsals)."""

from __future__ import annotations

import itertools
import os

from migrate_cli.config import Config
from migrate_cli.delivery.base import OutgoingEmail, Provider, SendResult, SendStatus


class NullProvider(Provider):
    """Return SENT at once without building the message, so benchmarks measure migctl alone."""

    name = "null"
    development_only = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        # itertools.count is atomic under the GIL: a cheap, thread-safe send counter.
        self._counter = itertools.count(1)
        self._pid = os.getpid()
        self._last = 0

    @property
    def sent(self) -> int:
        """How many messages were 'sent' (approximate only while sends are in flight)."""
        return self._last

    def send(self, email: OutgoingEmail) -> SendResult:
        self._last = next(self._counter)
        # The pid keeps ids unique when a large run sends from two processes.
        return SendResult(SendStatus.SENT, provider_message_id=f"null:{self._pid}:{self._last}")
