"""The provider contract: open/close, and one send() template over per-provider hooks."""

from __future__ import annotations

import base64
import dataclasses
import enum
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
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
    # The message could not be made (text that cannot be encoded, a bad header): it never
    # reached the provider. The notice fails with the cause; the address is not suppressed.
    UNSENDABLE = "unsendable"


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


class ProviderRejectedError(ProviderConfigError):
    """The provider refuses the sender, the relay or the message itself (not one recipient):
    every notice would meet the same answer, so the run stops and nothing is suppressed."""


REDACTED = "***"
# Environment variables boto3 reads credentials from; their values are secrets wherever set.
AWS_SECRET_ENVS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def configured_secrets(config: Config) -> tuple[str, ...]:
    """Every secret value this configuration can hand a provider, with the encodings a server
    may echo (base64, as in SMTP AUTH); the longest first so none is left half-redacted."""
    email = config.email
    values = [
        config.secret(email.smtp.password_env),
        config.secret(email.sendgrid.api_key_env),
        *(os.environ.get(name) for name in AWS_SECRET_ENVS),
    ]
    found: set[str] = set()
    for value in values:
        if not value or len(value) < 4:  # a one-letter "secret" would blank out every text
            continue
        found.add(value)
        found.add(base64.b64encode(value.encode()).decode())
        user = email.smtp.username or ""
        found.add(base64.b64encode(f"\0{user}\0{value}".encode()).decode())
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret value replaced by ***."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


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
        self.secrets = configured_secrets(config)
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
        """Send one message; thread-safe for network providers. Subclasses write the hooks.

        Whatever text comes back (a result's error, any exception's message) has every
        configured secret redacted first: a provider may echo credentials in its answers.
        """
        with self.redacting():
            result = self._send(email)
        if result.error:
            result = dataclasses.replace(result, error=redact(result.error, self.secrets))
        return result

    def _send(self, email: OutgoingEmail) -> SendResult:
        try:
            message = self.build(email)
        except InvalidAddressError as exc:
            return address_failure(self.name, exc)
        except (UnicodeError, ValueError) as exc:
            # Nothing was handed over: a failure of its own kind, never in doubt.
            return SendResult(
                SendStatus.UNSENDABLE,
                error=f"the message cannot be built: {type(exc).__name__}: {exc}",
                code="migctl:unsendable",
            )
        try:
            provider_message_id = self.deliver(message, email)
        except self.delivery_errors as exc:
            return self.classify(exc, message)
        return SendResult(SendStatus.SENT, provider_message_id=provider_message_id)

    @contextmanager
    def redacting(self) -> Iterator[None]:
        """Redact configured secrets from the message of any exception raised inside."""
        try:
            yield
        except Exception as exc:
            exc.args = tuple(redact(a, self.secrets) if isinstance(a, str) else a for a in exc.args)
            raise

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
