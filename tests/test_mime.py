"""MIME building: structure, headers, and that customer text can never add a header."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate_cli.delivery.mime import (
    InvalidAddressError,
    as_bytes,
    build_message,
    check_addr_spec,
    clean_header_value,
)
from tests.fakes.common import HOSTILE_TEXTS, bodies, header_names, make_email, parse

EXPECTED_HEADERS = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "x-migctl-notice",
    "x-migctl-migration",
    "content-type",
]


def test_structure_and_headers() -> None:
    email = make_email()
    raw = as_bytes(build_message(email, now=datetime(2016, 5, 1, 9, 30, tzinfo=UTC)))
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert header_names(raw) == EXPECTED_HEADERS
    msg = parse(raw)
    assert msg["From"].addresses[0].addr_spec == "notices@platform.example"
    assert msg["From"].addresses[0].display_name == "Platform Team"
    assert msg["To"] == "admin@customer.example"
    assert msg["Subject"] == email.subject
    assert msg["Date"] == "Sun, 01 May 2016 09:30:00 +0000"
    assert msg["Message-ID"] == "<notice-1.2016@platform.example>"
    assert msg["Reply-To"] == "support@platform.example"
    assert msg["MIME-Version"] == "1.0"
    assert msg["X-Migctl-Notice"] == email.key
    assert msg["X-Migctl-Migration"] == "email-delivery-changes"
    assert "X-Migctl-Test" not in msg
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all("MIME-Version" not in p for p in parts)
    assert bodies(msg) == [("text/plain", email.text), ("text/html", email.html + "\n")]


def test_bytes_are_7bit_for_any_unicode() -> None:
    email = make_email(subject="Änderung für Café ☕", text="Grüße " * 100, html="<p>日本語</p>")
    raw = as_bytes(build_message(email))
    raw.decode("ascii")  # no 8-bit bytes anywhere: safe for any relay
    msg = parse(raw)
    assert msg["Subject"] == "Änderung für Café ☕"
    assert bodies(msg) == [("text/plain", "Grüße " * 100 + "\n"), ("text/html", "<p>日本語</p>\n")]


def test_test_header_and_no_reply_to() -> None:
    msg = parse(as_bytes(build_message(make_email(test=True, reply_to=None))))
    assert msg["X-Migctl-Test"] == "yes"
    assert "Reply-To" not in msg


@pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
def test_hostile_subject_never_adds_a_header(hostile: str) -> None:
    raw = as_bytes(build_message(make_email(subject=hostile)))
    assert "bcc" not in header_names(raw)
    msg = parse(raw)
    assert "Bcc" not in msg
    assert len(msg.get_all("Subject") or []) == 1
    subject = str(msg["Subject"])
    assert "Bcc: attacker@evil.example" in subject  # the text stays, as harmless words
    assert not any(ch in subject for ch in "\r\n\x00\u2028\u2029\x85")


@pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
def test_hostile_extra_header_value_and_key_stay_one_header(hostile: str) -> None:
    email = make_email(key=hostile, headers={"X-Migctl-Account": hostile})
    raw = as_bytes(build_message(email))
    assert "bcc" not in header_names(raw)
    msg = parse(raw)
    assert "\n" not in msg["X-Migctl-Account"] and "\n" not in msg["X-Migctl-Notice"]


@pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
def test_hostile_display_name_in_from_stays_in_from(hostile: str) -> None:
    raw = as_bytes(build_message(make_email(from_addr=f"{hostile} <notices@platform.example>")))
    assert "bcc" not in header_names(raw)
    assert parse(raw)["From"].addresses[0].addr_spec == "notices@platform.example"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_subject_gives_exactly_the_expected_headers(subject: str) -> None:
    raw = as_bytes(build_message(make_email(subject=subject)))
    assert header_names(raw) == EXPECTED_HEADERS
    assert parse(raw)["Subject"] == clean_header_value(subject)


@pytest.mark.parametrize(
    "to",
    [
        "a@b.example, c@d.example",
        "a@b.example;c@d.example",
        "Evil <a@b.example>",
        '"a@b.example" <c@d.example>',
        "a@b.example\r\nBcc: c@d.example",
        "a@b.example\n",
        " a@b.example",
        "a@b",
        "@b.example",
        "a@",
        "a..b@c.example",
        "a@b.example (comment)",
        "undisclosed-recipients:;",
        "a@-b.example",
        "",
        "ä@b.example",
        "a" * 65 + "@b.example",
    ],
)
def test_to_must_be_exactly_one_plain_address(to: str) -> None:
    with pytest.raises(InvalidAddressError) as info:
        build_message(make_email(to=to))
    assert info.value.field == "To"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("to", ["a@b.example", "first.last+tag@sub.b-c.example", "o'neil@x.io"])
def test_plain_addresses_are_accepted(to: str) -> None:
    assert check_addr_spec(to) == to
    assert parse(as_bytes(build_message(make_email(to=to))))["To"] == to


@pytest.mark.parametrize("name", ["Bcc", "X-Other", "X-Migctl", "X-Migctl-Bad Name", "Subject"])
def test_only_our_x_headers_may_be_added(name: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        build_message(make_email(headers={name: "v"}))


def test_our_own_headers_cannot_be_overridden() -> None:
    with pytest.raises(ValueError, match="set by migctl"):
        build_message(make_email(headers={"X-Migctl-Notice": "other"}))


@pytest.mark.parametrize("bad", ["no-at-sign", "<a@b> <c@d>", "<a b@c>", "a@b\r\nX: y"])
def test_bad_message_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        build_message(make_email(message_id=bad))


def test_message_id_without_brackets_gets_them() -> None:
    assert build_message(make_email(message_id="abc@host.example"))["Message-ID"] == (
        "<abc@host.example>"
    )


def test_bad_from_is_reported_as_from() -> None:
    with pytest.raises(InvalidAddressError) as info:
        build_message(make_email(from_addr="Platform <a@b.example>, x@y.example"))
    assert info.value.field == "From"
