"""SendGrid provider against a local server speaking the v3 mail-send API."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from migrate_cli.delivery.base import ProviderConfigError, SendResult, SendStatus
from migrate_cli.delivery.sendgrid import SendgridProvider, retry_after_seconds
from tests.fakes.common import free_port, make_config, make_email
from tests.fakes.sendgrid_server import RESERVED_HEADERS, FakeSendgrid, Reply

KEY_ENV = "MIGCTL_TEST_SENDGRID_KEY"
CANARY = "SG.canary-api-key.9b2f4e7d"
NOW = 1_700_000_000.0


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSendgrid]:
    monkeypatch.setenv(KEY_ENV, CANARY)
    with FakeSendgrid(api_key=CANARY) as fake:
        yield fake


def provider_for(url: str, **settings: object) -> SendgridProvider:
    config = make_config("sendgrid", sendgrid={"api_key_env": KEY_ENV, "host": url, **settings})
    return SendgridProvider(config, clock=lambda: NOW)


def send(server: FakeSendgrid, **settings: object) -> SendResult:
    with provider_for(server.url, **settings) as provider:
        return provider.send(make_email())


def test_payload_shape_and_message_id(server: FakeSendgrid) -> None:
    email = make_email()
    result = send(server)
    assert result.status is SendStatus.SENT
    (payload,) = server.requests
    assert server.auth_headers == [f"Bearer {CANARY}"]
    assert payload["personalizations"] == [{"to": [{"email": email.to}]}]
    assert payload["from"] == {"email": "notices@platform.example", "name": "Platform Team"}
    assert payload["reply_to"] == {"email": "support@platform.example"}
    assert payload["subject"] == email.subject
    assert payload["content"] == [
        {"type": "text/plain", "value": email.text},
        {"type": "text/html", "value": email.html},
    ]
    assert payload["custom_args"] == {"migctl_notice": email.key}
    assert payload["headers"] == {
        "Message-ID": email.message_id,
        "X-Migctl-Notice": email.key,
        "X-Migctl-Migration": "email-delivery-changes",
    }
    assert not {h.lower() for h in payload["headers"]} & RESERVED_HEADERS
    assert result.provider_message_id and len(result.provider_message_id) == 22


def test_recipient_error_fails_that_notice(server: FakeSendgrid) -> None:
    body = {
        "errors": [
            {
                "message": "Does not contain a valid address.",
                "field": "personalizations.0.to.0.email",
            }
        ]
    }
    server.script(Reply(400, body=body))
    result = send(server)
    assert (result.status, result.code) == (SendStatus.PERMANENT, "sendgrid:400")
    assert result.error == "Does not contain a valid address."


def test_sender_error_stops_the_run(server: FakeSendgrid) -> None:
    body = {
        "errors": [
            {
                "message": "The from address does not match a verified Sender Identity.",
                "field": "from",
            }
        ]
    }
    server.script(Reply(400, body=body))
    with pytest.raises(ProviderConfigError, match="verified Sender Identity"):
        send(server)


@pytest.mark.parametrize("status", [401, 403])
def test_bad_key_stops_the_run(server: FakeSendgrid, status: int) -> None:
    server.script(Reply(status, body={"errors": [{"message": "access forbidden"}]}))
    with pytest.raises(ProviderConfigError, match=KEY_ENV) as info:
        send(server)
    assert info.value.code == f"sendgrid:{status}"


def test_wrong_key_really_gets_401(server: FakeSendgrid, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "SG.wrong")
    with pytest.raises(ProviderConfigError, match="401"):
        send(server)


def test_429_honours_retry_after(server: FakeSendgrid) -> None:
    server.script(Reply(429, headers={"Retry-After": "7"}))
    result = send(server)
    assert (result.status, result.code, result.retry_after) == (
        SendStatus.TRANSIENT,
        "sendgrid:429",
        7.0,
    )


def test_429_honours_rate_limit_reset(server: FakeSendgrid) -> None:
    server.script(Reply(429, headers={"X-RateLimit-Reset": str(int(NOW) + 12)}))
    assert send(server).retry_after == 12.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(server: FakeSendgrid, status: int) -> None:
    server.script(Reply(status))
    result = send(server)
    assert (result.status, result.code) == (SendStatus.TRANSIENT, f"sendgrid:{status}")
    assert server.attempts == 1


def test_timeout_after_sending_is_unknown(server: FakeSendgrid) -> None:
    """The request went out; without an answer the notice must become in_doubt, not resent."""
    server.latency = 1.0
    result = send(server, timeout=0.2)
    assert (result.status, result.code) == (SendStatus.UNKNOWN, "sendgrid:timeout")


def test_connection_refused_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, CANARY)
    with provider_for(f"http://127.0.0.1:{free_port()}") as provider:
        result = provider.send(make_email())
    assert (result.status, result.code) == (SendStatus.TRANSIENT, "sendgrid:connect")


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    # The sendgrid package would silently fall back to this one; migctl must not.
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.fallback")
    with pytest.raises(ProviderConfigError, match=KEY_ENV):
        provider_for("http://127.0.0.1:9")


def test_concurrent_sends_share_one_provider(server: FakeSendgrid) -> None:
    server.latency = 0.02
    with provider_for(server.url) as provider, ThreadPoolExecutor(4) as pool:
        emails = [make_email(key=f"k{i}", to=f"a{i}@customer.example") for i in range(20)]
        results = list(pool.map(provider.send, emails))
    assert all(r.status is SendStatus.SENT for r in results)
    assert sorted(p["custom_args"]["migctl_notice"] for p in server.requests) == sorted(
        e.key for e in emails
    )


def test_api_key_never_leaks(
    server: FakeSendgrid,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with provider_for(server.url) as provider:
        seen.append(repr(provider.send(make_email())))
        server.script(Reply(429), Reply(500), Reply(400, body={"errors": [{"message": CANARY}]}))
        seen += [repr(provider.send(make_email())) for _ in range(3)]
        server.script(Reply(401))
        with pytest.raises(ProviderConfigError) as info:
            provider.send(make_email())
    out, err = capfd.readouterr()
    seen += [str(info.value), repr(info.value.args), out, err, caplog.text]
    assert any("HEADERS" in r.getMessage() for r in caplog.records)  # debug logging really ran
    for form in (CANARY, base64.b64encode(CANARY.encode()).decode()):
        assert not any(form in text for text in seen), form


def test_retry_after_forms() -> None:
    date = format_datetime(datetime.fromtimestamp(NOW + 30, tz=UTC), usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, lambda: NOW) == 30.0
    assert retry_after_seconds({"Retry-After": "1.5"}, lambda: NOW) == 1.5
    assert retry_after_seconds({"Retry-After": "soon"}, lambda: NOW) is None
    assert retry_after_seconds({"X-RateLimit-Reset": str(NOW - 5)}, lambda: NOW) == 0.0
    assert retry_after_seconds({}, lambda: NOW) is None
