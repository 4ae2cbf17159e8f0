"""SendGrid's signed Event Webhook: an HTTP receiver that verifies each batch and records it before answering."""

from __future__ import annotations

import base64
import binascii
import json
import queue
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from migrate_cli.config import FeedbackConfig
from migrate_cli.errors import ConfigError, MigctlError
from migrate_cli.feedback.record import FeedbackSummary, record_batch
from migrate_cli.store.db import Store

PATH = "/sendgrid"  # the one path that accepts events; docs/providers.md names it
# A request's socket is given up after this long without progress, so a stalled client can
# hold one handler thread (and delay a stop) for no longer.
SOCKET_TIMEOUT = 15.0
# Requests handled at once; more wait in the listen queue. Bounds memory: bodies are read
# before their signature can be checked, so at most this many times max_body_bytes.
MAX_IN_FLIGHT = 16

# ASCII digits, few enough for int() (a 5,000-digit header would make it raise).
_DIGITS = re.compile(r"[0-9]{1,15}\Z")

Record = Callable[[list[Any]], FeedbackSummary]
Log = Callable[[str], None]


def load_verifier(key_text: str | None, env_name: str) -> EventWebhook:
    """SendGrid's helper bound to the verification key, or a ConfigError naming the variable
    (never its value)."""
    if not key_text or not key_text.strip():
        raise ConfigError(
            f"the SendGrid verification key is not set: put the Verification Key SendGrid shows "
            f"when you enable signature verification on the Event Webhook into the environment "
            f"variable {env_name} ([feedback] sendgrid_verification_key_env; docs/providers.md)"
        )
    # SendGrid shows bare base64 (DER); an operator may paste it as PEM. The helper adds the
    # PEM armour itself, so it gets the base64 body only.
    body = "".join(
        line.strip() for line in key_text.strip().splitlines() if not line.startswith("-----")
    )
    problem = f"{env_name} does not hold SendGrid's verification key (an ECDSA P-256 public key)"
    try:
        verifier = EventWebhook(public_key=body)
    except (ValueError, UnsupportedAlgorithm):  # the library's reasons could quote the key
        raise ConfigError(problem) from None
    key = verifier.public_key
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ConfigError(problem)
    return verifier


def signature_ok(verifier: EventWebhook, body: str, signature: str, timestamp: str) -> bool:
    """The helper's verdict on one request; a signature that is not even base64 DER is false."""
    try:
        base64.b64decode(signature, validate=True)
        return bool(verifier.verify_signature(body, signature, timestamp))
    except (binascii.Error, ValueError, TypeError):
        return False


def recorder(
    store: Store,
    config: FeedbackConfig,
    *,
    now: Callable[[], datetime],
    actor: str,
) -> Record:
    """Record one webhook batch (a list of SendGrid events is one payload) in one transaction."""

    def record(events: list[Any]) -> FeedbackSummary:
        return record_batch(store, [events], config=config, now=now(), actor=actor)

    return record


@dataclass
class ServeSummary:
    """What one `feedback serve` did, for the line it prints when it stops."""

    requests: int = 0
    accepted: int = 0  # answered 2xx: recorded (or already known)
    refused: int = 0  # answered 4xx: not recorded (forged, stale, oversized, not a batch)
    failed: int = 0  # answered 5xx: not recorded, SendGrid retries
    feedback: FeedbackSummary = field(default_factory=FeedbackSummary)

    def line(self) -> str:
        f = self.feedback
        return (
            f"stopped after {self.requests} request(s): {self.accepted} accepted, "
            f"{self.refused} refused, {self.failed} failed; {f.received} event(s): "
            f"{f.recorded} recorded, {f.duplicates} duplicate(s), {f.orphans} orphan(s), "
            f"{f.malformed} malformed, {f.ignored} ignored; "
            f"{len(f.suppressed)} address(es) suppressed"
        )


class _Batch:
    """One verified request body waiting for the store writer."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.done = threading.Event()
        self.summary: FeedbackSummary | None = None
        self.error: str | None = None
        self.status = 500


class Receiver:
    """The HTTP side verifies in one thread per request; the thread that calls ``serve`` is the
    only store writer and records the batches one at a time, in arrival order."""

    def __init__(
        self,
        config: FeedbackConfig,
        verifier: EventWebhook,
        record: Record,
        *,
        log: Log,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.record = record
        self.wall = wall  # the real clock: SendGrid signs real timestamps, whatever --now says
        self.summary = ServeSummary()
        self._log = log
        self._log_lock = threading.Lock()
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Batch] = queue.Queue()
        self._closing = False
        self._server: _Server | None = None

    def listen(self, host: str, port: int) -> tuple[str, int]:
        """Bind (port 0: any free port); returns the address actually bound."""
        try:
            server = _Server((host, port), _Handler)
        except OSError as exc:
            raise MigctlError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        server.receiver = self
        self._server = server
        bound_host, bound_port = server.server_address[:2]
        return str(bound_host), int(bound_port)

    def serve(self, stop: threading.Event) -> ServeSummary:
        """Answer requests until ``stop`` is set; then refuse what still waits (503, SendGrid
        retries it) and return the summary."""
        server = self._server
        assert server is not None, "listen() first"
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="webhook-http"
        )
        thread.start()
        try:
            while not stop.is_set():
                try:
                    batch = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._write(batch)
        finally:
            with self._lock:
                self._closing = True
                while not self._queue.empty():
                    self._abandon(self._queue.get_nowait())
            server.shutdown()
            thread.join()
            server.server_close()  # waits for the handler threads still answering
        return self.summary

    def submit(self, events: list[Any]) -> _Batch:
        """Hand a verified batch to the writer and wait until it is recorded (or refused)."""
        batch = _Batch(events)
        with self._lock:
            if self._closing:
                self._abandon(batch)
            else:
                self._queue.put(batch)
        batch.done.wait()
        return batch

    def count(self, status: int) -> None:
        with self._lock:
            self.summary.requests += 1
            if status < 300:
                self.summary.accepted += 1
            elif status < 500:
                self.summary.refused += 1
            else:
                self.summary.failed += 1

    def log(self, line: str) -> None:
        with self._log_lock:
            self._log(line)

    def _write(self, batch: _Batch) -> None:
        try:
            batch.summary = self.record(batch.events)
            batch.status = 200
            self.summary.feedback.add(batch.summary)
        except (MigctlError, sqlite3.Error, OSError) as exc:
            # Not recorded (a lock held past the busy timeout, a full disk): 500, and SendGrid
            # retries the batch later. Anything else is a bug: it stops the server, loudly.
            batch.error = f"not recorded: {exc}"
        finally:
            batch.done.set()

    @staticmethod
    def _abandon(batch: _Batch) -> None:
        batch.status = 503
        batch.error = "stopping"
        batch.done.set()


class _Server(ThreadingHTTPServer):
    # Handler threads are joined at close: a batch recorded just before a stop still gets
    # its 200, instead of a dropped connection that SendGrid would retry.
    daemon_threads = False
    block_on_close = True
    receiver: Receiver

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()  # the accept loop waits for a free slot
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer: one log line, not socketserver's traceback.
        error = sys.exc_info()[1]
        self.receiver.log(f"{_stamp()} {client_address[0]} connection error: {error}")


class _Refused(Exception):
    """A request answered with an error status and a reason (for the client and the log)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SOCKET_TIMEOUT
    answered = 0  # the status sent, for the log line
    server_version = "migctl-feedback"
    sys_version = ""

    def do_POST(self) -> None:
        started = time.monotonic()
        receiver = self.server.receiver
        size = 0
        detail = ""
        try:
            path = urlsplit(self.path).path
            if path != PATH:
                raise _Refused(404, f"no such path (events go to {PATH})")
            size = self._content_length(receiver.config.max_body_bytes)
            raw = self._read_body(size)
            events = self._verified_events(receiver, raw)
            batch = receiver.submit(events)
            if batch.summary is None:
                raise _Refused(batch.status, batch.error or "not recorded")
            s = batch.summary
            detail = (
                f"events={s.received} recorded={s.recorded} duplicates={s.duplicates} "
                f"orphans={s.orphans} malformed={s.malformed} ignored={s.ignored}"
            )
            self._answer(200, {"received": s.received, "recorded": s.recorded})
        except _Refused as refused:
            detail = refused.reason
            self._answer(refused.status, {"error": refused.reason})
        except TimeoutError:
            detail = "client too slow: gave up reading the body"
            self.close_connection = True
            self.answered = 408
        self._log_request(started, size, detail)

    def _content_length(self, limit: int) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise _Refused(411, "a Content-Length is required (no chunked bodies)")
        text = self.headers.get("Content-Length")
        if text is None:
            raise _Refused(411, "a Content-Length is required")
        if not _DIGITS.match(text.strip()):
            raise _Refused(400, "the Content-Length is not a number")
        size = int(text)
        if size > limit:
            # Refused before reading a byte of it; the connection closes with the body unread.
            raise _Refused(413, f"body of {size} bytes is over max_body_bytes ({limit})")
        return size

    def _read_body(self, size: int) -> bytes:
        raw = self.rfile.read(size)
        if len(raw) != size:
            raise _Refused(400, f"body ended after {len(raw)} of {size} bytes")
        return raw

    def _verified_events(self, receiver: Receiver, raw: bytes) -> list[Any]:
        signature = self.headers.get(EventWebhookHeader.SIGNATURE)
        timestamp = self.headers.get(EventWebhookHeader.TIMESTAMP)
        if not signature or not timestamp:
            raise _Refused(403, "unsigned request (enable Signed Event Webhook Requests)")
        if not _DIGITS.match(timestamp):
            raise _Refused(403, "the signature timestamp is not a Unix time")
        skew = abs(receiver.wall() - int(timestamp))
        if skew > receiver.config.max_age_window.total_seconds():
            raise _Refused(403, f"stale: signed {int(skew)} s away from this clock (over max_age)")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(400, "the body is not UTF-8 text") from None
        if not signature_ok(receiver.verifier, body, signature, timestamp):
            raise _Refused(403, "invalid signature")
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):
            raise _Refused(400, "the body is not JSON") from None
        if not isinstance(events, list):
            raise _Refused(400, "the body is not a JSON list of events")
        return events

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        self.answered = status
        body = json.dumps(document).encode()
        self.send_response(status)
        if status == 405:
            self.send_header("Allow", "POST")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _not_allowed(self) -> None:
        started = time.monotonic()
        if urlsplit(self.path).path != PATH:
            reason, status = "no such path", 404
        else:
            reason, status = "only POST is accepted", 405
        self._answer(status, {"error": reason})
        self._log_request(started, 0, reason)

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _log_request(self, started: float, size: int, detail: str) -> None:
        status = getattr(self, "answered", 0)
        receiver = self.server.receiver
        receiver.count(status)
        path = _printable(urlsplit(self.path).path)
        ms = (time.monotonic() - started) * 1000
        receiver.log(
            f"{_stamp()} {self.client_address[0]} {self.command} {path} {status} {size}B "
            f"{ms:.0f}ms {detail}"
        )

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own lines (a malformed request line, a timeout): one line, no body.
        self.server.receiver.log(f"{_stamp()} {self.client_address[0]} {_printable(format % args)}")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _log_request writes one line per request, with what migctl did


def _printable(text: str, limit: int = 200) -> str:
    """Client-chosen text made safe for a log line: no control characters, bounded."""
    cleaned = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return cleaned[:limit]


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
