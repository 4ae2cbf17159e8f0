"""Build RFC 5322 messages for notices, so customer text can never add or split a header."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import format_datetime

from migrate_cli.providers.base import OutgoingEmail, ProviderConfigError, SendResult, SendStatus

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


class InvalidAddressError(ValueError):
    """An address that is not exactly one plain mailbox; ``field`` says which header it was for."""

    def __init__(self, field: str, value: str, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}: {value!r} is not a valid address ({reason})")


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
    msg["Date"] = format_datetime(now or datetime.now(UTC))
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


def address_failure(provider: str, exc: InvalidAddressError) -> SendResult:
    """Turn a bad address into a result: a bad recipient fails that notice, a bad sender stops."""
    if exc.field == "To":
        return SendResult(SendStatus.PERMANENT, error=str(exc), code="migctl:invalid-recipient")
    key = "from" if exc.field == "From" else "reply_to"
    raise ProviderConfigError(
        provider, f"{exc}; set a plain address under [email] {key} in migctl.toml"
    ) from None
