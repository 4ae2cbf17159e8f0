"""A local HTTP server speaking SendGrid's v3 mail-send API, with scriptable failures.

Usable from tests and benchmarks::

    with FakeSendgrid(api_key="SG.test") as server:
        config host = server.url
        ... server.requests holds every accepted payload ...
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# SendGrid answers 400 when these are set through "headers" (they have dedicated fields).
RESERVED_HEADERS = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


@dataclass
class Reply:
    """A scripted answer: status, extra headers, JSON body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


def _error(message: str, field_name: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field_name, "help": None}]}


def validate_payload(payload: Any) -> str | None:
    """Check the v3 payload shape; return a problem description or None."""
    if not isinstance(payload, dict):
        return "body must be a JSON object"
    persons = payload.get("personalizations")
    if not isinstance(persons, list) or not persons:
        return "personalizations is required"
    for person in persons:
        to = person.get("to") if isinstance(person, dict) else None
        if (
            not isinstance(to, list)
            or not to
            or not all(isinstance(r, dict) and isinstance(r.get("email"), str) for r in to)
        ):
            return "personalizations.to must be a list of {email}"
    sender = payload.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        return "from.email is required"
    if not isinstance(payload.get("subject"), str) or not payload["subject"]:
        return "subject is required"
    content = payload.get("content")
    if not isinstance(content, list) or not content:
        return "content is required"
    types = [c.get("type") for c in content if isinstance(c, dict)]
    if types[:2] != ["text/plain", "text/html"]:
        return "content must be text/plain first, then text/html"
    if any(not isinstance(c.get("value"), str) or not c["value"] for c in content):
        return "content values must be non-empty strings"
    custom = payload.get("custom_args", {})
    if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
        return "custom_args values must be strings"
    headers = payload.get("headers", {})
    if not isinstance(headers, dict):
        return "headers must be an object"
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            return f"header {name} is reserved"
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            return f"header {name} must be a single-line string"
    return None


class FakeSendgrid:
    """Threaded ``POST /v3/mail/send`` on 127.0.0.1; queue replies with ``script``."""

    def __init__(self, api_key: str, latency: float = 0.0) -> None:
        self.api_key = api_key
        self.latency = latency
        self.requests: list[dict[str, Any]] = []  # accepted payloads
        self.attempts = 0  # every POST, accepted or not
        self.arrivals: list[float] = []  # time.monotonic() of every POST, as it arrived
        self.auth_headers: list[str] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then succeed again."""
        with self._lock:
            self._script.extend(replies)

    def start(self) -> FakeSendgrid:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeSendgrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _respond(self, auth: str, body: bytes) -> Reply:
        with self._lock:
            self.attempts += 1
            self.arrivals.append(time.monotonic())
            self.auth_headers.append(auth)
            scripted = self._script.pop(0) if self._script else None
        if self.latency:
            time.sleep(self.latency)
        if scripted is not None:
            return scripted
        if auth != f"Bearer {self.api_key}":
            return Reply(401, body=_error("The provided authorization grant is invalid."))
        try:
            payload = json.loads(body)
        except ValueError:
            return Reply(400, body=_error("Invalid JSON"))
        problem = validate_payload(payload)
        if problem:
            return Reply(400, body=_error(problem))
        with self._lock:
            self.requests.append(payload)
        return Reply(202, headers={"X-Message-Id": uuid.uuid4().hex[:22]})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path != "/v3/mail/send":
                    reply = Reply(404, body=_error("not found"))
                else:
                    reply = fake._respond(self.headers.get("Authorization", ""), body)
                data = json.dumps(reply.body).encode() if reply.body else b""
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests): nothing to answer

        return Handler
