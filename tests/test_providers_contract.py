"""One contract, every provider: what is sent is what arrives, and text cannot add headers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import boto3
import pytest

from migrate_cli.config import Config
from migrate_cli.delivery import memory
from migrate_cli.delivery.base import OutgoingEmail, SendResult
from migrate_cli.delivery.memory import MemoryProvider
from migrate_cli.delivery.registry import (
    Provider,
    ProviderConfigError,
    SendStatus,
    available_providers,
)
from tests.fakes.common import HOSTILE_TEXTS, make_config, make_email
from tests.fakes.harness import Harness, harness
from tests.fakes.ses_server import DUMMY_AWS_ENV, moto_server

PROVIDERS = ["console", "file", "memory", "null", "smtp", "ses", "sendgrid"]
SENDER = "notices@platform.example"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    saved = {k: os.environ.get(k) for k in DUMMY_AWS_ENV}
    os.environ.update(DUMMY_AWS_ENV)
    try:
        with moto_server() as endpoint:
            client = boto3.client("sesv2", region_name="us-east-1", endpoint_url=endpoint)
            client.create_email_identity(EmailIdentity=SENDER)
            yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(params=PROVIDERS)
def h(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    for key, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    with harness(
        request.param,
        tmp_path,
        lambda: request.getfixturevalue("moto_endpoint"),
        monkeypatch.setenv,
    ) as made:
        yield made


def send_one(h: Harness, **overrides: object) -> SendStatus:
    with h.provider() as provider:
        result = provider.send(make_email(**overrides))
    return result.status


class TestProviderContract:
    def test_registry_name_matches_class(self, h: Harness) -> None:
        provider = h.provider()
        assert isinstance(provider, Provider)
        assert provider.name == h.name
        assert h.name in available_providers()

    def test_sent_message_arrives_intact(self, h: Harness) -> None:
        email = make_email()
        with h.provider() as provider:
            result = provider.send(email)
        assert result.status is SendStatus.SENT, result
        assert result.error is None
        if not h.delivers:
            assert h.deliveries() == []
            return
        assert result.provider_message_id
        (got,) = h.deliveries()
        if got.recipients:  # providers with an envelope (SMTP, SES, SendGrid)
            assert got.recipients == [email.to]
        assert got.headers["to"] == email.to
        assert got.headers["from"] == "Platform Team <notices@platform.example>"
        assert got.headers["subject"] == email.subject
        assert got.headers["reply-to"] == "support@platform.example"
        assert got.headers["message-id"] == email.message_id
        assert got.headers["x-migctl-notice"] == email.key
        assert got.headers["x-migctl-migration"] == "email-delivery-changes"
        assert "x-migctl-test" not in got.headers
        assert [kind for kind, _ in got.bodies] == ["text/plain", "text/html"]
        assert got.bodies[0][1].rstrip("\n") == email.text.rstrip("\n")
        assert got.bodies[1][1].rstrip("\n") == email.html
        assert "bcc" not in got.header_names and "cc" not in got.header_names

    def test_test_sample_is_marked(self, h: Harness) -> None:
        assert send_one(h, test=True) is SendStatus.SENT
        if h.delivers:
            (got,) = h.deliveries()
            assert got.headers["x-migctl-test"] == "yes"

    @pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
    def test_hostile_text_never_adds_a_header(self, h: Harness, hostile: str) -> None:
        account_name = f"Acme {hostile}"
        status = send_one(
            h,
            subject=f"Action required for {account_name}",
            headers={"X-Migctl-Account": account_name},
            text=f"Account: {account_name}\n",
            html=f"<p>Account: {account_name}</p>",
        )
        assert status is SendStatus.SENT
        if not h.delivers:
            return
        (got,) = h.deliveries()
        assert "bcc" not in got.header_names
        assert got.header_names.count("subject") == 1
        assert got.recipients in ([], ["admin@customer.example"])
        for name in ("subject", "x-migctl-account"):
            value = got.headers[name]
            assert "Bcc: attacker@evil.example" in value
            assert not any(ch in value for ch in "\r\n\x00\u2028\u2029\x85")

    @pytest.mark.parametrize(
        "to", ["admin@customer.example, attacker@evil.example", "Evil <attacker@evil.example>"]
    )
    def test_bad_recipient_fails_that_notice_only(self, h: Harness, to: str) -> None:
        if not h.delivers:
            # The benchmark's null provider builds nothing, so it accepts anything: by design.
            with h.provider() as provider:
                assert provider.send(make_email(to=to)).status is SendStatus.SENT
            return
        with h.provider() as provider:
            bad = provider.send(make_email(to=to))
            good = provider.send(make_email())
        assert bad.status is SendStatus.PERMANENT
        assert bad.code == "migctl:invalid-recipient"
        assert good.status is SendStatus.SENT
        assert len(h.deliveries()) == 1

    def test_bad_sender_stops_the_run(self, h: Harness) -> None:
        if not h.delivers:
            with h.provider() as provider:
                bad = make_email(from_addr="notices@platform.example, x@evil.example")
                assert provider.send(bad).status is SendStatus.SENT
            return
        with pytest.raises(ProviderConfigError, match="from"), h.provider() as provider:
            provider.send(make_email(from_addr="notices@platform.example, x@evil.example"))
        assert h.deliveries() == []

    def test_reused_for_many_sends(self, h: Harness) -> None:
        with h.provider() as provider:
            keys = [f"m:admin{i}@customer.example:reminder:1" for i in range(3)]
            results = [
                provider.send(make_email(key=k, to=f"admin{i}@customer.example"))
                for i, k in enumerate(keys)
            ]
        assert [r.status for r in results] == [SendStatus.SENT] * 3
        if h.delivers:
            got = h.deliveries()
            assert sorted(d.headers["x-migctl-notice"] for d in got) == sorted(keys)

    def test_production_refuses_development_providers(self, h: Harness) -> None:
        config = h.config.model_copy(update={"environment": "production"})
        if h.name in ("console", "file", "memory", "null"):
            with pytest.raises(ProviderConfigError, match="production"):
                h.provider(config)
        else:
            assert h.provider(config).name == h.name


def test_file_provider_names_cannot_escape_and_are_private(tmp_path: Path) -> None:
    from migrate_cli.delivery.file import FileProvider, eml_filename

    directory = tmp_path / "out"
    provider = FileProvider(make_config("file", file={"directory": directory}))
    keys = ["../../etc/passwd", "/abs/path", "..", "a\x00b", "same", "same?", ".hidden"]
    with provider:
        for key in keys:
            assert provider.send(make_email(key=key)).status is SendStatus.SENT
        provider.send(make_email(key="same", subject="second"))  # replaces, never duplicates
    files = sorted(directory.iterdir())
    assert len(files) == len(keys)
    assert all(f.parent == directory and not f.name.startswith(".") for f in files)
    assert len({eml_filename(k) for k in keys}) == len(keys)
    assert (directory.stat().st_mode & 0o777) == 0o700
    assert all((f.stat().st_mode & 0o777) == 0o600 for f in files)
    assert b"Subject: second" in (directory / eml_filename("same")).read_bytes()
    assert list(tmp_path.glob("**/.tmp-*")) == []


# ---------------------------------------------------------------- the send() template, read back
# The memory provider keeps what was sent, so these read like the contract itself.


@pytest.fixture
def outbox() -> Iterator[list[memory.Sent]]:
    memory.clear()
    yield memory.outbox
    memory.clear()


class Flaky(MemoryProvider):
    """The memory provider with a deliver hook that fails the way it is told to."""

    delivery_errors = (TimeoutError,)

    def __init__(self, config: Config, failure: BaseException | None) -> None:
        super().__init__(config)
        self.failure = failure

    def deliver(self, message: EmailMessage, email: OutgoingEmail) -> str:
        if self.failure is not None:
            raise self.failure
        return super().deliver(message, email)

    def classify(self, exc: Exception, message: EmailMessage) -> SendResult:
        assert message["To"] == "admin@customer.example"  # the message that failed
        return SendResult(SendStatus.UNKNOWN, error=str(exc), code="flaky:timeout")


class TestSendTemplate:
    def test_what_was_sent_is_the_notice(self, outbox: list[memory.Sent]) -> None:
        email = make_email(test=True)
        with MemoryProvider(make_config("memory")) as provider:
            result = provider.send(email)
        assert result.status is SendStatus.SENT
        (sent,) = outbox
        assert sent.email is email
        assert result.provider_message_id == f"memory:{email.message_id.strip('<>')}"
        assert sent.message["To"] == "admin@customer.example"
        assert sent.message["Subject"] == email.subject
        assert sent.message["X-Migctl-Notice"] == email.key
        assert sent.message["X-Migctl-Test"] == "yes"
        assert [p.get_content_type() for p in sent.message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]

    def test_a_bad_recipient_fails_before_anything_is_delivered(
        self, outbox: list[memory.Sent]
    ) -> None:
        with MemoryProvider(make_config("memory")) as provider:
            result = provider.send(make_email(to="a@x.example, b@y.example"))
        assert (result.status, result.code) == (SendStatus.PERMANENT, "migctl:invalid-recipient")
        assert outbox == []

    def test_a_bad_reply_to_stops_the_run(self, outbox: list[memory.Sent]) -> None:
        provider = MemoryProvider(make_config("memory"))
        with pytest.raises(ProviderConfigError, match=r"\[email\] reply_to"):
            provider.send(make_email(reply_to="support@platform.example\r\nBcc: x@evil.example"))
        assert outbox == []

    def test_a_listed_delivery_error_is_classified(self, outbox: list[memory.Sent]) -> None:
        result = Flaky(make_config("memory"), TimeoutError("no answer")).send(make_email())
        assert result == SendResult(SendStatus.UNKNOWN, error="no answer", code="flaky:timeout")
        assert outbox == []

    def test_a_configuration_error_is_never_swallowed(self, outbox: list[memory.Sent]) -> None:
        failure = ProviderConfigError("flaky", "bad credentials")
        with pytest.raises(ProviderConfigError, match="bad credentials"):
            Flaky(make_config("memory"), failure).send(make_email())

    def test_an_unlisted_error_is_a_bug_and_propagates(self, outbox: list[memory.Sent]) -> None:
        with pytest.raises(KeyError):
            Flaky(make_config("memory"), KeyError("oops")).send(make_email())

    def test_workers_sending_at_once_lose_nothing(self, outbox: list[memory.Sent]) -> None:
        config = make_config("memory")
        emails = [make_email(key=f"k{i}", to=f"admin{i}@customer.example") for i in range(200)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda e: MemoryProvider(config).send(e), emails))
        assert {r.status for r in results} == {SendStatus.SENT}
        assert sorted(s.email.key for s in outbox) == sorted(e.key for e in emails)
        memory.clear()
        assert memory.sent() == []
