"""Amazon SES provider (boto3 sesv2 raw sends, SDK retries off, errors classified)."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from migrate_cli.config import Config
from migrate_cli.delivery.base import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    SendResult,
    SendStatus,
)
from migrate_cli.delivery.mime import RawMessage, build_raw

_TOKEN_PATTERNS = (
    # header dicts and canonical requests: X-Amz-Security-Token / x-amz-security-token
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=,]\s*b?['\"]?)([^'\"\s,}\n]+)"),
    re.compile(r"(?i)(signature=)([0-9a-f]{16,})"),
)


def _redact(text: str) -> str:
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def _quiet_botocore() -> None:
    """botocore logs signed request headers (the session token among them) at DEBUG.

    Whoever turns on debug logging for the whole process must not find credentials in the
    log: botocore records are redacted as they are created (a filter on one logger would miss
    its many child loggers), and botocore stays at INFO unless the operator chose a level.
    """
    sdk = logging.getLogger("botocore")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.INFO)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_migctl_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(("botocore", "urllib3")):
            message = record.getMessage()
            redacted = _redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return record

    factory._migctl_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_quiet_botocore()

TAG_NAME = "migctl-notice"
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_TAG_WORD = re.compile(r"\btags?\b")

THROTTLING_CODES = {
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
}
SERVER_CODES = {"InternalFailure", "InternalServiceError", "ServiceUnavailable", "InternalError"}
CREDENTIAL_CODES = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "AuthFailure",
}
# What the operator has to do about each account-level error.
ACCOUNT_CODES = {
    "AccountSuspendedException": "sending is suspended for this SES account; contact AWS support",
    "SendingPausedException": "sending is paused for this account or configuration set; "
    "re-enable it in the SES console",
    "MailFromDomainNotVerifiedException": "the custom MAIL FROM domain is not verified; finish "
    "its DNS set-up in SES",
    "NotFoundException": "a resource named in [email.ses] (configuration_set?) does not exist in "
    "this region",
    "ConfigurationSetDoesNotExist": "the configuration set named in [email.ses] does not exist",
}


def ses_tag_value(key: str) -> str:
    """Encode a notice key as an SES tag value (only ``[A-Za-z0-9_-]``, at most 256 chars).

    The readable part loses characters, so a short hash of the exact key keeps values distinct.
    """
    readable = _TAG_UNSAFE.sub("_", key).strip("_")[:200]
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"{readable}-{digest}" if readable else digest


class _SharedClient:
    """One boto3 client per run, shared by the run's worker threads.

    botocore clients are thread-safe, but creating one is not cheap: a session per worker cost
    ~80 ms of CPU and ~10 MB each (16 workers: 250 MB, and CPU the sends needed). Providers built
    from the same Config object (one ``notify`` run: ``provider_factory`` hands every worker the
    same one) share a client; the last provider to close closes it, so the next run resolves
    credentials and settings afresh.
    """

    lock = threading.Lock()
    entries: ClassVar[dict[tuple[Any, ...], list[Any]]] = {}  # key -> [client, users, config]

    @classmethod
    def acquire(cls, key: tuple[Any, ...], config: Config, make: Callable[[], Any]) -> Any:
        with cls.lock:
            entry = cls.entries.get(key)
            if entry is None:
                # Under the lock: boto3 sessions are not safe to use from several threads,
                # and the other workers need this client anyway.
                entry = cls.entries[key] = [make(), 0, config]
            entry[1] += 1
            return entry[0]

    @classmethod
    def release(cls, key: tuple[Any, ...], client: Any) -> None:
        with cls.lock:
            entry = cls.entries.get(key)
            if entry is not None and entry[0] is client:
                entry[1] -= 1
                if entry[1] > 0:
                    return
                del cls.entries[key]
        client.close()


class SesProvider(Provider[RawMessage]):
    """Send each notice as a raw MIME message through the SES v2 API."""

    name = "ses"
    network = True
    delivery_errors = (ClientError, BotoCoreError)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.settings = config.email.ses
        self._client: Any = None
        self._lock = threading.Lock()
        # The config object itself is part of the key (the entry holds it, so its id stays
        # unique): providers of one run share a client, separate runs never do.
        self._key = (
            id(config),
            self.settings.region,
            self.settings.endpoint_url,
            self.settings.timeout,
        )

    def _make_client(self) -> Any:
        boto_config = BotoConfig(
            # total_max_attempts counts the first request. The older max_attempts key counts
            # *retries* (botocore adds one), so max_attempts=1 would still send twice.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.settings.timeout,
            read_timeout=self.settings.timeout,
            # Every worker thread sends through this client: one pooled connection each
            # (botocore's default of 10 would open and drop connections above that).
            max_pool_connections=max(10, self.config.email.concurrency),
            # send() builds every request itself, always of the same shape, and SES checks it
            # anyway; walking the model to validate it client-side cost CPU on every send.
            parameter_validation=False,
        )
        # A private session: boto3's default session is not safe to share across threads.
        session = boto3.session.Session()
        return session.client(
            "sesv2",
            region_name=self.settings.region,
            endpoint_url=self.settings.endpoint_url,
            config=boto_config,
        )

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _SharedClient.acquire(self._key, self.config, self._make_client)
            return self._client

    def open(self) -> None:
        _ = self.client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            _SharedClient.release(self._key, client)

    def build(self, email: OutgoingEmail) -> RawMessage:
        # The same bytes as as_bytes(build_message(email)), without the email package's
        # per-message cost (most of the CPU a send took; see mime.build_raw).
        return build_raw(email)

    def deliver(self, message: RawMessage, email: OutgoingEmail) -> str | None:
        request: dict[str, Any] = {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [email.to]},
            "Content": {"Raw": {"Data": message.data}},
            "EmailTags": [{"Name": TAG_NAME, "Value": ses_tag_value(email.key)}],
        }
        if self.settings.configuration_set:
            request["ConfigurationSetName"] = self.settings.configuration_set
        response = self.client.send_email(**request)
        return response.get("MessageId")

    def classify(self, exc: Exception, message: RawMessage) -> SendResult:
        if isinstance(exc, ClientError):
            return self._client_error(exc, message.sender)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            raise ProviderConfigError(
                self.name,
                f"no usable AWS credentials ({exc}); provide them the usual boto3 way "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)",
            ) from None
        if isinstance(exc, SSLError):
            raise ProviderConfigError(
                self.name, f"TLS to the SES endpoint failed ({exc}); check [email.ses] endpoint_url"
            ) from None
        if isinstance(exc, ReadTimeoutError | ConnectionClosedError):
            # The request went out but no answer came back: SES may have accepted it.
            return SendResult(
                SendStatus.UNKNOWN,
                error=f"{exc} (the message may have been accepted)",
                code=f"ses:{type(exc).__name__}",
            )
        # Connection refused/reset, connect timeouts and other SDK errors: nothing reached SES.
        return SendResult(SendStatus.TRANSIENT, error=str(exc), code=f"ses:{type(exc).__name__}")

    def _client_error(self, exc: ClientError, sender: str) -> SendResult:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        ses_code = f"ses:{code}"
        lowered = message.lower()

        def config_error(what: str) -> ProviderConfigError:
            return ProviderConfigError(self.name, f"{what} ({code}: {message})", code=ses_code)

        if code in THROTTLING_CODES or "maximum sending rate exceeded" in lowered:
            return SendResult(SendStatus.TRANSIENT, error=message, code=ses_code)
        if code == "LimitExceededException":
            if "daily" in lowered or "quota" in lowered:
                raise config_error(
                    "the SES daily sending quota is used up; wait for the 24-hour window or ask "
                    "AWS for a higher quota (and lower [email] daily_quota to match)"
                )
            return SendResult(SendStatus.TRANSIENT, error=message, code=ses_code)
        if code in CREDENTIAL_CODES:
            raise config_error(
                "AWS rejected the credentials; check the access key, secret and clock of this "
                "machine (boto3's usual credential chain is used)"
            )
        if code.startswith("AccessDenied") or code == "NotAuthorized":
            raise config_error(
                f"these AWS credentials may not send from {sender}; grant ses:SendEmail "
                "(sesv2) on the identity and configuration set"
            )
        if code in ACCOUNT_CODES:
            raise config_error(ACCOUNT_CODES[code])
        if code in ("MessageRejected", "BadRequestException", "InvalidParameterValue"):
            return self._rejected(code, message, sender)
        if status >= 500 or code in SERVER_CODES:
            return SendResult(SendStatus.TRANSIENT, error=message, code=ses_code)
        if status == 429:
            return SendResult(SendStatus.TRANSIENT, error=message, code=ses_code)
        # Unknown codes are retried, never turned into suppressions: a mistake here must not
        # mark a customer's address as dead.
        return SendResult(SendStatus.TRANSIENT, error=f"{code}: {message}", code=ses_code)

    def _rejected(self, code: str, message: str, sender: str) -> SendResult:
        lowered = message.lower()
        ses_code = f"ses:{code}"
        domain = sender.rsplit("@", 1)[-1].lower()
        if "not verified" in lowered or "did not have authority" in lowered:
            if sender.lower() in lowered or domain in lowered or "authority" in lowered:
                raise ProviderConfigError(
                    self.name,
                    f"the sender {sender} is not a verified SES identity in region "
                    f"{self.settings.region}; verify the address or its domain in SES "
                    f"({code}: {message})",
                    code=ses_code,
                )
            # Only the recipient failed the check: the account is still in the SES sandbox,
            # which is a set-up problem, not a dead address.
            raise ProviderConfigError(
                self.name,
                "the SES account is in the sandbox and may only send to verified addresses; "
                f"request production access for region {self.settings.region} ({message})",
                code=ses_code,
            )
        if "configuration set" in lowered or _TAG_WORD.search(lowered):
            raise ProviderConfigError(
                self.name, f"SES refused the request set-up ({code}: {message})", code=ses_code
            )
        return SendResult(SendStatus.PERMANENT, error=message, code=ses_code)
