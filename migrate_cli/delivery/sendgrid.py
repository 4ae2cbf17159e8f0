"""SendGrid provider (official sendgrid package, v3 mail send), errors classified by status."""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import time
import urllib.error
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from migrate_cli.config import Config
from migrate_cli.delivery.base import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    SendResult,
    SendStatus,
)
from migrate_cli.delivery.mime import (
    check_addr_spec,
    clean_header_value,
    message_id,
    notice_headers,
    parse_mailbox,
)

CUSTOM_ARG = "migctl_notice"

# python_http_client logs every request's headers at DEBUG, Authorization included. Keys this
# process uses are redacted from its records, whoever turns debug logging on.
_SECRETS: set[str] = set()


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            text = record.getMessage()
            redacted = text
            for secret in _SECRETS:
                redacted = redacted.replace(secret, "***")
            if redacted != text:
                record.msg, record.args = redacted, None
        return True


_http_logger = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _RedactSecrets) for f in _http_logger.filters):
    _http_logger.addFilter(_RedactSecrets())


def build_payload(email: OutgoingEmail) -> dict[str, Any]:
    """The v3 mail-send JSON for one notice (same header rules as the MIME providers)."""
    to = check_addr_spec(email.to, "To")
    sender = parse_mailbox(email.from_addr, "From")
    from_obj: dict[str, str] = {"email": sender.addr_spec}
    if sender.display_name:
        from_obj["name"] = sender.display_name
    # Message-ID and our X- headers; SendGrid refuses To/From/Subject/Reply-To/Content-* here.
    headers = {"Message-ID": message_id(email), **notice_headers(email)}
    payload: dict[str, Any] = {
        "personalizations": [{"to": [{"email": to}]}],
        "from": from_obj,
        "subject": clean_header_value(email.subject),
        # SendGrid requires text/plain first, then text/html.
        "content": [
            {"type": "text/plain", "value": email.text},
            {"type": "text/html", "value": email.html},
        ],
        "custom_args": {CUSTOM_ARG: email.key},
        "headers": headers,
    }
    if email.reply_to:
        reply = parse_mailbox(email.reply_to, "Reply-To")
        reply_obj = {"email": reply.addr_spec}
        if reply.display_name:
            reply_obj["name"] = reply.display_name
        payload["reply_to"] = reply_obj
    return payload


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``X-RateLimit-Reset``."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now())
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now())  # an epoch second, not a duration
        except ValueError:
            return None
    return None


class SendgridProvider(Provider[dict[str, Any]]):
    """Send through SendGrid's v3 ``/mail/send`` endpoint."""

    name = "sendgrid"
    network = True
    # URLError, timeouts and refused connections are OSErrors.
    delivery_errors = (http_errors.HTTPError, OSError, http.client.HTTPException)

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        super().__init__(config)
        self.settings = config.email.sendgrid
        key = config.secret(self.settings.api_key_env)
        if not key:
            raise ProviderConfigError(
                self.name,
                f"the environment variable {self.settings.api_key_env} is not set; export it "
                "with a SendGrid API key that has Mail Send permission "
                "([email.sendgrid] api_key_env names it)",
            )
        self._api_key = key
        _SECRETS.add(key)
        self._clock = clock
        self._client: SendGridAPIClient | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        with self._lock:
            if self._client is None:
                # The api_key is passed explicitly: the package would otherwise fall back to
                # $SENDGRID_API_KEY silently. Its HTTP client has no timeout unless given one.
                client = SendGridAPIClient(api_key=self._api_key, host=self.settings.host)
                client.client.timeout = self.settings.timeout
                self._client = client

    def close(self) -> None:
        with self._lock:
            self._client = None  # urllib opens a connection per request; nothing to close

    def build(self, email: OutgoingEmail) -> dict[str, Any]:
        return build_payload(email)

    def deliver(self, message: dict[str, Any], email: OutgoingEmail) -> str | None:
        if self._client is None:
            self.open()
        assert self._client is not None
        response = self._client.client.mail.send.post(
            request_body=message, timeout=self.settings.timeout
        )
        headers = response.headers
        return headers.get("X-Message-Id") if headers is not None else None

    def classify(self, exc: Exception, message: dict[str, Any]) -> SendResult:
        if isinstance(exc, http_errors.HTTPError):
            return self._http_error(exc)
        if isinstance(exc, urllib.error.URLError):
            if isinstance(exc.reason, ssl.SSLCertVerificationError):
                raise ProviderConfigError(
                    self.name,
                    f"the TLS certificate of {self.settings.host} does not verify; check "
                    "[email.sendgrid] host",
                ) from None
            return self._transient("connect", f"cannot reach {self.settings.host}: {exc.reason}")
        if isinstance(exc, TimeoutError):
            # The request was sent; without an answer nobody knows whether SendGrid took it.
            return SendResult(
                SendStatus.UNKNOWN,
                error=f"no answer within {self.settings.timeout}s (the message may have been accepted)",
                code="sendgrid:timeout",
            )
        return self._transient("connect", f"{type(exc).__name__}: {exc}")

    def _http_error(self, exc: http_errors.HTTPError) -> SendResult:
        status = int(exc.status_code)
        detail = self._detail(exc)
        code = f"sendgrid:{status}"
        if status == 429 or status >= 500:
            return SendResult(
                SendStatus.TRANSIENT,
                error=detail,
                code=code,
                retry_after=retry_after_seconds(exc.headers, self._clock),
            )
        if status in (401, 403):
            raise ProviderConfigError(
                self.name,
                f"SendGrid refused the request ({status}: {detail}); check that "
                f"${self.settings.api_key_env} holds a valid API key with Mail Send permission "
                "and that [email] from is a verified sender",
                code=code,
            )
        if status in (404, 405):
            raise ProviderConfigError(
                self.name,
                f"{self.settings.host} has no v3 mail-send endpoint ({status}); check "
                "[email.sendgrid] host",
                code=code,
            )
        if status == 400 and self._blames_our_setup(exc):
            raise ProviderConfigError(
                self.name, f"SendGrid rejected the sender settings ({detail})", code=code
            )
        if 400 <= status < 500:
            return SendResult(SendStatus.PERMANENT, error=detail, code=code)
        return SendResult(SendStatus.TRANSIENT, error=detail, code=code)

    @staticmethod
    def _errors(exc: http_errors.HTTPError) -> list[dict[str, Any]]:
        try:
            body = json.loads(exc.body or b"{}")
        except (ValueError, TypeError):
            return []
        errors = body.get("errors") if isinstance(body, dict) else None
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []

    def _blames_our_setup(self, exc: http_errors.HTTPError) -> bool:
        # A 400 about "from" or "reply_to" would fail every notice alike; one about the
        # recipient (personalizations) is about that notice only.
        for error in self._errors(exc):
            field = str(error.get("field") or "")
            if field.split(".", 1)[0] in ("from", "reply_to"):
                return True
        return False

    def _detail(self, exc: http_errors.HTTPError) -> str:
        messages = [str(e.get("message")) for e in self._errors(exc) if e.get("message")]
        text = "; ".join(messages) or str(getattr(exc, "reason", "")) or "no details"
        return text.replace(self._api_key, "***")[:300]

    def _transient(self, kind: str, detail: str) -> SendResult:
        return SendResult(
            SendStatus.TRANSIENT,
            error=detail.replace(self._api_key, "***"),
            code=f"sendgrid:{kind}",
        )
