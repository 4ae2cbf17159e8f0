"""Helpers shared by provider tests: free ports, configs, sample notices, parsing."""

from __future__ import annotations

import socket
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from migrate_cli.config import Config, EmailConfig
from migrate_cli.delivery.base import OutgoingEmail

# Subjects (and account names) an attacker might choose, each trying to add a Bcc header.
HOSTILE_TEXTS = [
    "Hello\r\nBcc: attacker@evil.example",
    "Hello\nBcc: attacker@evil.example",
    "Hello\rBcc: attacker@evil.example",
    "Hello\u2028Bcc: attacker@evil.example",
    "Hello\u2029Bcc: attacker@evil.example",
    "Hello\x00\r\n\r\nBcc: attacker@evil.example",
    "Hello\x85Bcc: attacker@evil.example",
    "Acme\r\n Bcc: attacker@evil.example",  # folding-style continuation
    "Ünïcödé \r\nBcc: attacker@evil.example",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_config(
    provider: str = "console", environment: str = "development", **sections: Any
) -> Config:
    """A Config for ``provider``; keyword arguments replace [email] fields or provider tables.

    ``smtp={"port": 2525}`` replaces fields of the smtp table, ``from_addr="x@y"`` of [email].
    """
    email: dict[str, Any] = {
        "provider": provider,
        "from_addr": "Platform Team <notices@platform.example>",
        **sections,
    }
    return Config(environment=environment, email=EmailConfig(**email))


def make_email(**overrides: Any) -> OutgoingEmail:
    """A realistic notice; override any field."""
    fields: dict[str, Any] = {
        "key": "email-delivery-changes:admin@customer.example:reminder:2016-05-01",
        "to": "admin@customer.example",
        "from_addr": "Platform Team <notices@platform.example>",
        "subject": "Action required: email delivery changes for Acme",
        "text": "Hello,\n\nPlease migrate acme-prod before 2016-06-01.\n\nÜnïcödé text.\n",
        "html": "<p>Hello,</p><p>Please migrate <b>acme-prod</b> before 2016-06-01.</p>",
        "message_id": "<notice-1.2016@platform.example>",
        "reply_to": "support@platform.example",
        "headers": {"X-Migctl-Migration": "email-delivery-changes"},
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


def parse(raw: bytes) -> EmailMessage:
    """Parse a message the way a receiving mail client would."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def header_names(raw: bytes) -> list[str]:
    """The top-level header names of ``raw``, read straight from the bytes (lower-case)."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii", "replace")
    names = []
    for line in head.split("\n"):
        if line and not line[0].isspace():
            names.append(line.split(":", 1)[0].strip().lower())
    return names


def bodies(msg: EmailMessage) -> list[tuple[str, str]]:
    """(content type, text) of each alternative, line endings normalised as a reader sees them."""
    return [
        (part.get_content_type(), part.get_content().replace("\r\n", "\n"))
        for part in msg.iter_parts()
    ]
