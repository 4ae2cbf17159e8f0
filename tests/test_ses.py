"""SES provider against moto's server mode, and a local SES endpoint for failures."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrate_cli.delivery.base import ProviderConfigError, SendStatus
from migrate_cli.delivery.mime import as_bytes, build_message
from migrate_cli.delivery.ses import TAG_NAME, SesProvider, ses_tag_value
from tests.fakes.common import bodies, free_port, make_config, make_email, parse
from tests.fakes.ses_server import (
    DUMMY_AWS_ENV,
    FakeSes,
    SesReply,
    isolate_aws,
    moto_with_dummy_credentials,
    sent_raw_messages,
)

SENDER = "notices@platform.example"
TAG_VALUE = re.compile(r"[A-Za-z0-9_-]{1,256}")


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_with_dummy_credentials() as endpoint:
        yield endpoint


@pytest.fixture
def fake() -> Iterator[FakeSes]:
    with FakeSes() as server:
        yield server


def ses(endpoint: str, **settings: object) -> SesProvider:
    return SesProvider(make_config("ses", ses={"endpoint_url": endpoint, **settings}))


def test_send_through_moto_and_read_it_back(moto: str) -> None:
    boto3.client("sesv2", region_name="us-east-1", endpoint_url=moto).create_email_identity(
        EmailIdentity=SENDER
    )
    email = make_email()
    with ses(moto) as provider:
        result = provider.send(email)
    assert result.status is SendStatus.SENT
    (stored,) = [m for m in sent_raw_messages(moto) if m["id"] == result.provider_message_id]
    assert stored["source"] == SENDER
    assert set(stored["destinations"]) == {email.to}
    msg = parse(stored["raw_data"].encode())
    assert msg["To"] == email.to
    assert msg["X-Migctl-Notice"] == email.key
    assert msg["Message-ID"] == email.message_id
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_unverified_sender_in_moto_is_a_config_error(moto: str) -> None:
    provider = ses(moto)
    with pytest.raises(ProviderConfigError, match="not a verified SES identity") as info, provider:
        provider.send(make_email(from_addr="someone@unverified.example"))
    assert info.value.code == "ses:MessageRejected"


def test_request_shape(fake: FakeSes) -> None:
    email = make_email()
    with ses(fake.url, configuration_set="migctl-notices") as provider:
        result = provider.send(email)
    assert result.status is SendStatus.SENT
    assert result.provider_message_id and result.provider_message_id.startswith("fake-")
    (request,) = fake.requests
    assert request.path == "/v2/email/outbound-emails"
    assert request.body["FromEmailAddress"] == SENDER
    assert request.body["Destination"] == {"ToAddresses": [email.to]}
    assert request.body["ConfigurationSetName"] == "migctl-notices"
    (tag,) = request.body["EmailTags"]
    assert tag["Name"] == TAG_NAME and TAG_VALUE.fullmatch(tag["Value"])
    assert parse(request.raw_message)["X-Migctl-Notice"] == email.key
    assert "ConfigurationSetName" not in _one_request_body(fake.url)


def test_raw_message_is_what_build_message_writes(fake: FakeSes) -> None:
    """SES sends mime.build_raw's bytes: the stdlib builder's, apart from boundary and date."""
    email = make_email(subject="Änderung für Café ☕", html="<p>" + "x" * 120 + "</p>")
    with ses(fake.url) as provider:
        provider.send(email)
    (request,) = fake.requests
    sent = parse(request.raw_message)
    built = parse(as_bytes(build_message(email)))
    assert [(k, str(v)) for k, v in sent.items() if k not in ("Date", "Content-Type")] == [
        (k, str(v)) for k, v in built.items() if k not in ("Date", "Content-Type")
    ]
    assert bodies(sent) == bodies(built)
    assert request.raw_message.count(b"\r\n") == request.raw_message.count(b"\n")  # CRLF only


def test_client_side_parameter_validation_is_off(fake: FakeSes) -> None:
    # send() builds every request itself; validating it again cost CPU on each send. (The
    # client's meta.config does not show the setting, so check what it does.)
    with ses(fake.url) as provider:
        provider.client.send_email(FromEmailAddress=42, Content={"Raw": {"Data": b"x"}})
    (request,) = fake.requests  # with validation on, botocore would refuse the int
    assert request.body["FromEmailAddress"] == 42


def _one_request_body(url: str) -> dict[str, object]:
    with FakeSes() as other, ses(other.url) as provider:
        provider.send(make_email())
        return other.requests[0].body


def test_throttling_is_transient_and_sent_exactly_once(fake: FakeSes) -> None:
    fake.always(SesReply(429, "TooManyRequestsException", "Too Many Requests"))
    with ses(fake.url) as provider:
        result = provider.send(make_email())
    assert (result.status, result.code) == (SendStatus.TRANSIENT, "ses:TooManyRequestsException")
    assert len(fake.requests) == 1  # botocore made no retry of its own


NOT_VERIFIED = (
    "Email address is not verified. The following identities failed the check in region "
    "US-EAST-1: {}"
)


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (SesReply(429, "TooManyRequestsException", "Too Many Requests"), SendStatus.TRANSIENT),
        (SesReply(400, "Throttling", "Maximum sending rate exceeded."), SendStatus.TRANSIENT),
        (SesReply(400, "ThrottlingException", "Rate exceeded"), SendStatus.TRANSIENT),
        (SesReply(500, "InternalFailure", "oops"), SendStatus.TRANSIENT),
        (SesReply(503, "ServiceUnavailable", "later"), SendStatus.TRANSIENT),
        (SesReply(400, "SomethingNewException", "who knows"), SendStatus.TRANSIENT),
        (SesReply(400, "MessageRejected", "Address blacklisted."), SendStatus.PERMANENT),
        (SesReply(400, "BadRequestException", "Illegal address"), SendStatus.PERMANENT),
    ],
)
def test_per_message_outcomes(fake: FakeSes, reply: SesReply, status: SendStatus) -> None:
    fake.always(reply)
    with ses(fake.url) as provider:
        result = provider.send(make_email())
    assert (result.status, result.code) == (status, f"ses:{reply.error_code}")
    assert result.error and reply.message in result.error
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("reply", "hint"),
    [
        (SesReply(400, "MessageRejected", NOT_VERIFIED.format(SENDER)), "not a verified"),
        (
            SesReply(400, "MessageRejected", NOT_VERIFIED.format("admin@customer.example")),
            "sandbox",
        ),
        (SesReply(400, "AccountSuspendedException", "suspended"), "suspended"),
        (SesReply(400, "SendingPausedException", "paused"), "paused"),
        (SesReply(400, "MailFromDomainNotVerifiedException", "nope"), "MAIL FROM"),
        (SesReply(400, "LimitExceededException", "Daily message quota exceeded."), "quota"),
        (SesReply(403, "UnrecognizedClientException", "bad token"), "credentials"),
        (SesReply(403, "InvalidClientTokenId", "bad key id"), "credentials"),
        (SesReply(403, "SignatureDoesNotMatch", "bad secret"), "credentials"),
        (SesReply(403, "AccessDeniedException", "not allowed"), "ses:SendEmail"),
        (SesReply(404, "NotFoundException", "config set missing"), "configuration_set"),
    ],
)
def test_setup_problems_stop_the_run(fake: FakeSes, reply: SesReply, hint: str) -> None:
    fake.always(reply)
    with pytest.raises(ProviderConfigError, match=hint) as info, ses(fake.url) as provider:
        provider.send(make_email())
    assert info.value.code == f"ses:{reply.error_code}"
    assert len(fake.requests) == 1


def test_read_timeout_is_unknown_and_not_retried() -> None:
    """SES may have accepted it: in doubt (never resent), and boto3 made one request only."""
    with FakeSes(latency=1.0) as slow, ses(slow.url, timeout=0.2) as provider:
        result = provider.send(make_email())
        assert result.status is SendStatus.UNKNOWN
        assert result.code == "ses:ReadTimeoutError"
        assert len(slow.requests) == 1


def test_connection_refused_is_transient() -> None:
    with ses(f"http://127.0.0.1:{free_port()}", timeout=1.0) as provider:
        result = provider.send(make_email())
    assert (result.status, result.code) == (SendStatus.TRANSIENT, "ses:EndpointConnectionError")


def test_missing_credentials_is_a_config_error(
    fake: FakeSes, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in (
        *DUMMY_AWS_ENV,
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        if key != "AWS_DEFAULT_REGION":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ProviderConfigError, match="credentials"), ses(fake.url) as provider:
        provider.send(make_email())
    assert fake.requests == []


def test_sdk_retries_are_off(fake: FakeSes) -> None:
    with ses(fake.url) as provider:
        assert provider.client.meta.config.retries["total_max_attempts"] == 1


def test_invalid_recipient_is_never_sent(fake: FakeSes) -> None:
    with ses(fake.url) as provider:
        result = provider.send(make_email(to="a@b.example, c@d.example"))
    assert result.status is SendStatus.PERMANENT
    assert fake.requests == []


@given(st.text(max_size=400))
def test_tag_values_are_always_valid_and_distinct(key: str) -> None:
    value = ses_tag_value(key)
    assert TAG_VALUE.fullmatch(value)
    assert ses_tag_value(key + "x") != value
    assert ses_tag_value(key) == value
