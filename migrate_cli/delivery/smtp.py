"""SMTP provider (stdlib smtplib): one reused connection, replies classified by code."""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
from typing import NoReturn

from migrate_cli.config import Config
from migrate_cli.delivery.base import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    ProviderRejectedError,
    SendResult,
    SendStatus,
    redact,
)
from migrate_cli.delivery.mime import RawMessage, build_raw

AUTH_FAILURE_CODES = {530, 534, 535, 538}


class _Refused(Exception):
    """The server answered ``code`` at ``stage`` instead of accepting."""

    def __init__(self, code: int, reply: bytes | str, stage: str) -> None:
        self.code = code
        self.reply = reply
        self.stage = stage
        super().__init__(f"{stage}: {code}")


class _Lost(Exception):
    """No answer came; ``handed_over`` says the message may already have been accepted.

    ``stale`` marks a connection that went away before DATA: a reused one the server may have
    closed while idle, where one more try on a fresh connection is safe.
    """

    def __init__(
        self, kind: str, detail: str, *, handed_over: bool = False, stale: bool = False
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.handed_over = handed_over
        self.stale = stale
        super().__init__(detail)


class SmtpProvider(Provider[RawMessage]):
    """Send through an SMTP relay with STARTTLS, implicit TLS or plain, and optional AUTH."""

    name = "smtp"
    network = True
    # smtplib's own errors are OSErrors, like refused or reset connections.
    delivery_errors = (_Refused, _Lost, OSError)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.settings = config.email.smtp
        self._username = self.settings.username
        self._password: str | None = None
        if self.settings.password_env:
            self._password = config.secret(self.settings.password_env)
            if self._password is None:
                raise ProviderConfigError(
                    self.name,
                    f"the environment variable {self.settings.password_env} is not set; export "
                    "it with the SMTP password ([email.smtp] password_env names it)",
                )
            if not self._username:
                raise ProviderConfigError(
                    self.name, "password_env is set but username is not; set [email.smtp] username"
                )
        elif self._username:
            raise ProviderConfigError(
                self.name,
                "username is set but password_env is not; set [email.smtp] password_env to the "
                "name of the environment variable holding the password",
            )
        self._conn: smtplib.SMTP | None = None
        # One instance may be shared by threads; an SMTP session is strictly sequential.
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.settings.ca_file:
            # Added to the system trust store, not instead of it.
            context.load_verify_locations(cafile=self.settings.ca_file)
        return context

    def _open_connection(self) -> smtplib.SMTP:
        s = self.settings
        port = s.effective_port
        conn: smtplib.SMTP
        # The host goes to the constructor (which connects): smtplib only remembers it there,
        # and STARTTLS/SMTP_SSL need it to check the certificate's name.
        # Never call set_debuglevel: smtplib would print the AUTH exchange to stderr.
        if s.security == "ssl":
            conn = smtplib.SMTP_SSL(
                s.host,
                port,
                local_hostname=s.local_hostname,
                timeout=s.timeout,
                context=self._tls_context(),
            )
        else:
            conn = smtplib.SMTP(s.host, port, local_hostname=s.local_hostname, timeout=s.timeout)
        try:
            conn.ehlo()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise ProviderConfigError(
                        self.name,
                        f'{s.host}:{port} does not offer STARTTLS; use security = "ssl" for an '
                        'implicit-TLS port or, on a trusted local relay only, security = "none"',
                    )
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self._username and self._password is not None:
                self._login(conn)
        except BaseException:
            conn.close()  # never leak a half-open socket, whatever went wrong
            raise
        return conn

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        port = s.effective_port
        try:
            return self._open_connection()
        except ssl.SSLCertVerificationError as exc:
            raise ProviderConfigError(
                self.name,
                f"the TLS certificate of {s.host}:{port} does not verify ({exc.verify_message}); "
                "fix the host name or add the relay's CA with [email.smtp] ca_file",
            ) from None
        except ssl.SSLError as exc:
            raise ProviderConfigError(
                self.name,
                f"TLS handshake with {s.host}:{port} failed ({exc.reason}); check that "
                f"security = {s.security!r} matches what the port speaks",
            ) from None

    def _login(self, conn: smtplib.SMTP) -> None:
        assert self._username is not None and self._password is not None
        try:
            conn.login(self._username, self._password)
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            raise ProviderConfigError(
                self.name,
                f"authentication as {self._username!r} failed ({exc.smtp_code} "
                f"{self._redact(exc.smtp_error)}); check [email.smtp] username and the password "
                f"in ${self.settings.password_env}",
                code=f"smtp:{exc.smtp_code}",
            ) from None
        except smtplib.SMTPNotSupportedError:
            conn.close()
            raise ProviderConfigError(
                self.name,
                f"{self.settings.host} does not offer AUTH on this connection; the server may "
                'require TLS first (security = "starttls" or "ssl")',
            ) from None
        except smtplib.SMTPException as exc:
            if isinstance(exc, smtplib.SMTPServerDisconnected):
                raise
            conn.close()
            raise ProviderConfigError(
                self.name, f"cannot log in: {self._redact(str(exc))}"
            ) from None

    def _redact(self, detail: bytes | str) -> str:
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else detail
        return redact(text, self.secrets)[:300]

    def open(self) -> None:
        """Connections are opened lazily by the first send and reused afterwards."""

    def close(self) -> None:
        with self._lock:
            self._drop(polite=True)

    def _drop(self, polite: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if polite:
                conn.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the server may already be gone; closing the socket is all that is left
        finally:
            conn.close()

    # -- sending --------------------------------------------------------------------------

    def build(self, email: OutgoingEmail) -> RawMessage:
        return build_raw(email)

    def deliver(self, message: RawMessage, email: OutgoingEmail) -> str | None:
        with self._lock:
            # A reused connection may have been closed by the server while idle; that shows as
            # a disconnect before DATA, when a second try on a fresh connection is safe.
            for attempt in (1, 2):
                fresh = self._conn is None
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    return self._transaction(self._conn, message.sender, email.to, message.data)
                except _Lost as exc:
                    self._drop()
                    if exc.stale and not fresh and attempt == 1:
                        continue
                    raise
                except smtplib.SMTPConnectError as exc:
                    self._drop()
                    raise _Refused(exc.smtp_code, exc.smtp_error, "greeting") from None
                except smtplib.SMTPServerDisconnected as exc:  # during connect/EHLO/login
                    self._drop()
                    if not fresh and attempt == 1:
                        continue
                    raise _Lost(_lost(str(exc)), str(exc)) from None
                except smtplib.SMTPResponseException as exc:  # EHLO/STARTTLS refused
                    self._drop()
                    raise _Refused(exc.smtp_code, exc.smtp_error, "session") from None
                except OSError:  # refused, unreachable, reset, DNS failure, timeout
                    self._drop()
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(self, conn: smtplib.SMTP, sender: str, to: str, data: bytes) -> str | None:
        stage = "MAIL FROM"
        try:
            code, reply = conn.mail(sender)
            if code != 250:
                self._refused(conn, code, reply, stage)
            stage = "RCPT TO"
            code, reply = conn.rcpt(to)
            if code not in (250, 251):
                self._refused(conn, code, reply, stage)
            stage = "DATA"
            code, reply = conn.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself answered with something else than 354
            self._refused(conn, exc.smtp_code, exc.smtp_error, stage)
        except smtplib.SMTPServerDisconnected as exc:
            doubt = " (the message may have been accepted)" if stage == "DATA" else ""
            detail = f"connection lost at {stage}: {exc}{doubt}"
            raise _Lost(
                _lost(detail), detail, handed_over=stage == "DATA", stale=stage != "DATA"
            ) from None
        except TimeoutError:
            # After DATA started the relay may have queued the message: say so in the outbox.
            self._drop()
            if stage == "DATA":
                raise _Lost(
                    "timeout",
                    "no answer at DATA (the message may have been accepted)",
                    handed_over=True,
                ) from None
            raise _Lost("timeout", f"no answer at {stage}") from None
        if code != 250:
            self._refused(conn, code, reply, "end of DATA")
        return _queue_id(reply)

    def _refused(self, conn: smtplib.SMTP, code: int, reply: bytes | str, stage: str) -> NoReturn:
        if code == 421:
            self._drop()  # 421 means the server is closing the channel
        else:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        raise _Refused(code, reply, stage)

    def classify(self, exc: Exception, message: RawMessage) -> SendResult:
        if isinstance(exc, _Refused):
            return self._reply_result(exc.code, exc.reply, exc.stage)
        if isinstance(exc, _Lost):
            status = SendStatus.UNKNOWN if exc.handed_over else SendStatus.TRANSIENT
            return SendResult(status, error=exc.detail, code=f"smtp:{exc.kind}")
        if isinstance(exc, TimeoutError):
            return self._transient("timeout", f"no answer within {self.settings.timeout}s")
        if isinstance(exc, OSError):
            return self._transient("connect", f"{type(exc).__name__}: {exc}")
        raise exc

    def _reply_result(self, code: int, reply: bytes | str, stage: str) -> SendResult:
        text = self._redact(reply)
        error = f"{stage}: {code} {text}"
        smtp_code = f"smtp:{code}"
        if code in AUTH_FAILURE_CODES:
            raise ProviderConfigError(
                self.name,
                f"the server requires or rejected authentication at {stage} ({code} {text}); "
                "check [email.smtp] username and password_env",
                code=smtp_code,
            )
        if 400 <= code < 500:
            return SendResult(SendStatus.TRANSIENT, error=error, code=smtp_code)
        if 500 <= code < 600:
            if stage in ("MAIL FROM", "greeting", "session"):
                raise ProviderConfigError(
                    self.name,
                    f"the server refused {stage} ({code} {text}); check [email] from and the "
                    "relay's settings for this sender",
                    code=smtp_code,
                )
            if stage == "RCPT TO" and "relay" in text.lower():
                # "Relaying denied" hits every recipient alike: it is our setup, not the address.
                raise ProviderConfigError(
                    self.name,
                    f"the server refuses to relay ({code} {text}); configure [email.smtp] "
                    "username/password_env or allow this host on the relay",
                    code=smtp_code,
                )
            if stage != "RCPT TO" or not names_recipient(code, text):
                # A blocklisted relay, a policy rejection, a message refused at the end of
                # DATA: every notice would meet it, and no address is to blame.
                raise ProviderRejectedError(
                    self.name,
                    f"the server rejected the message at {stage}, not one recipient "
                    f"(it answered {code} {text}); nothing was suppressed and the notices "
                    "stay pending; check the relay's blocklists and policy for this sender",
                    code=smtp_code,
                )
            return SendResult(SendStatus.PERMANENT, error=error, code=smtp_code)
        return SendResult(SendStatus.TRANSIENT, error=error, code=smtp_code)

    def _transient(self, kind: str, detail: str) -> SendResult:
        return SendResult(SendStatus.TRANSIENT, error=detail, code=f"smtp:{kind}")


_ENHANCED = re.compile(r"^\s*5\.(\d{1,3})\.\d{1,3}\b")


def names_recipient(code: int, text: str) -> bool:
    """Whether an RCPT rejection is about the address itself (RFC 3463): 5.1.x addressing or
    5.2.x mailbox status; without an enhanced code, 550/551/553 (mailbox unavailable, not
    local, name not allowed). 5.7.x (policy, blocklists) and 554 are about us, not them."""
    m = _ENHANCED.match(text)
    if m:
        return m.group(1) in ("1", "2")
    return code in (550, 551, 553)


def _lost(detail: str) -> str:
    # smtplib reports a read timeout as SMTPServerDisconnected("... timed out").
    return "timeout" if "timed out" in detail else "disconnected"


def _queue_id(reply: bytes) -> str | None:
    # Many relays answer "250 2.0.0 Ok: queued as ABC123"; keep that reply as the provider id.
    text = reply.decode("utf-8", "replace").strip()
    return text[:200] or None
