"""mime.build_raw writes exactly what build_message + as_bytes write, hostile input included.

build_raw formats the common headers and bodies itself and hands anything unusual to the
stdlib one header at a time; these tests hold it to the stdlib's bytes (the MIME boundary is
the one random part, so both sides are given the same one), and to its errors.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email import quoprimime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from migrate_cli.delivery import mime
from migrate_cli.delivery.base import OutgoingEmail
from migrate_cli.delivery.mime import RawMessage, as_bytes, build_message, build_raw
from tests.fakes.common import HOSTILE_TEXTS, bodies, make_email, parse
from tests.fuzz_settings import examples

BOUNDARY = "===============1234567890123456789=="
NOW = datetime(2016, 5, 1, 9, 30, tzinfo=UTC)

# Fragments that have tripped header and body encoders: line breaks of every kind, encoded
# words (whole, broken, with spaces), header syntax, quoting characters, non-ASCII of each
# width, spaces that fold, "=" and whitespace at QP line ends, lines around 76-78 and 998.
PIECES = [
    "\r\n",
    "\n",
    "\r",
    "\x00",
    "\t",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    " ",
    "  ",
    "\xa0",
    "\u2060",
    "=",
    "=?",
    "?=",
    "=?utf-8?q?",
    "=?UTF-8?Q?=0A?=",
    "=?UTF-8?B?UGF5?=",
    "=?ut f?q?x?=",
    "=3D",
    "Bcc: attacker@evil.example",
    "Subject: pwned",
    '"',
    "\\",
    "<",
    ">",
    ",",
    ";",
    ":",
    "(",
    ")",
    "@",
    "é",
    "Ünïcödé",
    "日本語",
    "\U0001f600",
    "\udcff"[:0],  # (no lone surrogates: neither builder can encode them)
    "x" * 75,
    "y" * 77,
    "z" * 78,
    "w" * 990,
    "Plain words",
]
text = st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=12).map("".join)
ascii_text = st.lists(
    st.sampled_from([p for p in PIECES if p.isascii()]) | st.text(st.characters(max_codepoint=127)),
    max_size=12,
).map("".join)
body = st.one_of(text, ascii_text)
addr_spec = st.from_regex(mime._ADDR_SPEC, fullmatch=True).filter(lambda a: len(a) <= 254)
address = st.one_of(
    addr_spec,
    st.sampled_from(["=?utf-8?q?x?=@b.example", "o'neil@x.io", "a+b@sub.b-c.example"]),
    st.text(max_size=12),  # mostly invalid: both builders must refuse it the same way
)
mailbox = st.one_of(address, st.builds(lambda n, a: f"{n} <{a}>", text, address))
message_id = st.one_of(
    st.from_regex(r"<?[!-;=?-~]{1,12}@[!-;=?-~]{1,12}>?", fullmatch=True),
    st.sampled_from(["<a(b)@c>", "<a@[1.2.3.4]>", '<"q"@h>', "<=?x?q?y?=@h>", "<a..b@h>"]),
)
moment = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 1, 1)),
    st.datetimes(
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        )
    ),
)
header_name = st.sampled_from(["X-Migctl-Account", "X-Migctl-Kind", "X-Migctl-a-1"])


def outcome(fn: Callable[[], bytes]) -> Any:
    """The bytes ``fn`` returns, or the kind of error it raises (and for which field)."""
    try:
        return fn()
    except Exception as exc:
        return type(exc), getattr(exc, "field", None)


def stdlib_bytes(email: OutgoingEmail, now: datetime | None) -> bytes:
    msg = build_message(email, now=now)
    msg.set_boundary(BOUNDARY)
    return as_bytes(msg)


def assert_same(email: OutgoingEmail, now: datetime | None = NOW) -> None:
    if now is None:  # the current time: freeze it, both builders must agree on the second
        now = datetime.now(UTC).replace(microsecond=0)
    expected = outcome(lambda: stdlib_bytes(email, now))
    actual = outcome(lambda: build_raw(email, now=now, boundary=BOUNDARY).data)
    assert actual == expected


def test_realistic_notice_is_byte_identical() -> None:
    assert_same(make_email())
    assert_same(make_email(test=True, reply_to=None))
    assert_same(make_email(subject="Änderung für Café ☕", text="Grüße " * 100, html="<p>日本</p>"))
    assert_same(make_email(html="<table>" + '<td style="padding:0">x</td>' * 40 + "</table>\n"))


@pytest.mark.parametrize("hostile", HOSTILE_TEXTS)
def test_hostile_text_everywhere_is_byte_identical(hostile: str) -> None:
    assert_same(
        make_email(
            subject=hostile,
            key=hostile,
            headers={"X-Migctl-Account": hostile},
            from_addr=f"{hostile} <notices@platform.example>",
            text=hostile,
            html=hostile,
        )
    )


@pytest.mark.parametrize(
    "subject",
    ["", " ", "=?utf-8?q?x?=", "=?ut f?q?x?=", "a =?x b", "x" * 989, "x" * 990, "x" * 1200],
)
def test_edge_subjects_are_byte_identical(subject: str) -> None:
    assert_same(make_email(subject=subject))


@pytest.mark.parametrize(
    "body_text",
    [
        "",
        "\n",
        "a" * 78 + "\n" + "b" * 79,  # 7bit up to the line limit, then quoted-printable
        "=" * 100,  # quoted-printable would triple it: base64
        "\x01" * 30 + "\n" + "x" * 200 + "\n" * 12,  # base64 decided on the first ten lines
        "x" * 77 + " \n" + "x" * 76 + "\t\n" + "x" * 75 + " ",  # whitespace at a soft break
        "a\rb\r\nc\x0bd\x0ce\x1cf\x85g\u2028h",
        "ümlaut " * 40,
    ],
)
def test_edge_bodies_are_byte_identical(body_text: str) -> None:
    assert_same(make_email(text=body_text, html=body_text))


@examples(300)
@given(
    subject=text,
    key=text,
    extra=st.dictionaries(header_name, text, max_size=2),
    to=address,
    from_addr=mailbox,
    reply_to=st.none() | mailbox,
    msgid=message_id,
    plain=body,
    html=body,
    test=st.booleans(),
    now=moment,
)
@example(
    subject="=?UTF-8?Q?=0A?=Bcc: x@evil.test",
    key="k",
    extra={},
    to="=?utf-8?q?x?=@b.example",
    from_addr="=?UTF-8?B?UGF5?= <a@b.example>",
    reply_to=None,
    msgid="<=?x?q?y?=@h>",
    plain="a \n" + "b" * 77 + " \n=\t",
    html="",
    test=False,
    now=datetime(99, 1, 1),
)
def test_any_notice_is_byte_identical(
    subject: str,
    key: str,
    extra: dict[str, str],
    to: str,
    from_addr: str,
    reply_to: str | None,
    msgid: str,
    plain: str,
    html: str,
    test: bool,
    now: datetime | None,
) -> None:
    email = OutgoingEmail(
        key=key,
        to=to,
        from_addr=from_addr,
        subject=subject,
        text=plain,
        html=html,
        message_id=msgid,
        reply_to=reply_to,
        headers=extra,
        test=test,
    )
    assert_same(email, now)


@examples(100)
@given(subject=text, name=text, plain=body, html=body)
def test_parsed_back_the_same_with_random_boundaries(
    subject: str, name: str, plain: str, html: str
) -> None:
    """What a mail client reads: the same headers and decoded bodies, boundaries aside."""
    email = make_email(
        subject=subject,
        key=name,
        headers={"X-Migctl-Account": name},
        from_addr=f"{name} <notices@platform.example>",
        text=plain,
        html=html,
    )
    try:
        slow = parse(as_bytes(build_message(email, now=NOW)))
    except ValueError as exc:  # e.g. "<" in the display name: refused by both
        with pytest.raises(type(exc)):
            build_raw(email, now=NOW)
        return
    raw = build_raw(email, now=NOW)
    fast = parse(raw.data)

    def headers(msg: Any) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in msg.items() if k != "Content-Type"]

    # Equal, not necessarily sensible: a From display name too long to fold (~1,000
    # characters) already makes the stdlib write a message readers mis-parse.
    assert headers(fast) == headers(slow)
    assert fast.get_content_type() == slow.get_content_type()
    assert bodies(fast) == bodies(slow)
    assert [headers(p) for p in fast.iter_parts()] == [headers(p) for p in slow.iter_parts()]
    assert raw.sender == "notices@platform.example"


def test_sender_is_the_from_addr_spec() -> None:
    raw = build_raw(make_email(from_addr='"Platform, Inc." <notices@platform.example>'))
    assert isinstance(raw, RawMessage)
    assert raw.sender == "notices@platform.example"


@pytest.mark.parametrize(
    "change",
    [
        {"to": "a@b.example, c@d.example"},
        {"from_addr": "Platform <a@b.example>, x@y.example"},
        {"reply_to": "not an address"},
        {"message_id": "no-at-sign"},
        {"headers": {"Bcc": "x"}},
        {"headers": {"X-Migctl-Notice": "other"}},
    ],
)
def test_refuses_what_build_message_refuses(change: dict[str, Any]) -> None:
    email = make_email(**change)
    with pytest.raises(ValueError) as slow:
        build_message(email)
    with pytest.raises(ValueError) as fast:
        build_raw(email)
    assert type(fast.value) is type(slow.value)
    assert str(fast.value) == str(slow.value)


def test_boundary_never_appears_in_a_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "randrange", lambda n: 42)
    taken = "=" * 15 + "42".zfill(19) + "=="
    email = make_email(text=f"--{taken}\n--{taken}.0\n", html=f"--{taken}--")
    raw = build_raw(email)
    assert f'boundary="{taken}.1"'.encode() in raw.data
    # (The stdlib's own check misses a boundary line ending in CRLF: its message would split.)
    assert bodies(parse(raw.data)) == [("text/plain", email.text), ("text/html", email.html + "\n")]


@examples(300)
@given(
    st.lists(
        st.sampled_from(["=", " ", "\t", "\n", "\r\n", "\r", "x" * 70, "é", "\x0c", "a"])
        | st.text(st.characters(max_codepoint=255), max_size=6),
        max_size=40,
    ).map("".join),
    st.sampled_from([4, 5, 6, 76, 78]),
)
@example("x" * 75 + " ", 78)
@example("x" * 76 + " ", 78)
@example("x" * 77 + " ", 78)
def test_qp_encode_matches_the_stdlib(body_text: str, maxlinelen: int) -> None:
    assert mime._qp_encode(body_text, maxlinelen) == quoprimime.body_encode(body_text, maxlinelen)
