"""`feedback import`: delivery events saved in a file (JSON or JSON Lines) recorded as one batch."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from migrate_cli.config import FeedbackConfig
from migrate_cli.errors import InputError, Problem
from migrate_cli.feedback.record import FeedbackSummary, record_batch
from migrate_cli.store.db import Store


def import_file(
    store: Store, path: Path, *, config: FeedbackConfig, now: datetime, actor: str
) -> FeedbackSummary:
    """Record every event of ``path``: one JSON value (an event, an envelope, a list) or JSON
    Lines (one value per line). A line that is not JSON is counted as malformed; a file that
    cannot be read, or holds no JSON at all, raises InputError and records nothing."""
    payloads, labels, bad = read_events_file(path)
    summary = record_batch(store, payloads, config=config, now=now, actor=actor, labels=labels)
    if bad:
        # Lines that were not JSON are items too, and the problems keep the file's order.
        summary.received += len(bad)
        summary.malformed += len(bad)
        summary.problems = sorted(bad + summary.problems, key=_line_order)
    return summary


def read_events_file(path: Path) -> tuple[list[object], list[str], list[str]]:
    """(payloads, their labels, problems of lines that are not JSON); InputError if the file
    as a whole cannot be used."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(
            [Problem(name, None, None, f"cannot read the file ({exc.strerror or exc})")],
            "no events imported",
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            [Problem(name, None, None, f"not UTF-8 text (byte {exc.start})")], "no events imported"
        ) from None
    if not text.strip():
        raise InputError([Problem(name, None, None, "the file is empty")], "no events imported")
    whole = decode_json(text)
    if not isinstance(whole, NotJson):
        return [whole], [name], []
    payloads: list[object] = []
    labels: list[str] = []
    bad: list[str] = []
    first: Problem | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        value = decode_json(line)
        if isinstance(value, NotJson):
            bad.append(f"{name}:{number}: {value.reason}")
            first = first or Problem(name, number, None, value.reason)
        else:
            payloads.append(value)
            labels.append(f"{name}:{number}")
    if not payloads:
        assert first is not None
        raise InputError([first], "not JSON nor JSON Lines; no events imported")
    return payloads, labels, bad


class NotJson:
    """What `decode_json` returns for text that is not JSON: why (a file line, an SQS body)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def decode_json(text: str) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        return NotJson("nested too deeply")
    except json.JSONDecodeError as exc:
        return NotJson(f"not JSON ({exc.msg}, column {exc.colno})")
    except ValueError as exc:  # e.g. an integer longer than Python converts
        return NotJson(f"not JSON ({str(exc)[:80]})")


def _line_order(problem: str) -> tuple[int, str]:
    """Problems of a JSON Lines file in line order (`file:12[3]: ...` -> 12)."""
    head = problem.split(": ", 1)[0]
    digits = head.rsplit(":", 1)[-1].split("[", 1)[0]
    return (int(digits) if digits.isdigit() else 0, problem)
