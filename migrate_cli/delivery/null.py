"""Provider that accepts every message and delivers nothing (benchmarks, rehearsals)."""

from __future__ import annotations

import itertools
import os

from migrate_cli.config import Config
from migrate_cli.delivery.base import OutgoingEmail, Provider


class NullProvider(Provider[None]):
    """Accept every message at once without building it, so benchmarks measure migctl alone."""

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

    def build(self, email: OutgoingEmail) -> None:
        return None  # nothing is built, so no address is checked either

    def deliver(self, message: None, email: OutgoingEmail) -> str:
        self._last = next(self._counter)
        # The pid keeps ids unique when a large run sends from two processes.
        return f"null:{self._pid}:{self._last}"
