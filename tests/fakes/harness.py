"""One harness per provider: build it against a local target and read back what it delivered."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate_cli.config import Config
from migrate_cli.delivery import memory
from migrate_cli.delivery.mime import as_bytes
from migrate_cli.delivery.registry import Provider, provider_class
from tests.fakes.common import bodies, header_names, make_config, parse
from tests.fakes.sendgrid_server import FakeSendgrid
from tests.fakes.ses_server import sent_raw_messages
from tests.fakes.smtp_server import SmtpServer

SENDGRID_KEY_ENV = "MIGCTL_TEST_SENDGRID_KEY"
SENDGRID_KEY = "SG.canary-sendgrid-key-3f9a1c"


@dataclass
class Delivered:
    """One delivered message, normalised across providers."""

    recipients: list[str]
    header_names: list[str]  # lower-case, as they would appear on the wire
    headers: dict[str, str]  # lower-case name -> value as a reader decodes it
    bodies: list[tuple[str, str]]
    raw: Any = field(repr=False, default=None)


def _from_mime(raw: bytes, recipients: list[str]) -> Delivered:
    msg = parse(raw)
    headers = {name.lower(): str(value) for name, value in msg.items()}
    return Delivered(recipients, header_names(raw), headers, bodies(msg), raw)


def _from_sendgrid(payload: dict[str, Any]) -> Delivered:
    person = payload["personalizations"][0]
    sender = payload["from"]
    from_text = f"{sender['name']} <{sender['email']}>" if "name" in sender else sender["email"]
    headers = {"from": from_text, "to": person["to"][0]["email"], "subject": payload["subject"]}
    if "reply_to" in payload:
        headers["reply-to"] = payload["reply_to"]["email"]
    headers.update({k.lower(): v for k, v in payload.get("headers", {}).items()})
    headers["custom_args.migctl_notice"] = payload["custom_args"]["migctl_notice"]
    content = [(c["type"], c["value"]) for c in payload["content"]]
    return Delivered([r["email"] for r in person["to"]], list(headers), headers, content, payload)


@dataclass
class Harness:
    name: str
    config: Config
    read_back: Callable[[], list[Delivered]]
    delivers: bool = True
    factory_kwargs: dict[str, Any] = field(default_factory=dict)

    def provider(self, config: Config | None = None) -> Provider:
        return provider_class(self.name)(config or self.config, **self.factory_kwargs)

    def deliveries(self) -> list[Delivered]:
        return self.read_back()


@contextmanager
def harness(
    name: str, tmp_path: Path, ses_endpoint: Callable[[], str], env: Callable[[str, str], None]
) -> Iterator[Harness]:
    """Set up ``name``'s delivery target; ``env`` sets environment variables for the test."""
    with ExitStack() as stack:
        if name == "console":
            stream = io.StringIO()

            def console_read() -> list[Delivered]:
                chunks = [c for c in stream.getvalue().split("-" * 79 + "\n") if c.strip()]
                return [_from_mime(c.encode("ascii").replace(b"\n", b"\r\n"), []) for c in chunks]

            yield Harness(name, make_config(name), console_read, factory_kwargs={"stream": stream})
        elif name == "file":
            directory = tmp_path / "outbox"

            def file_read() -> list[Delivered]:
                files = sorted(directory.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
                return [_from_mime(p.read_bytes(), []) for p in files]

            yield Harness(name, make_config(name, file={"directory": directory}), file_read)
        elif name == "memory":
            memory.clear()

            def memory_read() -> list[Delivered]:
                # No envelope: the outbox keeps the message and the notice it came from.
                return [_from_mime(as_bytes(sent.message), []) for sent in memory.sent()]

            yield Harness(name, make_config(name), memory_read)
            memory.clear()
        elif name == "null":
            yield Harness(name, make_config(name), list, delivers=False)
        elif name == "smtp":
            server = stack.enter_context(SmtpServer())
            config = make_config(
                name, smtp={"host": "127.0.0.1", "port": server.port, "security": "none"}
            )

            def smtp_read() -> list[Delivered]:
                return [_from_mime(m.data, m.rcpt_tos) for m in server.messages]

            yield Harness(name, config, smtp_read)
        elif name == "ses":
            endpoint = ses_endpoint()
            seen = {m["id"] for m in sent_raw_messages(endpoint)}

            def ses_read() -> list[Delivered]:
                fresh = [m for m in sent_raw_messages(endpoint) if m["id"] not in seen]
                # moto lists the envelope recipient and again the To header's: de-duplicate.
                return [
                    _from_mime(m["raw_data"].encode(), sorted(set(m["destinations"])))
                    for m in fresh
                ]

            yield Harness(name, make_config(name, ses={"endpoint_url": endpoint}), ses_read)
        elif name == "sendgrid":
            env(SENDGRID_KEY_ENV, SENDGRID_KEY)
            fake = stack.enter_context(FakeSendgrid(api_key=SENDGRID_KEY))
            config = make_config(name, sendgrid={"api_key_env": SENDGRID_KEY_ENV, "host": fake.url})

            def sendgrid_read() -> list[Delivered]:
                return [_from_sendgrid(json.loads(json.dumps(p))) for p in fake.requests]

            yield Harness(name, config, sendgrid_read)
        else:
            raise ValueError(name)
