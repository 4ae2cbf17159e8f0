"""A local HTTP server playing the platform: it verifies every request with the receiver code
printed in docs/platform.md, records what it received, and can fail or hang on cue."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "platform.md"
SECRET = "whsec-test-7c1d9b"


def documented_receiver() -> dict[str, Any]:
    """`verify` and `apply` exactly as docs/platform.md shows them."""
    text = DOCS.read_text(encoding="utf-8").split("## The signature", 1)[1]
    code = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace


@dataclass
class Received:
    epoch: int  # which run of migctl sent it (the test moves the epoch on)
    ids: list[str]
    answered: bool = False


@dataclass
class PlatformServer:
    url: str = ""
    status: int = 200  # the answer to every verified request
    epoch: int = 0
    requests: list[Received] = field(default_factory=list)
    refused: int = 0
    flags: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Hang at the Nth request of the current epoch: 'before' it is stored, or 'after' it is
    # stored and before the answer (the answer is lost). `reached` is set when it happens.
    hang_at: int | None = None
    hang_mode: str = "after"
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, at: int | None, mode: str = "after") -> None:
        with self.lock:
            self.epoch += 1
            self.hang_at, self.hang_mode = at, mode
            self.reached.clear()
            self.release.clear()

    def in_epoch(self) -> int:
        return sum(1 for r in self.requests if r.epoch == self.epoch)


@contextmanager
def platform_server() -> Iterator[PlatformServer]:
    receiver = documented_receiver()
    state = PlatformServer()
    count_in_epoch: dict[int, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            header = self.headers.get("Migctl-Signature", "")
            if not receiver["verify"](SECRET.encode(), header, body):
                with state.lock:
                    state.refused += 1
                self._answer(401)
                return
            with state.lock:
                epoch = state.epoch
                n = count_in_epoch[epoch] = count_in_epoch.get(epoch, 0) + 1
                hang = state.hang_at == n
                mode = state.hang_mode
                status = state.status
            if hang and mode == "before":
                state.reached.set()
                state.release.wait(60)
                return
            batch = json.loads(body)
            record = Received(epoch, [e["id"] for e in batch])
            with state.lock:
                state.requests.append(record)
                if 200 <= status < 300:
                    state.events.extend(batch)
                    receiver["apply"](batch, state.flags)
            if hang:
                state.reached.set()
                state.release.wait(60)
                return
            self._answer(status)
            record.answered = True

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/migctl-events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
