"""An in-process aiosmtpd server with scripted replies, TLS from trustme, and optional AUTH."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.fakes.common import free_port

# The server's own debug log echoes client lines; keep it out of captured test logs.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class RecordingHandler:
    """Stores accepted messages; replies can be scripted per stage to exercise classification."""

    mail_reply: str | None = None  # e.g. "553 5.1.8 sender address rejected"
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply
    data_reply: str | None = None  # e.g. "451 4.3.0 try again later"
    drop_after_messages: int | None = None  # close the connection after N accepted messages
    close_at_data: bool = False  # hang up after receiving the message, before replying
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        if self.close_at_data:
            transport = server.transport
            assert transport is not None
            transport.close()
            return "250 never heard by the client"
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), content)
            )
            count = len(self.messages)
        if self.drop_after_messages is not None and count % self.drop_after_messages == 0:
            transport = server.transport
            assert transport is not None
            # Close once the 250 reply has gone out, like a relay ending idle sessions.
            asyncio.get_running_loop().call_later(0.05, transport.close)
        return f"250 2.0.0 Ok: queued as Q{count}"


class CountingSMTP(SMTP):
    """Counts connections so tests can see reconnects."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._recording = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        with self._recording.lock:
            self._recording.connections += 1
        super().connection_made(transport)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class Certificates:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost."""

    ca_file: Path
    server_context: ssl.SSLContext


def make_certificates(directory: Path) -> Certificates:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Certificates(ca_file=ca_file, server_context=context)


def password_authenticator(username: str, password: str) -> Any:
    """An aiosmtpd authenticator accepting exactly one username/password."""

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


class SmtpServer:
    """Start/stop an aiosmtpd Controller on 127.0.0.1; ``mode`` is none, starttls or ssl."""

    def __init__(
        self,
        handler: RecordingHandler | None = None,
        mode: str = "none",
        certificates: Certificates | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.handler = handler or RecordingHandler()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if mode in ("starttls", "ssl") and certificates is None:
            raise ValueError("TLS modes need certificates")
        if mode == "starttls":
            assert certificates is not None
            kwargs["tls_context"] = certificates.server_context
            kwargs["require_starttls"] = True
        if mode == "ssl":
            assert certificates is not None
            kwargs["ssl_context"] = certificates.server_context
        if auth is not None:
            kwargs["authenticator"] = password_authenticator(*auth)
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = mode != "none"
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        with self.handler.lock:
            self.handler.connections = 0  # start() itself connects once to check readiness
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages
