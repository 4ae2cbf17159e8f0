"""Notice rendering: sandboxed Jinja2 templates from email_templates/ to subject, text and HTML."""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from migrate_cli.definitions.model import NOTICE_KINDS, Migration
from migrate_cli.errors import ConfigError, Problem

# The three parts of a notice and the file suffix of each template.
PARTS = ("subject", "text", "html")
_SUFFIX = {"subject": ".subject.txt", "text": ".txt", "html": ".html"}
LAYOUTS = ("layout.html", "layout.txt")

SUBJECT_LIMIT = 200
NAME_LIMIT = 200
# A digest listing thousands of accounts is unreadable and heavy; past this the email says
# "and N more" even if the caller passed a longer list.
MAX_LISTED_ACCOUNTS = 100

# Template names are built from these, so they are the only guard between a migration id and
# the filesystem: no dots, slashes or backslashes can get through.
_MIGRATION_ID = re.compile(r"^[a-z0-9-]{1,64}$")
_KIND = re.compile(r"^[a-z_]{1,32}$")
_SAFE_HREF = re.compile(r"^(?:https?://[^\s<>\"'`]+|mailto:[^\s<>\"'`:/]+@[^\s<>\"'`]+)$", re.I)

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_SEVERITY_COLOR = {
    "low": "#2e7d32",
    "medium": "#9a5b00",
    "high": "#c43e00",
    "critical": "#b71c1c",
}

# C0/C1 controls, DEL, the Unicode line/paragraph separators and the bidi overrides (which can
# make a subject or name read differently from what it is) all become plain spaces.
_CONTROL_TO_SPACE = {
    **{c: " " for c in range(0x00, 0x20)},
    **{c: " " for c in range(0x7F, 0xA0)},
    0x2028: " ",
    0x2029: " ",
    **{c: " " for c in range(0x202A, 0x202F)},
    **{c: " " for c in range(0x2066, 0x206A)},
    0xFEFF: " ",
}


def one_line(text: str, limit: int | None = None) -> str:
    """Collapse ``text`` to one clean line: controls to spaces, whitespace runs to one space.

    With ``limit``, cut to at most that many characters, the last being "…" when cut.
    """
    clean = " ".join(text.translate(_CONTROL_TO_SPACE).split())
    if limit is not None and len(clean) > limit:
        clean = clean[: limit - 1].rstrip() + "…"
    return clean


def finish(subject: str, text: str, html: str) -> Rendered:
    """Tidy rendered parts: a single-line capped subject, at most one blank line in the text."""
    # Templates may leave blank runs where optional blocks are empty; one blank line is enough.
    # (str.replace in a loop is several times faster than a regex here.)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    text = text.strip("\n") + "\n"
    return Rendered(one_line(subject, SUBJECT_LIMIT), text, html)


@lru_cache(maxsize=4096)
def format_date(day: date) -> str:
    """``11 May 2016``: spelled out so no reader confuses day and month, and locale-free."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _days_left_text(days_left: int | None) -> str | None:
    if days_left is None:
        return None
    if days_left > 1:
        return f"{days_left} days left"
    if days_left == 1:
        return "1 day left"
    if days_left == 0:
        return "the deadline is today"
    return f"the deadline passed {_plural(-days_left, 'day')} ago"


@dataclass(frozen=True, slots=True)
class AccountRef:
    """One account as a notice shows it, with its own date (SPEC §3, per-plan dates)."""

    id: str
    name: str
    plan: str
    # Whether ``deadline`` and ``previous_deadline`` are this account's own; a caller that
    # does not know them leaves False and the account shows the notice's dates.
    dated: bool = False
    deadline: date | None = None  # its own date now (its plan's, or its extension); None = TBD
    previous_deadline: date | None = None  # the own date its administrator was told of before
    extended: bool = False  # ``deadline`` is an extension (rule 3b)


@dataclass(frozen=True, kw_only=True)
class NoticeContext:
    """Everything one notice says, filled by the caller; turned into plain values for Jinja."""

    migration: Migration
    kind: str
    admin_email: str
    # The headline date: the earliest own date among the administrator's accounts (for a
    # schedule change, among the accounts whose date moved); None = TBD. Each account
    # carries its own date.
    deadline: date | None
    days_left: int | None
    # Pending accounts (switched accounts for ``enforced``); may be a truncated list.
    accounts: Sequence[AccountRef]
    accounts_total: int
    today: date
    previous_deadline: date | None = None
    emergency: bool = False
    reason: str | None = None
    # Whether all of the accounts (not only the listed ones) share one own date; None: judged
    # from ``accounts``.
    deadlines_differ: bool | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered notice: a one-line subject, a text/plain body and a text/html body."""

    subject: str
    text: str
    html: str


# --- Markdown ---------------------------------------------------------------------------------

# Email clients drop <style> blocks and class names, so every element carries its own style.
_BLOCK_STYLES = {
    "p": "margin:0 0 12px 0;",
    "ul": "margin:0 0 12px 0;padding-left:22px;",
    "ol": "margin:0 0 12px 0;padding-left:22px;",
    "li": "margin:0 0 4px 0;",
    "blockquote": "margin:0 0 12px 0;padding:0 0 0 12px;border-left:3px solid #dfe1e6;"
    "color:#5e6c84;",
    "pre": "margin:0 0 12px 0;padding:10px;background-color:#f4f5f7;border-radius:4px;"
    "font-family:Menlo,Consolas,monospace;font-size:13px;white-space:pre-wrap;",
    "h1": "margin:16px 0 8px 0;font-size:18px;",
    "h2": "margin:16px 0 8px 0;font-size:17px;",
    "h3": "margin:14px 0 6px 0;font-size:16px;",
    "h4": "margin:12px 0 6px 0;font-size:15px;",
    "h5": "margin:12px 0 6px 0;font-size:15px;",
    "h6": "margin:12px 0 6px 0;font-size:15px;",
    "hr": "border:0;border-top:1px solid #dfe1e6;margin:16px 0;",
}
_LINK_STYLE = "color:#0052cc;text-decoration:underline;"
_CODE_STYLE = (
    "font-family:Menlo,Consolas,monospace;font-size:13px;background-color:#f4f5f7;"
    "padding:1px 4px;border-radius:3px;"
)

_markdown = MarkdownIt("commonmark", {"html": False})


def _safe_href(href: str | None) -> str | None:
    """Keep absolute http(s) and mailto links only: relative links are dead in an email."""
    if href and _SAFE_HREF.match(href):
        return href
    return None


def _clean_inline(children: list[Token]) -> list[Token]:
    """Drop links we will not send, turn images into their alt text (no remote content)."""
    out: list[Token] = []
    kept: list[bool] = []
    for tok in children:
        if tok.type == "link_open":
            keep = _safe_href(str(tok.attrGet("href") or "")) is not None
            kept.append(keep)
            if keep:
                tok.attrSet("style", _LINK_STYLE)
                out.append(tok)
        elif tok.type == "link_close":
            if kept.pop() if kept else False:
                out.append(tok)
        elif tok.type == "image":
            out.append(Token("text", "", 0, content=tok.content))
        elif tok.type == "code_inline":
            tok.attrSet("style", _CODE_STYLE)
            out.append(tok)
        else:
            out.append(tok)
    return out


def markdown_to_html(source: str) -> Markup:
    """Render a migration description for email: raw HTML escaped, unsafe links removed."""
    tokens = _markdown.parse(source)
    for tok in tokens:
        if tok.children:
            tok.children = _clean_inline(tok.children)
        tag = "pre" if tok.type in ("fence", "code_block") else tok.tag
        if tok.nesting >= 0 and tag in _BLOCK_STYLES and tok.type not in ("fence",):
            tok.attrSet("style", _BLOCK_STYLES[tag])
    html = _markdown.renderer.render(tokens, _markdown.options, {})
    # fence puts attributes on <code>; style the <pre> around it directly.
    html = html.replace("<pre><code", f'<pre style="{_BLOCK_STYLES["pre"]}"><code')
    return Markup(html)


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    links: list[tuple[str | None, int]] = []
    for tok in children:
        if tok.type in ("text", "code_inline"):
            parts.append(tok.content)
        elif tok.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif tok.type == "image":
            parts.append(tok.content)
        elif tok.type == "link_open":
            links.append((_safe_href(str(tok.attrGet("href") or "")), len(parts)))
        elif tok.type == "link_close" and links:
            href, start = links.pop()
            label = "".join(parts[start:])
            if href and label not in (href, href.removeprefix("mailto:")):
                parts.append(f" ({href})")
    return "".join(parts)


def markdown_to_text(source: str) -> str:
    """The description as plain text: paragraphs, "- " lists, links as "label (url)"."""
    # (text, top-level list it belongs to or 0): items of one list are not separated by blank lines
    blocks: list[tuple[str, int]] = []
    lists: list[list[int]] = []  # one [next number] per open list; -1 means bullets
    list_seq = 0
    quote = 0
    marker = ""
    for tok in _markdown.parse(source):
        kind = tok.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            if not lists:
                list_seq += 1
            start = -1 if kind == "bullet_list_open" else int(str(tok.attrGet("start") or 1))
            lists.append([start])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            counter = lists[-1]
            if counter[0] < 0:
                marker = "- "
            else:
                marker = f"{counter[0]}. "
                counter[0] += 1
        elif kind == "blockquote_open":
            quote += 1
        elif kind == "blockquote_close":
            quote -= 1
        elif kind in ("inline", "fence", "code_block", "hr"):
            if kind == "inline":
                text = _inline_text(tok.children or [])
            elif kind == "hr":
                text = "* * *"
            else:
                text = "\n".join("    " + line for line in tok.content.rstrip("\n").split("\n"))
            indent = "  " * max(len(lists) - 1, 0)
            first = indent + (marker or ("  " if lists else ""))
            rest = indent + (" " * len(marker) if marker else ("  " if lists else ""))
            marker = ""
            prefix = "> " * quote
            lines = text.split("\n")
            body = "\n".join(
                prefix + (first if i == 0 else rest) + line for i, line in enumerate(lines)
            )
            blocks.append((body, list_seq if lists else 0))
    out: list[str] = []
    for i, (body, in_list) in enumerate(blocks):
        if i:
            out.append("\n" if in_list and blocks[i - 1][1] == in_list else "\n\n")
        out.append(body)
    return "".join(out)


# --- Rendering --------------------------------------------------------------------------------


class _AddProblem(Protocol):
    """How check() collects problems."""

    def __call__(self, file: str, line: int | None, message: str, detail: str = "") -> None: ...


def _check_kind(kind: str) -> None:
    if not _KIND.match(kind):
        raise ValueError(f"invalid notice kind {kind!r}")
    if kind not in NOTICE_KINDS:
        raise ValueError(f"unknown notice kind {kind!r}; expected one of {', '.join(NOTICE_KINDS)}")


def _check_migration_id(migration_id: str) -> None:
    if not _MIGRATION_ID.match(migration_id):
        raise ValueError(
            f"invalid migration id {migration_id!r} for a template name "
            "(only lowercase letters, digits and dashes)"
        )


def template_file_name(kind: str, part: str) -> str:
    """The default template name for one part of one kind, e.g. ``reminder.subject.txt``."""
    _check_kind(kind)
    if part not in _SUFFIX:
        raise ValueError(f"unknown notice part {part!r}; expected one of {', '.join(PARTS)}")
    return kind + _SUFFIX[part]


def override_name(migration_id: str, kind: str, part: str) -> str:
    """The override template name, e.g. ``email-delivery-changes/reminder.txt`` (validated)."""
    _check_migration_id(migration_id)
    return f"{migration_id}/{template_file_name(kind, part)}"


class _Environment(SandboxedEnvironment):
    """The sandbox, with dict keys looked up before dict methods for ``a.b``.

    Our variables are plain dicts, so ``migration.title`` would otherwise raise and catch an
    AttributeError on every lookup; a key also no longer loses to a dict method of the same
    name (``items``, ``keys``).
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


class Renderer:
    """Renders notices; compiles each template once and caches per-migration constant parts."""

    def __init__(
        self, templates_dir: Path, dashboard_url: str, *, product_name: str = "Platform"
    ) -> None:
        # The dashboard link is the one link in every notice: it must be absolute and http(s).
        if not _SAFE_HREF.match(dashboard_url) or not dashboard_url.lower().startswith("http"):
            raise ConfigError(
                f"the dashboard URL must be an http(s) URL, got {dashboard_url!r}; "
                "set [dashboard] url in migctl.toml"
            )
        self.templates_dir = Path(templates_dir)
        self.dashboard_url = dashboard_url
        self.product_name = one_line(product_name, 80)
        loader = FileSystemLoader(os.fspath(self.templates_dir))
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            # We keep our own Template cache; no stat() per render.
            "auto_reload": False,
        }
        self._html_env = _Environment(autoescape=True, **common)
        self._text_env = _Environment(autoescape=False, keep_trailing_newline=True, **common)
        for env in (self._html_env, self._text_env):
            env.filters["plural"] = _plural
            env.filters["format_date"] = format_date
        self._templates: dict[tuple[str, str, str], Template] = {}
        self._constants: dict[tuple[str, ...], dict[str, Any]] = {}

    # Templates

    def _env(self, part: str) -> SandboxedEnvironment:
        return self._html_env if part == "html" else self._text_env

    def template_name(self, migration_id: str, kind: str, part: str) -> str:
        """The template used for this migration, kind and part: the override if one exists."""
        name = override_name(migration_id, kind, part)
        if (self.templates_dir / name).is_file():
            return name
        return template_file_name(kind, part)

    def _template(self, migration_id: str, kind: str, part: str) -> Template:
        key = (migration_id, kind, part)
        found = self._templates.get(key)
        if found is None:
            found = self._env(part).get_template(self.template_name(migration_id, kind, part))
            self._templates[key] = found
        return found

    # Context

    def _migration_constants(self, migration: Migration) -> dict[str, Any]:
        """Values that depend on the migration only; computed once per migration version."""
        # The raw strings are the key: their hashes are cached by Python and equal keys compare
        # by identity first, so a hit costs far less than hashing the description would.
        key = (
            migration.id,
            migration.title,
            migration.severity,
            migration.summary,
            migration.docs_url or "",
            migration.description,
            migration.grace_period_start.isoformat(),
        )
        found = self._constants.get(key)
        if found is None:
            found = {
                "product_name": self.product_name,
                "dashboard_url": self.dashboard_url,
                "migration": {
                    "id": migration.id,
                    "title": one_line(migration.title, SUBJECT_LIMIT),
                    "severity": migration.severity,
                    "severity_label": migration.severity.capitalize(),
                    "summary": migration.summary,
                    "docs_url": _safe_href(migration.docs_url),
                    "grace_period_start": format_date(migration.grace_period_start),
                },
                "severity_color": _SEVERITY_COLOR.get(migration.severity, "#42526e"),
                "description_html": markdown_to_html(migration.description),
                "description_text": markdown_to_text(migration.description),
            }
            self._constants[key] = found
        return found

    def variables(self, kind: str, context: NoticeContext) -> dict[str, Any]:
        """The plain values a template sees (documented in email_templates/README.md)."""
        listed = context.accounts[:MAX_LISTED_ACCOUNTS]
        deadline = context.deadline
        previous = context.previous_deadline
        accounts = []
        for a in listed:
            own = a.deadline if a.dated else deadline
            before = a.previous_deadline if a.dated else previous
            accounts.append(
                {
                    "id": one_line(str(a.id), NAME_LIMIT),
                    "name": one_line(a.name, NAME_LIMIT),
                    "plan": a.plan,
                    "deadline": format_date(own) if own else None,
                    "deadline_iso": own.isoformat() if own else None,
                    "days_left": (own - context.today).days if own else None,
                    "extended": a.extended,
                    "previous_deadline": format_date(before) if before else None,
                    "previous_deadline_iso": before.isoformat() if before else None,
                    "date_changed": kind == "schedule_change" and before != own,
                }
            )
        total = max(context.accounts_total, len(context.accounts))
        changes = {
            (a["previous_deadline_iso"], a["deadline_iso"]) for a in accounts if a["date_changed"]
        }
        return {
            **self._migration_constants(context.migration),
            "kind": kind,
            "admin_email": one_line(context.admin_email, NAME_LIMIT),
            "deadline": format_date(deadline) if deadline else None,
            "deadline_iso": deadline.isoformat() if deadline else None,
            "previous_deadline": format_date(previous) if previous else None,
            "previous_deadline_iso": previous.isoformat() if previous else None,
            "days_left": context.days_left,
            "days_left_text": _days_left_text(context.days_left),
            "accounts": accounts,
            "accounts_total": total,
            "accounts_more": total - len(accounts),
            # The listed accounts do not all share one date (TBD counts as a date of its own):
            # no sentence may then claim one date for all of them.
            "deadlines_differ": (
                len({a["deadline_iso"] for a in accounts}) > 1
                if context.deadlines_differ is None
                else context.deadlines_differ
            ),
            "accounts_changed": sum(1 for a in accounts if a["date_changed"]),
            # The moved accounts do not share one old and new date: name each account's.
            "changes_differ": len(changes) > 1,
            "emergency": bool(context.emergency),
            "reason": one_line(context.reason, 1000) if context.reason else None,
            "today": format_date(context.today),
        }

    # Rendering

    def render(self, kind: str, context: NoticeContext) -> Rendered:
        """Render one notice. Raises ValueError for a bad kind or migration id."""
        _check_kind(kind)
        if context.kind != kind:
            raise ValueError(f"render({kind!r}) called with a {context.kind!r} context")
        mid = context.migration.id
        _check_migration_id(mid)
        return finish(*self.render_raw(kind, self.variables(kind, context)))

    def render_raw(self, kind: str, values: dict[str, Any]) -> tuple[str, str, str]:
        """The three parts straight from the templates, before ``finish`` tidies them."""
        mid = values["migration"]["id"]
        subject = self._template(mid, kind, "subject").render(values)
        text = self._template(mid, kind, "text").render(values)
        html = self._template(mid, kind, "html").render(values)
        return subject, text, html

    # Checking

    def check(self, migrations: Iterable[Migration], *, strays: bool = True) -> list[Problem]:
        """Compile and render every template against sample data; every problem, located.

        ``strays=False`` skips the check of the override folders' files (sending checks only
        what it renders). Folders of unknown migrations are warnings: ``unknown_override_folders``.
        """
        migrations = list(migrations)
        problems: list[Problem] = []
        seen: set[tuple[str, int | None, str]] = set()

        def add(file: str, line: int | None, message: str, detail: str = "") -> None:
            # One template is rendered many times (kinds, samples, migrations): report each
            # fault once, with the first sample that showed it.
            if (file, line, message) not in seen:
                seen.add((file, line, message))
                problems.append(Problem(file, line, None, message + detail))

        if not self.templates_dir.is_dir():
            add(str(self.templates_dir), None, "templates folder not found")
            return problems

        for name in (
            *LAYOUTS,
            *(template_file_name(k, p) for k in NOTICE_KINDS for p in PARTS),
        ):
            if not (self.templates_dir / name).is_file():
                add(self._display(name), None, "missing default template")
        problems_before_render = len(problems)
        if strays:
            self._check_override_folders({m.id for m in migrations}, add)

        samples = migrations or [_SAMPLE_MIGRATION]
        for migration in samples:
            if not _MIGRATION_ID.match(migration.id):
                add(self._display(migration.id), None, "migration id cannot name a template folder")
                continue
            for kind in NOTICE_KINDS:
                names = {p: self.template_name(migration.id, kind, p) for p in PARTS}
                for context in _sample_variants(migration, kind):
                    for part, name in names.items():
                        self._check_one(name, part, context, add)
        if len(problems) > problems_before_render:
            # A broken template must not stay cached for later renders.
            self._templates.clear()
        return problems

    def _check_one(self, name: str, part: str, context: NoticeContext, add: _AddProblem) -> None:
        if not (self.templates_dir / name).is_file():
            return  # reported once as a missing default
        env = self._env(part)
        try:
            template = env.get_template(name)
            out = template.render(self.variables(context.kind, context))
        except TemplateSyntaxError as exc:
            add(self._display(exc.name or name), exc.lineno, f"syntax error: {exc.message}")
            return
        except TemplateNotFound as exc:
            add(self._display(name), self._template_line(exc), f"template not found: {exc.name}")
            return
        except TemplateError as exc:
            file, line = self._locate(exc, name)
            add(file, line, f"{type(exc).__name__}: {exc.message or exc}", _variant(context))
            return
        except Exception as exc:
            # A template can raise anything ({{ 1 / 0 }}, a bad filter argument): check() exists
            # to report that with its location instead of letting the first send crash.
            file, line = self._locate(exc, name)
            add(file, line, f"{type(exc).__name__}: {exc}", _variant(context))
            return
        if part == "subject" and not one_line(out):
            add(self._display(name), None, "the subject renders empty")
        if part == "html":
            forbidden = sorted(_tags(out) & _FORBIDDEN_TAGS)
            if forbidden:
                add(
                    self._display(name),
                    None,
                    "HTML notices must not contain " + ", ".join(f"<{t}>" for t in forbidden),
                )

    def _override_folders(self) -> list[Path]:
        if not self.templates_dir.is_dir():
            return []
        return [
            entry
            for entry in sorted(self.templates_dir.iterdir())
            if entry.is_dir() and not entry.name.startswith(".")
        ]

    def unknown_override_folders(self, migrations: Iterable[Migration]) -> list[Problem]:
        """Override folders named after no migration: a warning (a retired or future id, a
        typo), never a reason to refuse the definitions or to stop sending."""
        known = {m.id for m in migrations}
        return [
            Problem(
                self._display(entry.name),
                None,
                None,
                f"override folder {entry.name!r} is not a known migration id (ignored)",
            )
            for entry in self._override_folders()
            if entry.name not in known
        ]

    def _check_override_folders(self, known: set[str], add: _AddProblem) -> None:
        allowed_files = {template_file_name(k, p) for k in NOTICE_KINDS for p in PARTS}
        for entry in self._override_folders():
            if entry.name not in known:
                continue  # a warning: unknown_override_folders
            for item in sorted(entry.iterdir()):
                if item.name.startswith("."):
                    continue  # editor and OS droppings (.DS_Store, .swp)
                if item.is_dir() or item.name not in allowed_files:
                    add(
                        self._display(f"{entry.name}/{item.name}"),
                        None,
                        "unknown file in an override folder; expected <kind>.subject.txt, "
                        f"<kind>.txt or <kind>.html with kind one of {', '.join(NOTICE_KINDS)}",
                    )

    def _display(self, name: str) -> str:
        return os.fspath(self.templates_dir / name)

    def _template_line(self, exc: BaseException) -> int | None:
        return self._locate(exc, "")[1]

    def _locate(self, exc: BaseException, fallback: str) -> tuple[str, int | None]:
        """The innermost traceback frame in one of our template files (Jinja rewrites frames)."""
        root = os.path.abspath(self.templates_dir)
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            path = os.path.abspath(frame.filename)
            if path.startswith(root + os.sep):
                return self._display(os.path.relpath(path, root)), frame.lineno
        return self._display(fallback), None


_FORBIDDEN_TAGS = frozenset(
    {"script", "form", "input", "button", "select", "textarea", "iframe", "object", "embed"}
    | {"link", "base", "frame", "frameset", "applet"}
)


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)


def _tags(html: str) -> set[str]:
    parser = _TagCollector()
    parser.feed(html)
    parser.close()
    return parser.tags


# --- Sample data (preview and check) -----------------------------------------------------------

_SAMPLE_MIGRATION = Migration(
    id="sample-migration",
    title="Sample migration",
    severity="medium",
    grace_period_start=date(2016, 4, 4),
    mandatory_opt_in=date(2016, 5, 11),
    summary="A sample change used to check the templates.",
    description="A *sample* description with a [link](https://example.com/docs).\n\n- one\n- two",
    docs_url="https://example.com/docs",
)

_SAMPLE_ACCOUNTS = (
    AccountRef("acc-1001", "Acme Production", "enterprise"),
    AccountRef("acc-1002", "Acme Staging", "developer"),
    AccountRef("acc-1003", "Globex Retail", "free"),
)


def sample_context(migration: Migration, kind: str, today: date) -> NoticeContext:
    """A notice for a sample administrator with 3 sample accounts (``migctl preview``), each
    with its plan's own date; a sample schedule change moved every date by 14 days."""
    _check_kind(kind)
    plans = (
        sorted(migration.mandatory_opt_in) if isinstance(migration.mandatory_opt_in, dict) else []
    )
    moved = kind == "schedule_change"
    accounts = []
    for i, a in enumerate(_SAMPLE_ACCOUNTS):
        plan = plans[i % len(plans)] if plans else a.plan
        own = migration.deadline_for(plan)
        before = own - timedelta(days=14) if moved and own else own
        accounts.append(AccountRef(a.id, a.name, plan, True, own, before))
    own_dates = [a.deadline for a in accounts if a.deadline]
    deadline = min(own_dates) if own_dates else None
    previous = deadline - timedelta(days=14) if moved and deadline else None
    return NoticeContext(
        migration=migration,
        kind=kind,
        admin_email="admin@example.com",
        deadline=deadline,
        days_left=(deadline - today).days if deadline else None,
        accounts=tuple(accounts),
        accounts_total=len(accounts),
        today=today,
        previous_deadline=previous,
    )


def _sample_variants(migration: Migration, kind: str) -> Iterator[NoticeContext]:
    """The shapes a template must cope with: date and TBD, truncated list, emergency or not."""
    today = migration.grace_period_start
    base = sample_context(migration, kind, today)
    deadline = base.deadline or today + timedelta(days=30)
    yield replace(base, deadline=deadline, days_left=(deadline - today).days)
    yield replace(
        base, deadline=None, days_left=None, previous_deadline=deadline, accounts_total=12
    )
    yield replace(
        base,
        deadline=today,
        days_left=0,
        emergency=True,
        reason="Sample reason: an actively exploited vulnerability.",
    )
    yield replace(
        base, deadline=today - timedelta(days=2), days_left=-2, accounts=(), accounts_total=0
    )
    yield replace(base, previous_deadline=None, accounts=base.accounts[:1], accounts_total=1)
    # Every account with a date of its own, whatever the migration's dates: one extended, one
    # TBD, one moved from TBD (per-plan dates and extensions, SPEC §3).
    a, b, c = base.accounts
    yield replace(
        base,
        deadline=deadline,
        days_left=(deadline - today).days,
        accounts=(
            replace(a, dated=True, deadline=deadline, previous_deadline=deadline),
            replace(b, dated=True, deadline=deadline + timedelta(days=20), extended=True),
            replace(c, dated=True, deadline=None, previous_deadline=deadline),
        ),
        deadlines_differ=True,
    )


def _variant(context: NoticeContext) -> str:
    when = context.deadline.isoformat() if context.deadline else "TBD"
    extra = ", emergency" if context.emergency else ""
    return f" (sample {context.kind!r} notice, deadline {when}{extra})"
