"""Migration definitions: the validated model of migrations.yaml, with every problem located."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from migrate_cli.definitions.yamlsafe import Located, load_yaml
from migrate_cli.errors import InputError, Problem, did_you_mean
from migrate_cli.timeutil import (
    format_duration,
    get_timezone,
    parse_date,
    parse_duration,
    start_of_day,
)
from migrate_cli.vocabulary import NoticeKind, Severity, choices

SEVERITIES = choices(Severity)
NOTICE_KINDS = choices(NoticeKind)
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PLAN_OR_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
URL = re.compile(r"^https?://[^\s<>\"']+$")
TBD = "TBD"
EARLIEST_DATE = date(1970, 1, 1)
LATEST_DATE = date(2999, 12, 31)

_TOP_KEYS = {"defaults", "migrations"}
_DEFAULT_KEYS = {"timezone", "notices", "severity"}
_NOTICE_KEYS = {"reminder_every", "escalate_before", "min_gap", "min_notice"}
DEFAULT_MIN_NOTICE = timedelta(days=14)
# The enforcement scope of a migration with one date for every account (else: one per plan).
ALL_SCOPE = "*"
_MIGRATION_KEYS = {
    "id",
    "title",
    "severity",
    "grace_period_start",
    "mandatory_opt_in",
    "grace_period",
    "summary",
    "description",
    "docs_url",
    "applies_to",
    "notices",
}
_AUDIENCE_KEYS = {"plans", "tags"}


@dataclass(frozen=True)
class NoticeSettings:
    """The notice cadence (SPEC section 3) after defaults, severity and migration overrides."""

    reminder_every: timedelta | None = timedelta(days=14)
    escalate_before: tuple[timedelta, ...] = tuple(timedelta(days=d) for d in (30, 14, 7, 3, 1))
    min_gap: timedelta = timedelta(days=2)
    # Rule 3a: no account is enforced sooner than this after its date was recorded by sync.
    min_notice: timedelta = DEFAULT_MIN_NOTICE

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reminder_every": format_duration(self.reminder_every) if self.reminder_every else None,
            "escalate_before": [format_duration(d) for d in self.escalate_before],
            "min_gap": format_duration(self.min_gap),
        }
        if self.min_notice != DEFAULT_MIN_NOTICE:
            # Only when set: stores synced before min_notice existed keep their hashes.
            out["min_notice"] = format_duration(self.min_notice)
        return out


@dataclass(frozen=True)
class Audience:
    """Which accounts a migration applies to; None means no restriction on that axis."""

    plans: frozenset[str] | None = None
    tags: frozenset[str] | None = None

    def matches(self, plan: str, tags: set[str] | frozenset[str]) -> bool:
        if self.plans is not None and plan not in self.plans:
            return False
        return not (self.tags is not None and not (self.tags & set(tags)))

    def to_json(self) -> dict[str, list[str]] | None:
        if self.plans is None and self.tags is None:
            return None
        out: dict[str, list[str]] = {}
        if self.plans is not None:
            out["plans"] = sorted(self.plans)
        if self.tags is not None:
            out["tags"] = sorted(self.tags)
        return out


@dataclass(frozen=True)
class Migration:
    """One breaking change as defined in migrations.yaml."""

    id: str
    title: str
    severity: str
    grace_period_start: date
    # None = TBD; a date; or plan -> date (plans missing from the map are TBD)
    mandatory_opt_in: date | dict[str, date] | None
    grace_period: timedelta | None = None
    summary: str = ""
    description: str = ""
    docs_url: str | None = None
    applies_to: Audience = field(default_factory=Audience)
    notices: NoticeSettings = field(default_factory=NoticeSettings)
    line: int | None = None

    @property
    def is_tbd(self) -> bool:
        return self.mandatory_opt_in is None

    @property
    def per_plan(self) -> bool:
        return isinstance(self.mandatory_opt_in, dict)

    def deadline_for(self, plan: str) -> date | None:
        """The mandatory date for an account on ``plan`` (None = TBD)."""
        if isinstance(self.mandatory_opt_in, dict):
            return self.mandatory_opt_in.get(plan)
        return self.mandatory_opt_in

    def deadlines(self) -> list[date]:
        if isinstance(self.mandatory_opt_in, dict):
            return sorted(set(self.mandatory_opt_in.values()))
        return [self.mandatory_opt_in] if self.mandatory_opt_in else []

    def grace_start_instant(self, tz: tzinfo) -> datetime:
        return start_of_day(self.grace_period_start, tz)

    def dates_by_scope(self) -> dict[str, date]:
        """The enforcement scopes that have a date: ALL_SCOPE for one date, else each plan."""
        if isinstance(self.mandatory_opt_in, dict):
            return dict(sorted(self.mandatory_opt_in.items()))
        return {ALL_SCOPE: self.mandatory_opt_in} if self.mandatory_opt_in else {}

    @property
    def immediate_by_definition(self) -> bool:
        """Severity critical with a zero grace period: enforced at its start (rule 4)."""
        return self.severity == "critical" and self.grace_period == timedelta(0)

    def mandatory_json(self) -> str | dict[str, str] | None:
        if isinstance(self.mandatory_opt_in, dict):
            return {p: d.isoformat() for p, d in sorted(self.mandatory_opt_in.items())}
        return self.mandatory_opt_in.isoformat() if self.mandatory_opt_in else None

    def to_json(self) -> dict[str, Any]:
        """Canonical form stored in the store and compared by sync."""
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "grace_period_start": self.grace_period_start.isoformat(),
            "mandatory_opt_in": self.mandatory_json(),
            # `is not None`: a zero grace period (0d, immediate) is falsy but must survive the store.
            "grace_period": format_duration(self.grace_period)
            if self.grace_period is not None
            else None,
            "summary": self.summary,
            "description": self.description,
            "docs_url": self.docs_url,
            "applies_to": self.applies_to.to_json(),
            "notices": self.notices.to_json(),
        }


@dataclass(frozen=True)
class Definitions:
    """Everything migrations.yaml says."""

    path: str
    timezone_name: str
    timezone: tzinfo
    migrations: tuple[Migration, ...]
    source_hash: str

    def get(self, migration_id: str) -> Migration | None:
        for m in self.migrations:
            if m.id == migration_id:
                return m
        return None

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.migrations]


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, doc: Located) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        field_name = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
        field_name = field_name.replace(".[", "[")
        self.problems.append(
            Problem(self.doc.file, self.doc.line(*path), field_name or None, message)
        )

    def unknown_keys(
        self, value: dict[str, Any], allowed: set[str], path: tuple[str | int, ...]
    ) -> None:
        for key in value:
            if key not in allowed:
                extra = did_you_mean(key, allowed, cutoff=0.75)
                self.add(
                    (*path, key),
                    f"unknown key {key!r}{extra}; allowed: {', '.join(sorted(allowed))}",
                )

    def mapping(self, value: Any, path: tuple[str | int, ...]) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {_kind(value)}")
            return None
        return value

    def text(self, value: Any, path: tuple[str | int, ...], *, required: bool, limit: int) -> str:
        if value is None:
            if required:
                self.add(path, "is required")
            return ""
        if not isinstance(value, str):
            self.add(path, f"expected text, got {_kind(value)}")
            return ""
        if required and not value.strip():
            self.add(path, "must not be empty")
        if len(value) > limit:
            self.add(path, f"is {len(value)} characters; the limit is {limit}")
        return value

    def date(self, value: Any, path: tuple[str | int, ...]) -> date | None:
        if not isinstance(value, str):
            self.add(path, f"expected a date like 2016-05-11, got {_kind(value)}")
            return None
        try:
            day = parse_date(value)
        except ValueError as exc:
            self.add(path, str(exc))
            return None
        # Far-off years are typos, and dates near the calendar's ends overflow date arithmetic.
        if not (EARLIEST_DATE <= day <= LATEST_DATE):
            self.add(path, f"{value} is outside {EARLIEST_DATE.year}–{LATEST_DATE.year}")
            return None
        return day

    def duration(self, value: Any, path: tuple[str | int, ...]) -> timedelta | None:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.add(path, str(exc))
            return None

    def notices(
        self, value: Any, path: tuple[str | int, ...], base: NoticeSettings
    ) -> NoticeSettings:
        mapping = self.mapping(value, path)
        if mapping is None:
            return base
        self.unknown_keys(mapping, _NOTICE_KEYS, path)
        result = base
        if "reminder_every" in mapping:
            raw = mapping["reminder_every"]
            if raw is None or raw == "never":
                result = replace(result, reminder_every=None)
            else:
                d = self.duration(raw, (*path, "reminder_every"))
                if d is not None and d <= timedelta(0):
                    self.add(
                        (*path, "reminder_every"), "must be longer than 0 (use 'never' to disable)"
                    )
                elif d is not None:
                    result = replace(result, reminder_every=d)
        if "escalate_before" in mapping:
            raw = mapping["escalate_before"]
            if not isinstance(raw, list):
                self.add(
                    (*path, "escalate_before"),
                    f"expected a list like [30d, 7d, 1d], got {_kind(raw)}",
                )
            else:
                items = [self.duration(x, (*path, "escalate_before", i)) for i, x in enumerate(raw)]
                offsets = sorted({d for d in items if d is not None}, reverse=True)
                result = replace(result, escalate_before=tuple(offsets))
        if "min_gap" in mapping:
            d = self.duration(mapping["min_gap"], (*path, "min_gap"))
            if d is not None:
                result = replace(result, min_gap=d)
        if "min_notice" in mapping:
            d = self.duration(mapping["min_notice"], (*path, "min_notice"))
            if d is not None:
                result = replace(result, min_notice=d)
        return result

    def names(self, value: Any, path: tuple[str | int, ...], what: str) -> frozenset[str] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            self.add(path, f"expected a non-empty list of {what}")
            return None
        out = set()
        for i, item in enumerate(value):
            if not isinstance(item, str) or not PLAN_OR_TAG.match(item):
                self.add((*path, i), f"{item!r} is not a valid {what[:-1]} name")
            else:
                out.add(item)
        return frozenset(out)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"{value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _migration(
    c: _Checker,
    raw: Any,
    index: int,
    base_notices: dict[str, NoticeSettings],
    from_store: bool = False,
) -> Migration | None:
    path: tuple[str | int, ...] = ("migrations", index)
    m = c.mapping(raw, path)
    if m is None:
        if raw is None:
            c.add(path, "expected a migration mapping, got nothing")
        return None
    before = len(c.problems)
    c.unknown_keys(m, _MIGRATION_KEYS, path)
    mid = m.get("id")
    if mid is None:
        c.add((*path, "id"), "is required")
    elif not isinstance(mid, str) or not SLUG.match(mid) or len(mid) > 64:
        c.add((*path, "id"), f"{mid!r} is not a slug (lowercase letters, digits and single dashes)")
    title = c.text(m.get("title"), (*path, "title"), required=True, limit=200)
    if "\n" in title or "\r" in title:
        c.add((*path, "title"), "must be a single line")
    severity = m.get("severity")
    if severity not in SEVERITIES:
        c.add(
            (*path, "severity"),
            "is required"
            if severity is None
            else f"{_kind(severity)} is not one of {', '.join(SEVERITIES)}",
        )
    start = None
    if m.get("grace_period_start") is None:
        c.add((*path, "grace_period_start"), "is required")
    else:
        start = c.date(m["grace_period_start"], (*path, "grace_period_start"))
    grace = None
    if m.get("grace_period") is not None:
        grace = c.duration(m["grace_period"], (*path, "grace_period"))
        if grace is not None and grace.total_seconds() % 86400:
            c.add((*path, "grace_period"), "must be whole days (e.g. 30d)")
            grace = None
    mandatory: date | dict[str, date] | None = None
    raw_mand = m.get("mandatory_opt_in")
    mpath = (*path, "mandatory_opt_in")
    if raw_mand is None and from_store:
        mandatory = None  # the stored form writes TBD as null; never derive a date from it
    elif raw_mand is None:
        if grace is None and "grace_period" not in m:
            c.add(
                mpath, "is required (a date, TBD, a plan -> date map) unless grace_period is given"
            )
        elif grace is not None and start is not None:
            mandatory = start + grace
            if mandatory > LATEST_DATE:
                c.add((*path, "grace_period"), f"ends after {LATEST_DATE.isoformat()}")
                mandatory = None
    elif raw_mand == TBD:
        mandatory = None
    elif isinstance(raw_mand, dict):
        if not raw_mand:
            c.add(mpath, "a plan -> date map must not be empty")
        per_plan: dict[str, date] = {}
        for plan, value in raw_mand.items():
            if not PLAN_OR_TAG.match(plan):
                c.add((*mpath, plan), f"{plan!r} is not a valid plan name")
                continue
            if value == TBD:
                continue  # TBD for this plan = left out of the map
            d = c.date(value, (*mpath, plan))
            if d is not None:
                per_plan[plan] = d
        # Plans missing from the map are TBD, so a map of TBDs only is plain TBD (an empty
        # map would be stored as {} and then refused when the store reads it back).
        mandatory = per_plan or None
    elif isinstance(raw_mand, str) and raw_mand.strip().upper() == TBD:
        c.add(mpath, f"write TBD in capitals, got {raw_mand!r}")
    else:
        mandatory = c.date(raw_mand, mpath)
    if start is not None:
        for plan, d in mandatory.items() if isinstance(mandatory, dict) else [(None, mandatory)]:
            if d is not None and d < start:
                where = (*mpath, plan) if plan else mpath
                c.add(where, f"{d.isoformat()} is before grace_period_start {start.isoformat()}")
    summary = c.text(m.get("summary"), (*path, "summary"), required=True, limit=500)
    description = c.text(m.get("description"), (*path, "description"), required=False, limit=20_000)
    docs_url = m.get("docs_url")
    if docs_url is not None and (not isinstance(docs_url, str) or not URL.match(docs_url)):
        c.add((*path, "docs_url"), f"{_kind(docs_url)} is not an http(s) URL")
    audience = Audience()
    aud = c.mapping(m.get("applies_to"), (*path, "applies_to"))
    if aud is not None:
        c.unknown_keys(aud, _AUDIENCE_KEYS, (*path, "applies_to"))
        audience = Audience(
            plans=c.names(aud.get("plans"), (*path, "applies_to", "plans"), "plans"),
            tags=c.names(aud.get("tags"), (*path, "applies_to", "tags"), "tags"),
        )
    notices = c.notices(
        m.get("notices"),
        (*path, "notices"),
        base_notices.get(severity if isinstance(severity, str) else "", base_notices[""]),
    )
    if len(c.problems) > before:
        return None
    assert isinstance(mid, str) and isinstance(severity, str) and start is not None
    return Migration(
        id=mid,
        title=title.strip(),
        severity=severity,
        grace_period_start=start,
        mandatory_opt_in=mandatory,
        grace_period=grace,
        summary=summary.strip(),
        description=description,
        docs_url=docs_url,
        applies_to=audience,
        notices=notices,
        line=c.doc.line(*path),
    )


def parse_definitions(
    doc: Located, source_hash: str = "", *, from_store: bool = False
) -> Definitions:
    """Validate a loaded document; raise InputError with every problem found.

    ``from_store``: the document is the canonical JSON kept in the store, where a null
    ``mandatory_opt_in`` means TBD even when a ``grace_period`` is also recorded."""
    c = _Checker(doc)
    top = c.mapping(doc.data, ())
    if top is None:
        raise InputError(
            c.problems or [Problem(doc.file, 1, None, "expected a mapping at the top")]
        )
    c.unknown_keys(top, _TOP_KEYS, ())
    defaults = c.mapping(top.get("defaults"), ("defaults",)) or {}
    c.unknown_keys(defaults, _DEFAULT_KEYS, ("defaults",))
    tz_name = defaults.get("timezone", "UTC")
    tz: tzinfo | None = None
    if not isinstance(tz_name, str):
        c.add(("defaults", "timezone"), f"expected a timezone name, got {_kind(tz_name)}")
    else:
        try:
            tz = get_timezone(tz_name)
        except ValueError as exc:
            c.add(("defaults", "timezone"), str(exc))
    base = c.notices(defaults.get("notices"), ("defaults", "notices"), NoticeSettings())
    per_severity: dict[str, NoticeSettings] = {"": base}
    sev_map = c.mapping(defaults.get("severity"), ("defaults", "severity")) or {}
    for sev, body in sev_map.items():
        spath = ("defaults", "severity", sev)
        if sev not in SEVERITIES:
            c.add(spath, f"{sev!r} is not one of {', '.join(SEVERITIES)}")
            continue
        inner = c.mapping(body, spath) or {}
        c.unknown_keys(inner, {"notices"}, spath)
        per_severity[sev] = c.notices(inner.get("notices"), (*spath, "notices"), base)
    for sev in SEVERITIES:
        per_severity.setdefault(sev, base)
    raw_migrations = top.get("migrations")
    migrations: list[Migration] = []
    if raw_migrations is None:
        c.add(("migrations",), "is required (a list of migrations)")
    elif not isinstance(raw_migrations, list):
        c.add(("migrations",), f"expected a list, got {_kind(raw_migrations)}")
    else:
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_migrations):
            mig = _migration(c, raw, i, per_severity, from_store)
            if mig is None:
                continue
            if mig.id in seen:
                c.add(
                    (("migrations", i, "id")),
                    f"duplicate id {mig.id!r} (also migrations[{seen[mig.id]}])",
                )
                continue
            seen[mig.id] = i
            migrations.append(mig)
    if c.problems:
        raise InputError(c.problems, f"{doc.file}: {len(c.problems)} problem(s) in the definitions")
    assert tz is not None
    return Definitions(
        path=doc.file,
        timezone_name=tz_name,
        timezone=tz,
        migrations=tuple(migrations),
        source_hash=source_hash,
    )


def load_definitions(path: Path) -> Definitions:
    """Load and validate migrations.yaml (InputError lists every problem with file and line)."""
    doc = load_yaml(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return parse_definitions(doc, digest)


def canonical_hash(migration: Migration) -> str:
    return hashlib.sha256(json.dumps(migration.to_json(), sort_keys=True).encode()).hexdigest()
