"""SMTP provider against a real in-process aiosmtpd server: TLS modes, AUTH, classification."""

from __future__ import annotations

import base64
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_cli.delivery.base import ProviderConfigError, SendStatus
from migrate_cli.delivery.smtp import SmtpProvider
from tests.fakes.common import free_port, make_config, make_email, parse
from tests.fakes.smtp_server import (
    Certificates,
    RecordingHandler,
    SmtpServer,
    make_certificates,
)

PASSWORD_ENV = "MIGCTL_TEST_SMTP_PASSWORD"
CANARY = "canary-smtp-pw-7d1e0b"
USER = "relay-user"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def provider_for(server: SmtpServer | None, port: int | None = None, **smtp: Any) -> SmtpProvider:
    settings: dict[str, Any] = {"host": "127.0.0.1", "security": "none", "timeout": 5.0}
    settings["port"] = server.port if server else port
    settings.update(smtp)
    return SmtpProvider(make_config("smtp", smtp=settings))


def secret_forms(secret: str, user: str = USER) -> list[str]:
    return [
        secret,
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0{user}\0{secret}".encode()).decode(),
    ]


def test_plain_send_uses_the_envelope_and_reuses_one_connection() -> None:
    with SmtpServer() as server, provider_for(server) as provider:
        results = [provider.send(make_email(to=f"a{i}@customer.example")) for i in range(3)]
    assert [r.status for r in results] == [SendStatus.SENT] * 3
    assert results[0].provider_message_id and "queued as Q1" in results[0].provider_message_id
    assert server.handler.connections == 1
    first = server.messages[0]
    assert first.mail_from == "notices@platform.example"
    assert first.rcpt_tos == ["a0@customer.example"]
    assert parse(first.data)["X-Migctl-Notice"] == make_email().key


def test_starttls_with_a_private_ca(certs: Certificates) -> None:
    with SmtpServer(mode="starttls", certificates=certs) as server:
        provider = provider_for(server, security="starttls", ca_file=str(certs.ca_file))
        with provider:
            assert provider.send(make_email()).status is SendStatus.SENT
    assert len(server.messages) == 1


def test_starttls_refuses_an_untrusted_certificate(certs: Certificates) -> None:
    with SmtpServer(mode="starttls", certificates=certs) as server:
        provider = provider_for(server, security="starttls")
        with pytest.raises(ProviderConfigError, match="does not verify"), provider:
            provider.send(make_email())
    assert server.messages == []


def test_starttls_required_but_not_offered() -> None:
    with SmtpServer() as server:
        provider = provider_for(server, security="starttls")
        with pytest.raises(ProviderConfigError, match="does not offer STARTTLS"), provider:
            provider.send(make_email())
    assert server.messages == []


def test_implicit_tls(certs: Certificates) -> None:
    with SmtpServer(mode="ssl", certificates=certs) as server:
        provider = provider_for(server, security="ssl", ca_file=str(certs.ca_file))
        with provider:
            assert provider.send(make_email()).status is SendStatus.SENT
    assert len(server.messages) == 1


def test_implicit_tls_against_a_plain_port_is_a_config_error() -> None:
    with SmtpServer() as server:
        provider = provider_for(server, security="ssl")
        with pytest.raises(ProviderConfigError, match="TLS"), provider:
            provider.send(make_email())


def test_auth_with_the_right_password(
    certs: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(PASSWORD_ENV, CANARY)
    with SmtpServer(mode="starttls", certificates=certs, auth=(USER, CANARY)) as server:
        provider = provider_for(
            server,
            security="starttls",
            ca_file=str(certs.ca_file),
            username=USER,
            password_env=PASSWORD_ENV,
        )
        with provider:
            result = provider.send(make_email())
    assert result.status is SendStatus.SENT
    assert len(server.messages) == 1
    out, err = capfd.readouterr()
    for form in secret_forms(CANARY):
        assert not any(form in text for text in (repr(result), out, err, caplog.text)), form


def test_bad_password_is_a_config_error_that_never_shows_the_password(
    certs: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(PASSWORD_ENV, CANARY)
    with SmtpServer(mode="starttls", certificates=certs, auth=(USER, "the-real-one")) as server:
        provider = provider_for(
            server,
            security="starttls",
            ca_file=str(certs.ca_file),
            username=USER,
            password_env=PASSWORD_ENV,
        )
        with pytest.raises(ProviderConfigError) as info, provider:
            provider.send(make_email())
    assert server.messages == []
    error = info.value
    assert error.code == "smtp:535"
    assert PASSWORD_ENV in str(error)
    out, err = capfd.readouterr()
    seen = [str(error), repr(error), repr(error.args), out, err, caplog.text]
    seen += [str(r.__dict__) for r in caplog.records]
    for form in secret_forms(CANARY):
        assert not any(form in text for text in seen), form


def test_missing_password_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ProviderConfigError, match=PASSWORD_ENV):
        provider_for(None, port=25, username=USER, password_env=PASSWORD_ENV)


@pytest.mark.parametrize(
    ("handler", "status", "code"),
    [
        (RecordingHandler(mail_reply="421 4.3.2 shutting down"), SendStatus.TRANSIENT, "smtp:421"),
        (RecordingHandler(mail_reply="451 4.3.0 try later"), SendStatus.TRANSIENT, "smtp:451"),
        (
            RecordingHandler(rcpt_replies={"admin@customer.example": "452 4.2.2 mailbox full"}),
            SendStatus.TRANSIENT,
            "smtp:452",
        ),
        (
            RecordingHandler(rcpt_replies={"admin@customer.example": "550 5.1.1 no such user"}),
            SendStatus.PERMANENT,
            "smtp:550",
        ),
        (
            RecordingHandler(rcpt_replies={"admin@customer.example": "553 5.1.3 bad address"}),
            SendStatus.PERMANENT,
            "smtp:553",
        ),
        (RecordingHandler(data_reply="451 4.7.1 greylisted"), SendStatus.TRANSIENT, "smtp:451"),
    ],
)
def test_reply_codes_are_classified(
    handler: RecordingHandler, status: SendStatus, code: str
) -> None:
    with SmtpServer(handler) as server, provider_for(server) as provider:
        result = provider.send(make_email())
        assert (result.status, result.code) == (status, code)
        assert result.error and code.split(":")[1] in result.error
        # The session is still usable (or reopened after 421) for the next notice.
        handler.mail_reply, handler.rcpt_replies, handler.data_reply = None, {}, None
        assert provider.send(make_email()).status is SendStatus.SENT
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    "handler",
    [
        RecordingHandler(mail_reply="553 5.7.1 sender address rejected"),
        RecordingHandler(mail_reply="530 5.7.0 authentication required"),
        RecordingHandler(rcpt_replies={"admin@customer.example": "554 5.7.1 Relay access denied"}),
        # Rejections of the relay or the message, not of the address (SPEC section 6).
        RecordingHandler(data_reply="554 5.7.1 rejected as spam"),
        RecordingHandler(
            rcpt_replies={
                "admin@customer.example": "554 5.7.1 Service unavailable; Client host "
                "[127.0.0.1] blocked using zen.spamhaus.org"
            }
        ),
    ],
)
def test_setup_problems_stop_the_run(handler: RecordingHandler) -> None:
    with SmtpServer(handler) as server:
        provider = provider_for(server)
        with pytest.raises(ProviderConfigError) as info, provider:
            provider.send(make_email())
    assert info.value.code and info.value.code.startswith("smtp:5")


def test_reconnects_once_when_the_server_dropped_the_idle_connection() -> None:
    handler = RecordingHandler(drop_after_messages=1)
    with SmtpServer(handler) as server, provider_for(server) as provider:
        first = provider.send(make_email(to="a1@customer.example"))
        threading.Event().wait(0.3)  # let the server hang up
        second = provider.send(make_email(to="a2@customer.example"))
    assert (first.status, second.status) == (SendStatus.SENT, SendStatus.SENT)
    assert [m.rcpt_tos for m in server.messages] == [
        ["a1@customer.example"],
        ["a2@customer.example"],
    ]
    assert handler.connections == 2


def test_hang_up_during_data_is_unknown_and_not_resent() -> None:
    """The server may have queued the message: in doubt, never retried blindly."""
    handler = RecordingHandler()
    with SmtpServer(handler) as server, provider_for(server) as provider:
        assert provider.send(make_email()).status is SendStatus.SENT
        handler.close_at_data = True
        result = provider.send(make_email(to="a2@customer.example"))
    assert result.status is SendStatus.UNKNOWN
    assert result.code == "smtp:disconnected"
    assert "DATA" in (result.error or "")
    assert handler.connections == 1  # no blind resend of a message the server may have kept


def test_connection_refused_is_transient() -> None:
    provider = provider_for(None, port=free_port())
    with provider:
        result = provider.send(make_email())
    assert (result.status, result.code) == (SendStatus.TRANSIENT, "smtp:connect")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_silent_server_times_out_as_transient(silent_server: int) -> None:
    provider = provider_for(None, port=silent_server, timeout=0.3)
    with provider:
        result = provider.send(make_email())
    assert (result.status, result.code) == (SendStatus.TRANSIENT, "smtp:timeout")


def test_close_is_safe_twice_and_without_open(tmp_path: Path) -> None:
    provider = provider_for(None, port=free_port())
    provider.close()
    provider.close()
