"""The provider contract: open/close, send one message, classify every failure."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import ClassVar

from migrate_cli.config import Config
from migrate_cli.errors import ConfigError


@dataclass(frozen=True)
class OutgoingEmail:
    """One rendered notice, ready for any provider (the same content whichever sends it)."""

    key: str  # the notice's idempotency key (migration, administrator, kind, slot)
    to: str
    from_addr: str
    subject: str
    text: str
    html: str
    message_id: str  # RFC 5322 Message-ID, generated once when the notice is enqueued
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra X- headers (ours only)
    test: bool = False  # a --test-to sample, never recorded as a notice
    # The Date header: the run's clock (a rehearsal's --now); None means the real clock.
    date: datetime | None = None


class SendStatus(enum.StrEnum):
    """The normalised outcome of one send."""

    SENT = "sent"  # accepted by the provider
    TRANSIENT = "transient"  # try again later (throttling, 4xx SMTP, 5xx HTTP, timeouts)
    PERMANENT = "permanent"  # this recipient will never work: fail the notice, suppress the address
    # The message was handed over but no answer came (timeout or drop after DATA / the request
    # body): it may or may not have been accepted. The notice becomes in_doubt, never resent.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendResult:
    """What happened to one message; ``code`` keeps the provider's own code for the outbox."""

    status: SendStatus
    provider_message_id: str | None = None
    error: str | None = None
    code: str | None = None
    retry_after: float | None = None  # seconds, when the provider said how long to wait


class ProviderConfigError(ConfigError):
    """Bad credentials, unverified sender, paused account, quota exhausted: stop the run."""

    def __init__(self, provider: str, message: str, code: str | None = None) -> None:
        self.provider = provider
        self.code = code
        super().__init__(f"{provider}: {message}")


class Provider(ABC):
    """Base class for adapters: a context manager that sends one message at a time.

    Subclasses implement ``send``; ``open``/``close`` manage connections. ``send`` returns a
    SendResult for transient and permanent outcomes and raises ProviderConfigError for
    configuration problems. It must never raise for a per-message failure.
    """

    name: ClassVar[str] = "base"
    development_only: ClassVar[bool] = False  # console/file refuse environment=production
    network: ClassVar[bool] = False  # network providers get concurrency workers

    def __init__(self, config: Config) -> None:
        self.config = config
        if self.development_only and config.environment == "production":
            raise ProviderConfigError(
                self.name,
                f"the {self.name!r} provider is for development and testing only and refuses "
                'to run with environment = "production"; configure smtp, ses or sendgrid '
                "under [email] in migctl.toml",
            )

    def open(self) -> None:  # noqa: B027 - optional hook
        """Open connections (called once before a batch)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close connections (called once after a batch, also on error)."""

    def __enter__(self) -> Provider:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def send(self, email: OutgoingEmail) -> SendResult:
        """Send one message; thread-safe for network providers (one instance per worker)."""
