"""Human output: Rich tables on a terminal, plain lines for cron; JSON documents for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


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


def stderr_is_terminal() -> bool:
    return os.environ.get("MIGCTL_FORCE_TERMINAL") == "1" or sys.stderr.isatty()


def emit_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


# Colours of the domain words an operator scans for; anything else stays plain.
STYLES = {
    "scheduled": "cyan",
    "grace": "green",
    "due": "bold yellow",
    "enforced": "bold magenta",
    "retired": "dim",
    "low": "green",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}
_STYLED_COLUMNS = {"Phase", "Severity", "State"}


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table on a terminal; one `key=value` line per row otherwise.

    The first column holds what an operator types next (an id): it is never cut or wrapped,
    the other columns wrap to make room."""
    if is_terminal():
        table = Table(title=title, title_justify="left")
        cells = [["" if v is None else str(v) for v in row] for row in rows]
        for i, col in enumerate(columns):
            if i == 0:
                longest = max((len(r[0]) for r in cells), default=0)
                table.add_column(col, no_wrap=True, min_width=max(longest, len(col)))
            else:
                table.add_column(col, overflow="fold")
        for cell_row in cells:
            table.add_row(
                *(
                    Text(v, style=STYLES.get(v, "")) if col in _STYLED_COLUMNS else Text(v)
                    for col, v in zip(columns, cell_row, strict=True)
                )
            )
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


def delivery_cell(delivery: dict[str, Any] | None) -> str:
    """A notice's delivery outcome in a table cell: `bounced (hard) 2016-04-20T10:01`."""
    if not delivery:
        return ""
    word = delivery["outcome"] + (
        f" ({delivery['bounce_type']})" if delivery["bounce_type"] else ""
    )
    return f"{word} {delivery['at'][:16]}"
