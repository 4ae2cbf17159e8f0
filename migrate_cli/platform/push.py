"""Push pending enrollment events to the platform's endpoint: signed batches, oldest first."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from migrate_cli.config import Config, PlatformConfig
from migrate_cli.errors import ConfigError, MigctlError
from migrate_cli.platform.signature import HEADER, sign
from migrate_cli.store import events
from migrate_cli.store.db import Store, parse_db_time
from migrate_cli.timeutil import format_duration, iso

BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
# Retried: the receiver may succeed later (timeout, conflict, throttling, its own failure).
RETRIED = frozenset({408, 409, 429})


class PlatformError(MigctlError):
    """The endpoint refused the events as a whole (a 4xx, a redirect) or kept failing for longer
    than `retry_for`: a configuration problem for the operator. Nothing is lost: the events
    stay pending, in order."""


@dataclass(frozen=True)
class Answer:
    """What one POST came back with: an HTTP status, or None when no answer arrived."""

    status: int | None
    detail: str


# Sends one signed body; returns the answer (never raises for the network).
Post = Callable[[bytes, dict[str, str]], Answer]


@dataclass
class PushReport:
    delivered: int = 0
    batches: int = 0
    pending: int = 0  # left undelivered (a transient failure, a backoff wait, a stop)
    waiting_until: datetime | None = None
    error: str | None = None

    @property
    def partial(self) -> bool:
        return self.pending > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "batches": self.batches,
            "pending": self.pending,
            "waiting_until": iso(self.waiting_until) if self.waiting_until else None,
            "error": self.error,
        }


def http_post(url: str, timeout: float) -> Post:
    """A POST through urllib that follows no redirect (a POST must not turn into a GET
    somewhere else) and reports errors without the URL, which may carry a token."""
    opener = urllib.request.build_opener(_NoRedirect)

    def post(body: bytes, headers: dict[str, str]) -> Answer:
        answer = _post(body, headers)
        # A receiver may echo the request back: never let the URL reach a message.
        return Answer(answer.status, answer.detail.replace(url, "<the platform URL>"))

    def _post(body: bytes, headers: dict[str, str]) -> Answer:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=timeout) as response:
                response.read()
                return Answer(response.status, "")
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, _snippet(exc.read()))
        except urllib.error.URLError as exc:
            return Answer(None, f"no answer: {_reason(exc.reason)}")
        except (TimeoutError, OSError) as exc:
            return Answer(None, f"no answer: {_reason(exc)}")

    return post


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as an HTTPError: a configuration problem


def _reason(reason: object) -> str:
    return type(reason).__name__ if isinstance(reason, TimeoutError) else str(reason)


def _snippet(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").replace("\n", " ").strip()
    return f": {text}" if text else ""


def endpoint(config: Config) -> tuple[PlatformConfig, str, str]:
    """The [platform] settings with the URL and secret read from the environment."""
    pc = config.platform
    if pc is None:
        raise ConfigError(
            "no [platform] table in migctl.toml: add one naming the environment variables "
            "of the endpoint and its signing secret (docs/platform.md)"
        )
    url = config.secret(pc.webhook_url_env)
    secret = config.secret(pc.signing_secret_env)
    missing = [
        name
        for name, value in ((pc.webhook_url_env, url), (pc.signing_secret_env, secret))
        if not value
    ]
    if missing:
        raise ConfigError(f"set the environment variable(s) {', '.join(missing)} ([platform])")
    assert url and secret
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{pc.webhook_url_env} must hold an http(s) URL")
    return pc, url, secret


def push(
    store: Store,
    config: Config,
    now: datetime,
    *,
    honour_backoff: bool = False,
    post: Post | None = None,
    clock: Callable[[], float] = time.time,
    stop: threading.Event | None = None,
) -> PushReport:
    """Send pending events in recording order, one signed batch at a time, until none is left
    or one fails. A batch is marked delivered only after a 2xx; a kill before that sends it
    again next time (same ids: the receiver deduplicates). Events never overtake each other:
    a failed batch blocks the ones behind it. `honour_backoff` (cron runs) waits for the
    failed batch's next attempt instant; an operator's `platform push` tries at once."""
    pc, url, secret = endpoint(config)
    send = post or http_post(url, pc.timeout)
    report = PushReport()
    while not (stop and stop.is_set()):
        batch = events.head(store, pc.batch_size)
        if not batch:
            break
        first = batch[0]
        if honour_backoff and first.next_attempt_at and parse_db_time(first.next_attempt_at) > now:
            report.waiting_until = parse_db_time(first.next_attempt_at)
            break
        body = json.dumps([e.to_json() for e in batch], separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "migctl",
            HEADER: sign(secret, body, int(clock())),
        }
        answer = send(body, headers)
        seqs = [e.seq for e in batch]
        if answer.status is not None and 200 <= answer.status < 300:
            events.delivered(store, seqs, now)
            report.delivered += len(batch)
            report.batches += 1
            continue
        _failed(store, pc, seqs, first.attempts, answer, now, report)
        break
    report.pending = int(store.scalar("SELECT count(*) FROM events WHERE delivery = 'pending'"))
    return report


def _failed(
    store: Store,
    pc: PlatformConfig,
    seqs: list[int],
    attempts: int,
    answer: Answer,
    now: datetime,
    report: PushReport,
) -> None:
    what = f"HTTP {answer.status}{answer.detail}" if answer.status else answer.detail
    transient = answer.status is None or answer.status in RETRIED or answer.status >= 500
    if not transient:
        events.failed(store, seqs, now, what, None)
        raise PlatformError(
            f"the platform endpoint refused {len(seqs)} event(s) ({what}); check "
            f"{pc.webhook_url_env} and {pc.signing_secret_env}. Nothing is lost: the events "
            "stay pending, in order, for the next push"
        )
    # Capped exponential backoff with jitter, across runs (the next run reads it).
    wait = min(BACKOFF_FIRST * 2 ** min(attempts, 20), BACKOFF_CAP)
    wait = wait * (0.5 + random.random() / 2)
    since = events.failed(store, seqs, now, what, now + wait)
    report.error = what
    report.waiting_until = now + wait
    if now - since >= pc.retry_window:
        raise PlatformError(
            f"the platform endpoint has been failing for more than {format_duration(pc.retry_window)} "
            f"(retry_for; last: {what}). Nothing is lost: the events stay pending, in order"
        )
