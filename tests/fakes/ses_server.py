"""AWS stand-ins: moto's server mode for real sends and SNS -> SQS, and a tiny scriptable endpoint
for the failures moto does not produce (SES v2, or SQS through sqs_error)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.fakes.common import free_port

DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def isolate_aws(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Dummy credentials, and never a developer's real AWS profile, config or retry settings."""
    for key, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-credentials"))
    for name in ("AWS_PROFILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)


@contextmanager
def moto_with_dummy_credentials() -> Iterator[str]:
    """moto_server() for a module-scoped fixture (where the monkeypatch fixture cannot go)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in DUMMY_AWS_ENV.items():
            mp.setenv(key, value)
        with moto_server() as endpoint:
            yield endpoint


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's server on 127.0.0.1 and yield its endpoint URL."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def sent_raw_messages(endpoint: str) -> list[dict[str, Any]]:
    """Every raw message moto's SES backend has accepted (``id``, ``source``, ``raw_data``…).

    moto keeps them as ``ses.RawMessage`` models, listed by ``/moto-api/data.json``.
    """
    with urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    messages: list[dict[str, Any]] = data.get("ses", {}).get("RawMessage", [])
    return messages


@dataclass
class SesReply:
    """A scripted SES v2 answer (rest-json: error code in x-amzn-ErrorType)."""

    status: int
    error_code: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def sqs_error(status: int, code: str, message: str = "") -> SesReply:
    """An SQS error as AWS's JSON protocol answers it: botocore takes the code from the
    query-compatible header (FakeSes answers any POST, so it stands in for SQS as well)."""
    return SesReply(status, code, message, headers={"x-amzn-query-error": f"{code};Sender"})


@dataclass
class SesRequest:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def raw_message(self) -> bytes:
        return base64.b64decode(self.body["Content"]["Raw"]["Data"])


class FakeSes:
    """A local SES v2 endpoint: records every request and answers from a script (or 200)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[SesRequest] = []
        self._script: list[SesReply] = []
        self._default: SesReply | None = None
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

    def script(self, *replies: SesReply) -> None:
        with self._lock:
            self._script.extend(replies)

    def always(self, reply: SesReply | None) -> None:
        """Answer every request with ``reply`` (None: succeed)."""
        with self._lock:
            self._default = reply

    def __enter__(self) -> FakeSes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: SesRequest) -> SesReply | None:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.pop(0)
            return self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                reply = fake._next(SesRequest(self.path, body, dict(self.headers.items())))
                if fake.latency:
                    time.sleep(fake.latency)
                headers = {"x-amzn-RequestId": str(uuid.uuid4())}
                if reply is None:
                    payload: dict[str, Any] = {"MessageId": f"fake-{uuid.uuid4().hex}"}
                    status = 200
                else:
                    status = reply.status
                    payload = {"message": reply.message} if reply.error_code else {}
                    if reply.error_code:
                        headers["x-amzn-ErrorType"] = reply.error_code
                    headers.update(reply.headers)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests): nothing to answer

        return Handler


def ses_event_queue(
    endpoint: str, *, name: str = "migctl-ses-events", visibility_timeout: int = 30
) -> tuple[str, str]:
    """The SES event wiring of docs/providers.md in moto: an SNS topic and an SQS queue
    subscribed to it with raw message delivery off. Returns (topic ARN, queue URL)."""
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=endpoint)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    topic_arn: str = sns.create_topic(Name=f"{name}-topic")["TopicArn"]
    url: str = sqs.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": str(visibility_timeout)}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "false"},
    )
    return topic_arn, url


def publish_events(endpoint: str, topic_arn: str, *events: dict[str, Any]) -> None:
    """Publish each SES event to the topic, as SES event publishing does."""
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=endpoint)
    for event in events:
        sns.publish(TopicArn=topic_arn, Message=json.dumps(event))


def queue_depth(endpoint: str, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )
