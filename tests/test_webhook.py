"""`migctl feedback serve`: SendGrid's signed Event Webhook, against the real server process and
requests signed in the test exactly as SendGrid signs them (ECDSA P-256 over timestamp + body)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from migrate_cli.config import FeedbackConfig
from migrate_cli.feedback.record import FeedbackSummary
from migrate_cli.feedback.webhook import PATH, Receiver, load_verifier
from migrate_cli.store.lock import store_lock
from tests.fakes.sendgrid_server import FakeSendgrid
from tests.feedback_events import sendgrid
from tests.helpers_enforce import (
    MAIL,
    base_env,
    command,
    dump,
    json_out,
    migctl,
    ok,
    setup_store,
)

KEY_ENV = "MIGCTL_SENDGRID_WEBHOOK_KEY"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


class Signer:
    """SendGrid's side: a P-256 key pair; signs timestamp + raw body, base64 DER."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid shows it: base64 of the DER public key."""
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, *, at: int | None = None) -> dict[str, str]:
        timestamp = str(int(time.time()) if at is None else at)
        signature = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            SIGNATURE: base64.b64encode(signature).decode(),
            TIMESTAMP: timestamp,
            "Content-Type": "application/json",
        }


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def post(url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, Any]:
    parts = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    assert parts
    conn = http.client.HTTPConnection(parts[1], int(parts[2]), timeout=30)
    try:
        conn.request(method, parts[3], body, headers)
        reply = conn.getresponse()
        data = reply.read()
        return reply.status, json.loads(data) if data else None
    finally:
        conn.close()


def raw_exchange(url: str, head: bytes, *, hang_up: bool = False) -> bytes:
    """Send only these bytes and read the whole answer; ``hang_up``: then stop sending (a
    client that dies mid-body)."""
    parts = re.match(r"http://([^:/]+):(\d+)", url)
    assert parts
    with socket.create_connection((parts[1], int(parts[2])), timeout=30) as sock:
        sock.sendall(head)
        if hang_up:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class Serving:
    """`migctl feedback serve --port 0` as the operator runs it, in its own process."""

    def __init__(self, folder: Path, env: dict[str, str], *args: str, now: str = "") -> None:
        at = ["--now", now] if now else []
        self.proc = subprocess.Popen(
            command(folder, *at, "feedback", "serve", "--port", "0", *args),
            cwd=folder,
            env=base_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        found = re.search(r"listening on (http://\S+)", first)
        if not found:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"serve did not start: {first}{err}{out}")
        self.url = found[1]
        self.log: list[str] = [first]
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # stderr is the reader thread's alone
        self.proc.wait(timeout=60)
        self._reader.join(timeout=60)
        return self.proc.returncode, out, "".join(self.log)

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def operator_folder(folder: Path, extra_toml: str = "") -> Path:
    db = setup_store(folder, MAIL)
    if extra_toml:
        with (folder / "migctl.toml").open("a") as f:
            f.write(extra_toml)
    return db


# --------------------------------------------------------------------------- refusals


def test_every_bad_request_is_refused_and_the_store_is_unchanged(
    tmp_path: Path, signer: Signer
) -> None:
    db = operator_folder(tmp_path, '\n[feedback]\nmax_body_bytes = 2048\nmax_age = "5m"\n')
    before = dump(db)
    events = json.dumps([{"email": "a@x.test", "event": "delivered", "migctl_notice": "k"}])
    body = events.encode()
    other = Signer()
    now = int(time.time())
    with Serving(tmp_path, {KEY_ENV: signer.public_key}) as server:
        url = server.url
        assert url.endswith(PATH)
        refused = {
            "unsigned": post(url, body, {"Content-Type": "application/json"}),
            "tampered": post(url, body.replace(b"delivered", b"bounce"), signer.headers(body)),
            "other key": post(url, body, other.headers(body)),
            "garbage signature": post(
                url, body, {**signer.headers(body), SIGNATURE: "not base64 at all!"}
            ),
            "stale": post(url, body, signer.headers(body, at=now - 3600)),
            "from the future": post(url, body, signer.headers(body, at=now + 3600)),
            "timestamp not a number": post(url, body, {**signer.headers(body), TIMESTAMP: "1e9"}),
            "not JSON": post(url, b"[{]", signer.headers(b"[{]")),
            "not a list": post(url, b'{"event": "x"}', signer.headers(b'{"event": "x"}')),
            "not UTF-8": post(url, b"[\xff]", signer.headers(b"[\xff]")),
            "wrong path": post(url.replace(PATH, "/other"), body, signer.headers(body)),
            "wrong method": post(url, b"", {}, method="GET"),
        }
        # Over max_body_bytes: refused on its Content-Length, before a byte of it is sent.
        big = raw_exchange(
            url,
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n".encode(),
        )
        chunked = raw_exchange(
            url,
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
        )
        short = raw_exchange(
            url,
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[]".encode(),
            hang_up=True,
        )
        code, out, log = server.stop()
    statuses = {name: status for name, (status, _) in refused.items()}
    assert statuses == {
        "unsigned": 403,
        "tampered": 403,
        "other key": 403,
        "garbage signature": 403,
        "stale": 403,
        "from the future": 403,
        "timestamp not a number": 403,
        "not JSON": 400,
        "not a list": 400,
        "not UTF-8": 400,
        "wrong path": 404,
        "wrong method": 405,
    }
    assert "stale" in refused["stale"][1]["error"]
    assert big.startswith(b"HTTP/1.0 413 ") and b"max_body_bytes" in big
    assert chunked.startswith(b"HTTP/1.0 411 ")
    assert short.startswith(b"HTTP/1.0 400 ") and b"body ended after 2 of 100 bytes" in short
    assert dump(db) == before
    # A clean stop on SIGTERM with its summary; one log line per request, no body, no key.
    assert code == 0, log
    assert out.strip() == (
        "stopped after 15 request(s): 0 accepted, 15 refused, 0 failed; 0 event(s): "
        "0 recorded, 0 duplicate(s), 0 orphan(s), 0 malformed, 0 ignored; "
        "0 address(es) suppressed"
    )
    lines = [line for line in log.splitlines() if f" {PATH} " in line or " /other " in line]
    assert len(lines) == 15, log
    assert "a@x.test" not in log and signer.public_key not in log
    assert "Traceback" not in log


# --------------------------------------------------------------------------- the key


def serve_in_process(runner: Any, tmp_path: Path, env: dict[str, str], *args: str) -> Any:
    return runner(
        "--db", tmp_path / "migctl.db", "--config", tmp_path / "migctl.toml",
        "feedback", "serve", *args, env=env,
    )  # fmt: skip


def test_missing_key_is_a_config_error_before_binding(
    tmp_path: Path, runner: Any, signer: Signer
) -> None:
    operator_folder(tmp_path)
    # The port is taken: an attempt to bind first would fail with another message.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = serve_in_process(runner, tmp_path, {}, "--port", port)
        assert result.exit_code == 1
        assert KEY_ENV in result.stderr and "cannot listen" not in result.stderr
        # With the key, the taken port is the error.
        result = serve_in_process(runner, tmp_path, {KEY_ENV: signer.public_key}, "--port", port)
        assert result.exit_code == 1
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE-not-a-key-canary",
        base64.b64encode(b"canary bytes that are no DER at all").decode(),
        "rsa",  # an RSA key: a public key, but not the kind SendGrid signs with
        "p384",  # an EC key on another curve
    ],
)
def test_invalid_key_names_the_variable_never_the_value(
    tmp_path: Path, runner: Any, value: str
) -> None:
    if value in {"rsa", "p384"}:
        private: Any = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if value == "rsa"
            else ec.generate_private_key(ec.SECP384R1())
        )
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        value = base64.b64encode(der).decode()
    operator_folder(tmp_path, '\n[feedback]\nsendgrid_verification_key_env = "SG_EVENTS_KEY"\n')
    result = serve_in_process(runner, tmp_path, {"SG_EVENTS_KEY": value})
    assert result.exit_code == 1
    assert "SG_EVENTS_KEY does not hold SendGrid's verification key" in result.stderr
    assert value not in result.output and value[:20] not in result.output


def test_a_pem_key_is_accepted_as_well_as_the_bare_base64(signer: Signer) -> None:
    pem = signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = b'[{"event": "delivered"}]'
    headers = signer.headers(body)
    for key in (signer.public_key, pem.decode()):
        verifier = load_verifier(key, KEY_ENV)
        assert verifier.verify_signature(body.decode(), headers[SIGNATURE], headers[TIMESTAMP])


# --------------------------------------------------------------------------- recording


class ThreadServing:
    """The receiver in this process, with a recorder the test controls."""

    def __init__(self, signer: Signer, record: Any) -> None:
        self.receiver = Receiver(
            FeedbackConfig(), load_verifier(signer.public_key, KEY_ENV), record, log=self.lines
        )
        self.log: list[str] = []
        host, port = self.receiver.listen("127.0.0.1", 0)
        self.url = f"http://{host}:{port}{PATH}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.receiver.serve, args=(self.stop,))

    def lines(self, line: str) -> None:
        self.log.append(line)

    def __enter__(self) -> ThreadServing:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def test_a_store_error_answers_500_so_sendgrid_retries(signer: Signer) -> None:
    seen: list[Any] = []
    failures = [sqlite3.OperationalError("database is locked")]

    def record(events: list[Any]) -> FeedbackSummary:
        if failures:
            raise failures.pop()
        seen.append(events)
        return FeedbackSummary(received=len(events), recorded=len(events))

    body = json.dumps([{"event": "delivered", "migctl_notice": "k1"}]).encode()
    with ThreadServing(signer, record) as server:
        first = post(server.url, body, signer.headers(body))
        second = post(server.url, body, signer.headers(body))
    assert first == (500, {"error": "not recorded: database is locked"})
    assert second == (200, {"received": 1, "recorded": 1})
    assert seen == [[{"event": "delivered", "migctl_notice": "k1"}]]
    summary = server.receiver.summary
    assert (summary.requests, summary.accepted, summary.failed) == (2, 1, 1)
    assert "database is locked" in server.log[0] and " 500 " in server.log[0]


def test_hostile_bodies_are_refused_before_recording(signer: Signer) -> None:
    """Signed, yet no batch: JSON nested past the parser's depth, a bare string, nothing."""
    recorded: list[Any] = []

    def record(events: list[Any]) -> FeedbackSummary:
        recorded.append(events)
        return FeedbackSummary(received=len(events))

    bodies = {
        b"[" * 200_000 + b"]" * 200_000: 400,
        b'"[]"': 400,
        b"": 400,
        b"[]": 200,  # an empty batch is a batch: nothing to record, nothing to retry
    }
    with ThreadServing(signer, record) as server:
        answers = {body: post(server.url, body, signer.headers(body))[0] for body in bodies}
    assert answers == bodies
    assert recorded == [[]]
    assert "Traceback" not in "".join(server.log)


def test_batches_are_recorded_by_the_serving_thread_only(signer: Signer) -> None:
    """Requests arrive on many threads; one writer (the thread in `serve`) records them."""
    writers: list[int] = []

    def record(events: list[Any]) -> FeedbackSummary:
        writers.append(threading.get_ident())
        return FeedbackSummary(received=len(events), recorded=len(events))

    bodies = [json.dumps([{"event": "delivered", "n": i}]).encode() for i in range(12)]
    results: list[int] = []
    with ThreadServing(signer, record) as server:
        clients = [
            threading.Thread(
                target=lambda b=b: results.append(post(server.url, b, signer.headers(b))[0])
            )
            for b in bodies
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
    assert results == [200] * 12
    assert len(writers) == 12 and set(writers) == {server.thread.ident}
    assert server.receiver.summary.feedback.recorded == 12


# --------------------------------------------------------------------------- end to end

SG_KEY = "SG.test-webhook-key"


def test_signed_batches_of_real_sends_are_recorded_once_and_suppress(
    tmp_path: Path, signer: Signer
) -> None:
    """Notices sent through the sendgrid provider to the local SendGrid server; SendGrid's
    events for them come back signed; the bounce suppresses, `status --json` shows the rates."""
    operator_folder(tmp_path)
    with FakeSendgrid(api_key=SG_KEY) as sendgrid_server:
        toml = (
            (tmp_path / "migctl.toml")
            .read_text()
            .replace('provider = "file"', 'provider = "sendgrid"')
        )
        toml += f'\n[email.sendgrid]\napi_key_env = "SG_KEY"\nhost = "{sendgrid_server.url}"\n'
        (tmp_path / "migctl.toml").write_text(toml)
        ok(migctl(tmp_path, "--now", "2016-04-20", "notify", env={"SG_KEY": SG_KEY}))
        sent = {
            p["personalizations"][0]["to"][0]["email"]: p["custom_args"]["migctl_notice"]
            for p in sendgrid_server.requests
        }
    assert {"a@x.test", "b@x.test", "c@x.test", "d@x.test"} <= set(sent)
    batch = [
        sendgrid("delivered", "a@x.test", key=sent["a@x.test"], sg_event_id="ev-a"),
        sendgrid(
            "bounce", "b@x.test", key=sent["b@x.test"], sg_event_id="ev-b", type="bounce",
            status="5.1.1", reason="550 5.1.1 The email account does not exist",
        ),
        sendgrid("deferred", "c@x.test", key=sent["c@x.test"], sg_event_id="ev-c"),
        sendgrid("processed", "d@x.test", key=sent["d@x.test"], sg_event_id="ev-d"),
        sendgrid("delivered", "nobody@x.test", key="unknown-key", sg_event_id="ev-z"),
    ]  # fmt: skip
    body = json.dumps(batch).encode()
    serve_env = {KEY_ENV: signer.public_key}
    with Serving(tmp_path, serve_env, now="2016-04-21") as server:
        first = post(server.url, body, signer.headers(body))
        # SendGrid retries what it believes unanswered; the cron run holding its lock meanwhile
        # does not stop serve (short transactions, no run lock).
        with store_lock(tmp_path / "migctl.db", command="run"):
            again = post(server.url, body, signer.headers(body))
        wrong = json.dumps([1, None, {"event": "bounce", "email": ["b@x.test"]}]).encode()
        odd = post(server.url, wrong, signer.headers(wrong))
        code, out, log = server.stop(signal.SIGINT)
    assert first == (200, {"received": 5, "recorded": 3})
    assert again == (200, {"received": 5, "recorded": 0})
    assert odd == (200, {"received": 3, "recorded": 0})  # counted malformed, nothing to retry
    assert code == 0, log
    assert out.strip() == (
        "stopped after 3 request(s): 3 accepted, 0 refused, 0 failed; 13 event(s): "
        "3 recorded, 4 duplicate(s), 1 orphan(s), 3 malformed, 2 ignored; "
        "1 address(es) suppressed"
    )
    assert "recorded=3 duplicates=0 orphans=1" in log
    assert "recorded=0 duplicates=4 orphans=0" in log
    assert "b@x.test" not in log and signer.public_key not in log
    suppressed = json_out(ok(migctl(tmp_path, "suppress", "list", "--json")))["suppressions"]
    assert [(s["email"], s["source"]) for s in suppressed] == [("b@x.test", "feedback:sendgrid")]
    assert "550 5.1.1" in suppressed[0]["reason"]
    status = json_out(ok(migctl(tmp_path, "--now", "2016-04-21", "status", "--json")))
    delivery = status["migrations"][0]["delivery"]
    n = len(sent)
    assert delivery["sent"] == n
    assert (delivery["delivered"], delivery["bounced_hard"], delivery["deferred"]) == (1, 1, 1)
    assert delivery["rates"]["delivered"] == round(1 / n, 4)
    assert delivery["rates"]["bounced"] == round(1 / n, 4)
