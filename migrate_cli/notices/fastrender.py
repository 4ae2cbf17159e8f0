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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from migrate_cli.definitions.model import Migration
from migrate_cli.notices.render import (
    MAX_LISTED_ACCOUNTS,
    NAME_LIMIT,
    SUBJECT_LIMIT,
    AccountRef,
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
    # [^\S ]: whitespace other than a plain space (a no-break or ideographic space...), which
    # one_line's split() turns into a plain one.
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[^\S ]|\s\s|^\s|\s$"
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


# One search over all of a notice's values joined by "|": besides _UNCLEAN's cases, a space
# next to a separator is a value's leading or trailing space. A "|" inside a value can only
# make this stricter (a false alarm sends that notice through the per-value path).
_ANY_UNCLEAN = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[^\S ]|\s\s|^\s|\s$|\s\||\|\s"
)


def _fills(admin_email: str, accounts: Sequence[AccountRef]) -> dict[str, str] | None:
    """The values a notice substitutes, cleaned exactly as Renderer.variables cleans them."""
    listed = accounts[:MAX_LISTED_ACCOUNTS]
    values = [admin_email]
    for account in listed:
        values += (str(account.id), account.name, account.plan)
    joined = "|".join(values)
    if not _ANY_UNCLEAN.search(joined) and max(map(len, values)) <= NAME_LIMIT:
        clean = values  # the common case: nothing to tidy
    else:
        clean = [_clean(v) for v in values]
        for i in range(3, len(clean), 3):
            clean[i] = values[i]  # plans are shown as they are
    fills = {_EMAIL: clean[0]}
    for i in range(len(listed)):
        fills[_IDS[i]] = clean[1 + 3 * i]
        fills[_NAMES[i]] = clean[2 + 3 * i]
        fills[_PLANS[i]] = clean[3 + 3 * i]
    # An empty value could merge blank lines differently from the placeholder: render in full.
    return fills if all(clean) else None


def shape_key(
    migration: Migration,
    kind: str,
    deadline: date | None,
    previous_deadline: date | None,
    days_left: int | None,
    today: date,
    emergency: bool,
    reason: str | None,
    listed: int,
    total: int,
) -> tuple[Any, ...]:
    """What makes two notices render alike except for their substituted values."""
    # Identity, not equality: a Migration can hold a dict (per-plan dates), and the catalog
    # keeps each one alive for the whole run.
    return (
        migration.id,
        id(migration),
        kind,
        deadline,
        previous_deadline,
        days_left,
        today,
        emergency,
        reason,
        min(listed, MAX_LISTED_ACCOUNTS),
        max(total, listed),
    )


def context_shape(context: NoticeContext, kind: str) -> tuple[Any, ...]:
    c = context
    return shape_key(
        c.migration,
        kind,
        c.deadline,
        c.previous_deadline,
        c.days_left,
        c.today,
        c.emergency,
        c.reason,
        len(c.accounts),
        c.accounts_total,
    )


class BulkRenderer:
    """Same output as ``Renderer.render`` (verified), at a fraction of the cost per notice."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        self.full_renders = 0
        self.fast_renders = 0

    def render(self, kind: str, context: NoticeContext) -> Rendered:
        return self.render_shape(
            context_shape(context, kind),
            kind,
            context.admin_email,
            context.accounts,
            lambda: context,
        )

    def render_shape(
        self,
        key: tuple[Any, ...],
        kind: str,
        admin_email: str,
        accounts: Sequence[AccountRef],
        make_context: Callable[[], NoticeContext],
    ) -> Rendered:
        """Render a notice of shape ``key`` (see shape_key); the context is built only when a
        template has to run (learning a shape, verifying it, or rendering in full)."""
        fills = _fills(admin_email, accounts)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._learn(kind, make_context())
        if shape.parts is None or fills is None:
            self.full_renders += 1
            return self.renderer.render(kind, make_context())
        shape.uses += 1
        subject_parts, text_parts, html_parts = shape.parts
        result = Rendered(
            # A subject without values is final already (finish() made it one line).
            subject_parts[0]
            if len(subject_parts) == 1
            else one_line(_fill(subject_parts, fills), SUBJECT_LIMIT),
            _fill(text_parts, fills),
            _fill(html_parts, _escaped(fills)),
        )
        if shape.uses % VERIFY_EVERY == 0:
            full = self.renderer.render(kind, make_context())
            if full != result:
                shape.parts = None
                return full
        self.fast_renders += 1
        return result

    def _learn(self, kind: str, context: NoticeContext) -> _Shape:
        """Render the shape with placeholders; keep it only if it reproduces a full render."""
        fills = _fills(context.admin_email, context.accounts)
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
                one_line(_fill(parts[0], fills), SUBJECT_LIMIT),
                _fill(parts[1], fills),
                _fill(parts[2], _escaped(fills)),
            )
        except KeyError:  # a template transformed a token (e.g. |upper): render in full
            return _Shape(None)
        if fast != self.renderer.render(kind, context):
            return _Shape(None)
        return _Shape(parts)


def _escaped(fills: dict[str, str]) -> dict[str, str]:
    """The values as the HTML part shows them (the escaping of markupsafe.escape)."""
    joined = "\x00".join(fills.values())
    if not _HTML_SPECIAL.search(joined):
        return fills
    parts = _html(joined).split("\x00")  # one pass for all values
    if len(parts) != len(fills):  # a value held a NUL itself (a plan is not cleaned)
        return {k: _html(v) for k, v in fills.items()}
    return dict(zip(fills, parts, strict=True))


def _html(value: str) -> str:
    # markupsafe.escape's output, without building a Markup object per value (checked against
    # full renders like everything else here).
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def _fill(parts: list[str], fills: dict[str, str]) -> str:
    if len(parts) == 1:
        return parts[0]
    out = parts[:]
    for i in range(1, len(out), 2):
        out[i] = fills[out[i]]
    return "".join(out)
