"""Bulk rendering: render each notice *shape* once with placeholders, then fill in the values.

A million notices differ mostly in the administrator's address and the accounts listed; the
rest (migration, kind, deadline, days left, number of accounts) repeats. For each shape the
templates run once with placeholder tokens; later notices of that shape only substitute the
real, already-cleaned values (HTML-escaped in the HTML part). Every shape is verified against
a full render the first time and periodically after, and falls back to full rendering for good
if a template treats the values as more than text (filters, conditions on names, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from markupsafe import escape

from migrate_cli.render import (
    MAX_LISTED_ACCOUNTS,
    NAME_LIMIT,
    SUBJECT_LIMIT,
    NoticeContext,
    Rendered,
    Renderer,
    finish,
    one_line,
)

_TOKEN = re.compile(r"(Zq[A-Z]\d+Qz)")
# Values that one_line() would change (controls, separators, bidi marks, odd whitespace) or
# that HTML escaping would change; the common case matches neither and is used as is.
_UNCLEAN = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|\s\s|^\s|\s$"
)
_HTML_SPECIAL = re.compile(r"[&<>\"']")
VERIFY_EVERY = 1_000  # re-check a shape against a full render this often


@dataclass
class _Shape:
    # Finished subject, text and html split on tokens (odd items are tokens); None: render in full.
    parts: tuple[list[str], list[str], list[str]] | None
    uses: int = 0


def _token(field: str, index: int) -> str:
    return f"Zq{field}{index}Qz"


_EMAIL = _token("E", 0)
_IDS = [_token("I", i) for i in range(MAX_LISTED_ACCOUNTS)]
_NAMES = [_token("N", i) for i in range(MAX_LISTED_ACCOUNTS)]
_PLANS = [_token("P", i) for i in range(MAX_LISTED_ACCOUNTS)]


def _clean(value: str) -> str:
    """one_line(value, NAME_LIMIT), skipping the work when it would change nothing."""
    if len(value) <= NAME_LIMIT and not _UNCLEAN.search(value):
        return value
    return one_line(value, NAME_LIMIT)


def _fills(context: NoticeContext) -> dict[str, str] | None:
    """The values a notice substitutes, cleaned exactly as Renderer.variables cleans them."""
    fills = {_EMAIL: _clean(context.admin_email)}
    for i, account in enumerate(context.accounts[:MAX_LISTED_ACCOUNTS]):
        fills[_IDS[i]] = _clean(str(account.id))
        fills[_NAMES[i]] = _clean(account.name)
        fills[_PLANS[i]] = account.plan
    # An empty value could merge blank lines differently from the placeholder: render in full.
    return fills if all(fills.values()) else None


class BulkRenderer:
    """Same output as ``Renderer.render`` (verified), at a fraction of the cost per notice."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        self.full_renders = 0
        self.fast_renders = 0

    def render(self, kind: str, context: NoticeContext) -> Rendered:
        key = (
            # Identity, not equality: a Migration can hold a dict (per-plan dates), and the
            # catalog keeps each one alive for the whole run.
            context.migration.id,
            id(context.migration),
            kind,
            context.deadline,
            context.previous_deadline,
            context.days_left,
            context.today,
            context.emergency,
            context.reason,
            min(len(context.accounts), MAX_LISTED_ACCOUNTS),
            max(context.accounts_total, len(context.accounts)),
        )
        fills = _fills(context)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._learn(kind, context)
        if shape.parts is None or fills is None:
            self.full_renders += 1
            return self.renderer.render(kind, context)
        shape.uses += 1
        subject_parts, text_parts, html_parts = shape.parts
        result = Rendered(
            one_line(_fill(subject_parts, fills, html=False), SUBJECT_LIMIT),
            _fill(text_parts, fills, html=False),
            _fill(html_parts, fills, html=True),
        )
        if shape.uses % VERIFY_EVERY == 0:
            full = self.renderer.render(kind, context)
            if full != result:
                shape.parts = None
                return full
        self.fast_renders += 1
        return result

    def _learn(self, kind: str, context: NoticeContext) -> _Shape:
        """Render the shape with placeholders; keep it only if it reproduces a full render."""
        fills = _fills(context)
        if fills is None:
            return _Shape(None)  # learn from a later, ordinary notice of this shape
        values = self.renderer.variables(kind, context)
        placeholder = dict(values)
        placeholder["admin_email"] = _token("E", 0)
        placeholder["accounts"] = [
            {"id": _token("I", i), "name": _token("N", i), "plan": _token("P", i)}
            for i in range(len(values["accounts"]))
        ]
        done = finish(*self.renderer.render_raw(kind, placeholder))
        parts = (_TOKEN.split(done.subject), _TOKEN.split(done.text), _TOKEN.split(done.html))
        try:
            fast = Rendered(
                one_line(_fill(parts[0], fills, html=False), SUBJECT_LIMIT),
                _fill(parts[1], fills, html=False),
                _fill(parts[2], fills, html=True),
            )
        except KeyError:  # a template transformed a token (e.g. |upper): render in full
            return _Shape(None)
        if fast != self.renderer.render(kind, context):
            return _Shape(None)
        return _Shape(parts)


def _fill(parts: list[str], fills: dict[str, str], *, html: bool) -> str:
    if len(parts) == 1:
        return parts[0]
    out = parts[:]
    for i in range(1, len(out), 2):
        value = fills[out[i]]
        if html and _HTML_SPECIAL.search(value):
            value = str(escape(value))
        out[i] = value
    return "".join(out)
