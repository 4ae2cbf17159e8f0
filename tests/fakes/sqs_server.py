"""A scriptable SQS endpoint (JSON protocol) for the failures moto does not produce."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class SqsReply:
    """An SQS error as AWS sends it: the JSON ``__type`` and the query-compatible code header."""

    status: int
    error_type: str  # e.g. "com.amazonaws.sqs#QueueDoesNotExist"
    query_code: str  # e.g. "AWS.SimpleQueueService.NonExistentQueue"
    message: str = ""


class FakeSqs:
    """Answers every request with the next scripted error; with none left, an empty queue."""

    def __init__(self) -> None:
        self.actions: list[str] = []  # X-Amz-Target of every request, in order
        self._script: list[SqsReply] = []
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

    def script(self, *replies: SqsReply) -> None:
        with self._lock:
            self._script.extend(replies)

    def __enter__(self) -> FakeSqs:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, action: str) -> SqsReply | None:
        with self._lock:
            self.actions.append(action)
            return self._script.pop(0) if self._script else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = fake._next(self.headers.get("X-Amz-Target", ""))
                headers = {"x-amzn-RequestId": "fake-request"}
                if reply is None:
                    status, body = 200, {}
                else:
                    status = reply.status
                    body = {"__type": reply.error_type, "message": reply.message}
                    headers["x-amzn-query-error"] = f"{reply.query_code};Sender"
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
