"""Build RFC 5322 messages for notices, so customer text can never add or split a header."""

from __future__ import annotations

import binascii
import functools
import random
import re
import sys
from datetime import UTC, datetime
from email import policy, quoprimime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import format_datetime
from typing import NamedTuple

from migrate_cli.delivery.base import InvalidAddressError, OutgoingEmail

_MAX_LINE = 998  # RFC 5322's hard limit; 78 is only a recommendation
_UNFOLDED = policy.SMTP.clone(cte_type="7bit", max_line_length=_MAX_LINE)


class _NoticePolicy(EmailPolicy):
    """SMTP policy that leaves plain-ASCII headers on one line.

    At 78 columns the stdlib moves a long unbreakable value (our notice key) onto a continuation
    line, and parsers then read it back with a leading space. Non-ASCII values still fold at 78,
    which keeps each RFC 2047 encoded word within its 75-character limit.
    """

    def _one_line(self, name: str, value: str) -> bool:
        text = str(value)
        return text.isascii() and len(name) + 2 + len(text) <= _MAX_LINE

    def fold(self, name: str, value: str) -> str:
        if self._one_line(name, value):
            return _UNFOLDED.fold(name, value)
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if self._one_line(name, value):
            return _UNFOLDED.fold_binary(name, value)
        return super().fold_binary(name, value)


# 7bit keeps bodies quoted-printable/base64 and headers RFC 2047-encoded, so the same bytes
# are safe for SMTP servers without 8BITMIME, for SES raw sends and for .eml files.
POLICY = _NoticePolicy(linesep="\r\n", cte_type="7bit")

# C0 controls (CR, LF, NUL, TAB, VT, FF…), DEL, C1 controls (incl. NEL) and the Unicode line and
# paragraph separators: any of them could end a header line in some parser along the way.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")

# Deliberately stricter than RFC 5322: a dot-atom local part and a dotted hostname, ASCII only.
# No quoted strings, comments, display names, groups or lists can slip through.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+")
_NAME_ADDR = re.compile(r"(?P<name>[^<>]*)<(?P<addr>[^<>]*)>")
_HEADER_NAME = re.compile(r"X-Migctl-[A-Za-z0-9][A-Za-z0-9-]*")
_MESSAGE_ID = re.compile(r"<?(?P<id>[!-;=?-~]+@[!-;=?-~]+)>?")  # printable, no < > or space

NOTICE_HEADER = "X-Migctl-Notice"
TEST_HEADER = "X-Migctl-Test"
_RESERVED = {NOTICE_HEADER.lower(), TEST_HEADER.lower()}


# An RFC 2047 encoded word ("=?charset?Q?...?=") in text we put in a header would be *decoded*
# by the email package when the header is set, so "=?UTF-8?Q?=0A?=" could smuggle a line break
# into the header (Python < 3.11.10 does not refuse it when writing). A WORD JOINER after "="
# keeps the text as the reader typed it while making it no longer an encoded word.
_ENCODED_WORD = re.compile(r"=(?=\?[^?\s]*\?[bBqQ]\?)")


def clean_header_value(value: str) -> str:
    """One header's worth of plain text: no line breaks, no controls, no encoded words."""
    flat = _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()
    return _ENCODED_WORD.sub("=\u2060", flat)


def check_addr_spec(value: str, field: str = "To") -> str:
    """Return ``value`` if it is one bare ``local@domain`` address; else InvalidAddressError."""
    if not isinstance(value, str) or not value:
        raise InvalidAddressError(field, str(value), "empty")
    if len(value) > 254:
        raise InvalidAddressError(field, value, "longer than 254 characters")
    if not _ADDR_SPEC.fullmatch(value):
        raise InvalidAddressError(
            field, value, "expected one plain address like name@example.com, nothing else"
        )
    local = value.rsplit("@", 1)[0]
    if len(local) > 64:
        raise InvalidAddressError(field, value, "local part longer than 64 characters")
    return value


def parse_mailbox(value: str, field: str) -> Address:
    """Parse ``addr`` or ``Display Name <addr>`` (our own From/Reply-To, never a recipient)."""
    text = value.strip()
    match = _NAME_ADDR.fullmatch(text)
    if match:
        name = clean_header_value(match.group("name")).strip().strip('"').strip()
        addr = check_addr_spec(match.group("addr").strip(), field)
    else:
        name = ""
        addr = check_addr_spec(text, field)
    local, domain = addr.rsplit("@", 1)
    return Address(display_name=name, username=local, domain=domain)


def notice_headers(email: OutgoingEmail) -> dict[str, str]:
    """Our X-Migctl-* headers for ``email``, validated and cleaned, in a stable order."""
    headers = {NOTICE_HEADER: clean_header_value(email.key)}
    if email.test:
        headers[TEST_HEADER] = "yes"
    for name, value in email.headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header {name!r} is not allowed: only X-Migctl-* may be added")
        if name.lower() in _RESERVED:
            raise ValueError(f"header {name!r} is set by migctl itself")
        headers[name] = clean_header_value(str(value))
    return headers


class _Encoded(str):
    """A non-ASCII unstructured header value encoded by us, with every space inside the words.

    The stdlib folder can drop a space between two RFC 2047 words it writes (seen with runs of
    no-break spaces and astral characters), so the reader would see different text. Base64
    words carry the spaces in their payload; the policy writes this object as it is.
    """

    name: str
    encoded: str

    def __new__(cls, name: str, value: str) -> _Encoded:
        obj = super().__new__(cls, value)
        obj.name = name
        obj.encoded = Header(value, "utf-8", maxlinelen=76, header_name=name).encode(linesep="\n")
        return obj

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: " + self.encoded.replace("\n", policy.linesep) + policy.linesep


def _unstructured(name: str, value: str) -> str:
    return value if value.isascii() else _Encoded(name, value)


def message_id(email: OutgoingEmail) -> str:
    """The notice's Message-ID in angle brackets; ValueError if it is not one msg-id."""
    match = _MESSAGE_ID.fullmatch(email.message_id.strip())
    if not match:
        raise ValueError(f"Message-ID {email.message_id!r} is not of the form <id@host>")
    return f"<{match.group('id')}>"


def build_message(email: OutgoingEmail, *, now: datetime | None = None) -> EmailMessage:
    """Build the multipart/alternative message (text/plain then text/html) for one notice.

    Raises InvalidAddressError for a bad To/From/Reply-To and ValueError for a bad Message-ID
    or extra header name.
    """
    to = check_addr_spec(email.to, "To")
    sender = parse_mailbox(email.from_addr, "From")
    reply_to = parse_mailbox(email.reply_to, "Reply-To") if email.reply_to else None
    msgid = message_id(email)
    extra = notice_headers(email)

    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = _unstructured("Subject", clean_header_value(email.subject))
    msg["Date"] = format_datetime(now or email.date or datetime.now(UTC))
    msg["Message-ID"] = msgid
    if reply_to is not None:
        msg["Reply-To"] = reply_to
    msg["MIME-Version"] = "1.0"
    for name, value in extra.items():
        msg[name] = _unstructured(name, value)
    msg.set_content(email.text, subtype="plain", charset="utf-8", cte=_cte(email.text))
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte=_cte(email.html))
    for part in msg.iter_parts():
        # add_alternative builds each part as a whole message; MIME-Version belongs on top only.
        del part["MIME-Version"]
    return msg


def _cte(body: str) -> str | None:
    # Let the content manager pick 7bit for plain ASCII; otherwise quoted-printable, which stays
    # readable in .eml files and console output (its default would often be base64).
    return None if body.isascii() else "quoted-printable"


def as_bytes(msg: EmailMessage) -> bytes:
    """Serialise with CRLF line endings, as SMTP and SES raw sends expect."""
    return msg.as_bytes(policy=POLICY)


# ------------------------------------------------------------------ the fast path
#
# ``build_message`` + ``as_bytes`` cost ~1.6 ms of CPU per notice (header objects re-parsed by
# the header registry, a regex compiled for every boundary, generator clones), which held SES
# sends below their rate limit. ``build_raw`` writes the same bytes directly: every header whose
# value is plain enough to be written verbatim is formatted here, anything else goes through the
# stdlib policy one header at a time (so hostile text is treated exactly as before), and bodies
# use the content manager's own rules. tests/test_mime_fast.py checks it byte for byte against
# ``as_bytes(build_message(...))``.


class RawMessage(NamedTuple):
    """A serialised notice and the address it is sent from (the envelope sender)."""

    data: bytes
    sender: str


_CRLF = "\r\n"
_LF_ONLY = re.compile(r"\r\n|\r|\n")  # the generator's NLCRE: every line end becomes CRLF
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))  # as email.generator formats its boundaries
# POLICY's max_line_length (EmailPolicy's default, 78): the longest line the content manager
# sends as 7bit, and the width it wraps quoted-printable and base64 bodies to.
_BODY_LINE = POLICY.max_line_length or 78
# Dates and Message-IDs of these shapes come back from the stdlib's header parsers unchanged,
# so they are written as they are; any other value goes through the stdlib. A value holding
# "=?" never takes a verbatim path: the parsers decode what looks like an encoded word.
_DATE = re.compile(
    # Four-digit years only: the date parser reads "0099" as 1999, and the stdlib re-parses.
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} [1-9]\d{3} \d\d:\d\d:\d\d [+-]\d{4}"
)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_MSGID = re.compile(rf"<{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*>")


def _stdlib_line(name: str, value: object) -> str:
    """One header exactly as ``msg[name] = value`` and ``as_bytes`` would write it."""
    return POLICY.fold_binary(*POLICY.header_store_parse(name, value)).decode(
        "ascii", "surrogateescape"
    )


def _verbatim(name: str, value: str) -> bool:
    # Printable ASCII, single spaces, no "=?", short enough for one line: the stdlib writes
    # such a value as it is (an empty one loses the space after the colon, so it is excluded).
    return (
        value.isascii()
        and value.isprintable()
        and "=?" not in value
        and "  " not in value
        and value[:1] not in ("", " ")
        and value[-1] != " "
        and len(name) + 2 + len(value) <= _MAX_LINE
    )


def _unstructured_line(name: str, value: str) -> str:
    if _verbatim(name, value):
        return f"{name}: {value}{_CRLF}"
    if not value.isascii():
        # What the policy does with the _Encoded object build_message stores.
        return _Encoded(name, value).fold(policy=POLICY)
    return _stdlib_line(name, value)


@functools.lru_cache(maxsize=64)
def _mailbox_line(name: str, value: str) -> tuple[str, str]:
    """(header line, addr-spec) for our own From/Reply-To: one config value per run, so cached.

    Invalid values raise InvalidAddressError, which lru_cache does not store.
    """
    address = parse_mailbox(value, name)
    return _stdlib_line(name, address), address.addr_spec


# Characters quoted-printable leaves as they are, plus "=" (which becomes "=3D").
_QP_PLAIN = re.compile(r"[\t\n\r -~]*")


def _qp_encode(body: str, maxlinelen: int) -> str:
    """email.quoprimime.body_encode(body, maxlinelen), faster for plain ASCII bodies.

    Its per-character translate() took most of a notice's build time; for text that needs
    no escapes but "=", a replace() does the same. The line splitting below is the stdlib's
    (Python 3.11); tests/test_mime_fast.py compares the two.
    """
    if not body or not _QP_PLAIN.fullmatch(body):
        return quoprimime.body_encode(body, maxlinelen)
    body = body.replace("=", "=3D")
    soft_break = "=\n"
    maxlinelen1 = maxlinelen - 1  # room for the "=" of a soft line break
    encoded: list[str] = []
    append = encoded.append
    for line in body.splitlines():
        start = 0
        laststart = len(line) - 1 - maxlinelen
        while start <= laststart:
            stop = start + maxlinelen1
            # Never split an escape sequence.
            if line[stop - 2] == "=":
                append(line[start : stop - 1])
                start = stop - 2
            elif line[stop - 1] == "=":
                append(line[start:stop])
                start = stop - 1
            else:
                append(line[start:stop] + "=")
                start = stop
        # Whitespace at the end of a line must be quoted (or followed by a soft break).
        if line and line[-1] in " \t":
            room = start - laststart
            quoted = f"={ord(line[-1]):02X}"
            if room >= 3:
                tail = quoted
            elif room == 2:
                tail = line[-1] + soft_break
            else:
                tail = soft_break + quoted
            append(line[start:-1] + tail)
        else:
            append(line[start:])
    if body[-1] in "\r\n":
        append("")
    return "\n".join(encoded)


def _encode_body(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, payload) as ``set_content(text, charset="utf-8", cte=...)``.

    The same heuristics as email.contentmanager._encode_text under POLICY: 7bit when ASCII
    lines fit in max_line_length, otherwise quoted-printable or base64 (whichever is shorter
    on the first ten lines); non-ASCII text is always quoted-printable (``_cte``).
    """
    maxlen = _BODY_LINE
    lines = text.encode("utf-8").splitlines()
    cte = _cte(text)
    if cte is None:
        if max(map(len, lines), default=0) <= maxlen:
            return "7bit", (b"\n".join(lines) + b"\n").decode("ascii")
        sniff = b"\r\n".join(lines[:10]) + b"\r\n"
        sniff_qp = _qp_encode(sniff.decode("latin-1"), maxlen)
        if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
            cte = "base64"
        else:
            cte = "quoted-printable"
            if len(lines) <= 10:
                return cte, sniff_qp
    if cte == "quoted-printable":
        return cte, _qp_encode((b"\n".join(lines) + b"\n").decode("latin-1"), maxlen)
    data = b"\r\n".join(lines) + b"\r\n"
    step = maxlen // 4 * 3
    encoded = [
        binascii.b2a_base64(data[i : i + step]).decode("ascii") for i in range(0, len(data), step)
    ]
    return "base64", "".join(encoded)


def _text_part(subtype: str, text: str) -> str:
    cte, payload = _encode_body(text)
    # The generator turns every line end into CRLF; payloads only ever hold "\n" (splitlines
    # consumed any "\r"), so the cheap replace is the usual case.
    payload = _LF_ONLY.sub(_CRLF, payload) if "\r" in payload else payload.replace("\n", _CRLF)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}'
        f"Content-Transfer-Encoding: {cte}{_CRLF}{_CRLF}{payload}"
    )


def _boundary(parts: str) -> str:
    # email.generator's boundary, but checked with a plain substring test: stricter than its
    # line-anchored regex, and no regex to compile for every message.
    base = "=" * 15 + str(random.randrange(sys.maxsize)).zfill(_BOUNDARY_WIDTH) + "=="
    boundary, counter = base, 0
    while "--" + boundary in parts:
        boundary = f"{base}.{counter}"
        counter += 1
    return boundary


def build_raw(
    email: OutgoingEmail, *, now: datetime | None = None, boundary: str | None = None
) -> RawMessage:
    """The bytes ``as_bytes(build_message(email, now=now))`` gives, at a fraction of the cost.

    Raises what build_message raises, in the same order. ``boundary`` fixes the MIME boundary
    (for tests); by default a random one is chosen, as the email package does.
    """
    to = check_addr_spec(email.to, "To")
    from_line, sender = _mailbox_line("From", email.from_addr)
    reply_line = _mailbox_line("Reply-To", email.reply_to)[0] if email.reply_to else None
    msgid = message_id(email)
    extra = notice_headers(email)
    date = format_datetime(now or email.date or datetime.now(UTC))

    head = [
        from_line,
        f"To: {to}{_CRLF}" if "=?" not in to else _stdlib_line("To", to),
        _unstructured_line("Subject", clean_header_value(email.subject)),
        f"Date: {date}{_CRLF}" if _DATE.fullmatch(date) else _stdlib_line("Date", date),
        f"Message-ID: {msgid}{_CRLF}"
        if _PLAIN_MSGID.fullmatch(msgid) and "=?" not in msgid
        else _stdlib_line("Message-ID", msgid),
    ]
    if reply_line is not None:
        head.append(reply_line)
    head.append(f"MIME-Version: 1.0{_CRLF}")
    head.extend(_unstructured_line(name, value) for name, value in extra.items())

    parts = [_text_part("plain", email.text), _text_part("html", email.html)]
    if boundary is None:
        boundary = _boundary(_CRLF.join(parts))
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"{_CRLF}')
    delimiter = f"{_CRLF}--{boundary}{_CRLF}"
    body = f"--{boundary}{_CRLF}{delimiter.join(parts)}{_CRLF}--{boundary}--{_CRLF}"
    return RawMessage(
        "".join(head).encode("ascii", "surrogateescape") + b"\r\n" + body.encode("ascii"), sender
    )
