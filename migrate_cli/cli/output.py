"""Human output: Rich tables on a terminal, plain lines for cron; JSON documents for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def console(stderr: bool = False) -> Console:
    """A console that is plain (no colour, no animation) when the stream is not a terminal."""
    forced = os.environ.get("MIGCTL_FORCE_TERMINAL")
    return Console(
        stderr=stderr,
        force_terminal=True if forced == "1" else None,
        width=_width(),
        highlight=False,
        soft_wrap=False,
    )


def _width() -> int | None:
    raw = os.environ.get("MIGCTL_WIDTH", "")
    return int(raw) if raw.isdigit() and 20 <= int(raw) <= 1000 else None  # else: Rich decides


def is_terminal() -> bool:
    return os.environ.get("MIGCTL_FORCE_TERMINAL") == "1" or sys.stdout.isatty()


def emit_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table on a terminal; one `key=value` line per row otherwise."""
    if is_terminal():
        table = Table(title=title, title_justify="left")
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        console().print(table)
        return
    out = sys.stdout
    out.write(f"# {title}\n")
    for row in rows:
        out.write(
            " ".join(f"{_key(c)}={_plain(v)}" for c, v in zip(columns, row, strict=True)) + "\n"
        )


def emit_warnings(warnings: Sequence[object]) -> None:
    """One `warning: ...` line each on stderr (plain: cron logs keep each on one line)."""
    for warning in warnings:
        sys.stderr.write(f"warning: {warning}\n")
    sys.stderr.flush()


def emit_lines(lines: Sequence[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")


def _key(column: str) -> str:
    return column.lower().replace(" ", "_").replace("%", "pct")


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    if not text or any(ch.isspace() for ch in text) or '"' in text:
        return json.dumps(text)
    return text


def progress_bar(share: float | None, width: int = 20) -> str:
    if share is None:
        return ""
    filled = round(share * width)
    return "█" * filled + "░" * (width - filled) + f" {share:.0%}"
