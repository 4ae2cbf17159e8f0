"""The provider contract: open/close, and one send() template over per-provider hooks."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import ClassVar, Generic, TypeVar

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


class InvalidAddressError(ValueError):
    """An address that is not exactly one plain mailbox; ``field`` says which header it was for."""

    def __init__(self, field: str, value: str, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}: {value!r} is not a valid address ({reason})")


def address_failure(provider: str, exc: InvalidAddressError) -> SendResult:
    """Turn a bad address into a result: a bad recipient fails that notice, a bad sender stops."""
    if exc.field == "To":
        return SendResult(SendStatus.PERMANENT, error=str(exc), code="migctl:invalid-recipient")
    key = "from" if exc.field == "From" else "reply_to"
    raise ProviderConfigError(
        provider, f"{exc}; set a plain address under [email] {key} in migctl.toml"
    ) from None


MessageT = TypeVar("MessageT")


class Provider(ABC, Generic[MessageT]):
    """Base class for adapters: a context manager that sends one message at a time.

    ``send`` is the one template every provider shares: ``build`` the message (MIME bytes, an
    ``EmailMessage`` or an API payload; a bad address raises InvalidAddressError) → a bad
    recipient fails that notice alone → ``deliver`` it → an exception listed in
    ``delivery_errors`` goes to ``classify``, which returns a transient, permanent or unknown
    SendResult or raises ProviderConfigError. A subclass writes only those hooks (and
    ``open``/``close`` for connections). ProviderConfigError from any hook stops the run; any
    other exception is a bug and propagates.
    """

    name: ClassVar[str] = "base"
    development_only: ClassVar[bool] = False  # console/file/memory/null refuse production
    network: ClassVar[bool] = False  # network providers get concurrency workers
    # What ``deliver`` raises for one message's failure; the base hands these to ``classify``.
    delivery_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, config: Config) -> None:
        self.config = config
        if self.development_only and config.environment == "production":
            raise ProviderConfigError(
                self.name,
                f"the {self.name!r} provider is for development and testing only and refuses "
                'to run with environment = "production"; configure smtp, ses or sendgrid '
                "under [email] in migctl.toml",
            )

    def open(self) -> None:
        """Open connections (called once before a batch)."""

    def close(self) -> None:
        """Close connections (called once after a batch, also on error)."""

    def __enter__(self) -> Provider[MessageT]:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, email: OutgoingEmail) -> SendResult:
        """Send one message; thread-safe for network providers. Subclasses write the hooks."""
        try:
            message = self.build(email)
        except InvalidAddressError as exc:
            return address_failure(self.name, exc)
        try:
            provider_message_id = self.deliver(message, email)
        except self.delivery_errors as exc:
            return self.classify(exc, message)
        return SendResult(SendStatus.SENT, provider_message_id=provider_message_id)

    @abstractmethod
    def build(self, email: OutgoingEmail) -> MessageT:
        """The message as this provider sends it; InvalidAddressError for a bad address."""

    @abstractmethod
    def deliver(self, message: MessageT, email: OutgoingEmail) -> str | None:
        """Hand ``message`` over; return the provider's id for it, raise on failure."""

    def classify(self, exc: Exception, message: MessageT) -> SendResult:
        """The outcome of a failed ``deliver`` of ``message`` (``exc`` is one of
        ``delivery_errors``), or raise.

        Returns TRANSIENT, PERMANENT or UNKNOWN; raises ProviderConfigError when the failure
        would hit every message alike.
        """
        raise exc  # only reached if a subclass lists errors without classifying them
