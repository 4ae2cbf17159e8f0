"""Dates, instants and durations: strict parsing and the configured-timezone rules."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"^(\d{1,5})([dhm])$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str) -> timedelta:
    """Parse ``30d``, ``12h`` or ``90m``; raise ValueError with a readable reason."""
    m = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"expected a duration like 30d, 12h or 90m, got {text!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, for messages and JSON."""
    secs = int(value.total_seconds())
    if secs % 86400 == 0:
        return f"{secs // 86400}d"
    if secs % 3600 == 0:
        return f"{secs // 3600}h"
    return f"{secs // 60}m"


def parse_date(text: str) -> date:
    """Parse a strict ISO date (YYYY-MM-DD) that exists on the calendar."""
    if not isinstance(text, str) or not _DATE.match(text.strip()):
        raise ValueError(f"expected a date like 2016-05-11, got {text!r}")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a real calendar date") from None


def get_timezone(name: str) -> tzinfo:
    """Resolve an IANA timezone name."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder
        raise ValueError(
            f"unknown timezone {name!r} (use an IANA name like Europe/Paris)"
        ) from None


@lru_cache(maxsize=4096)  # planning asks for the same few dates once per administrator
def start_of_day(day: date, tz: tzinfo) -> datetime:
    """Midnight at the start of ``day`` in ``tz``, as an aware UTC instant."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def parse_instant(text: str, tz: tzinfo) -> datetime:
    """Parse ``--now``: an ISO date (midnight in ``tz``) or datetime (naive means ``tz``)."""
    raw = text.strip()
    if _DATE.match(raw):
        return start_of_day(parse_date(raw), tz)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ValueError(
            f"expected an ISO date or datetime like 2016-05-11 or 2016-05-11T09:30:00+02:00, "
            f"got {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def local_date(instant: datetime, tz: tzinfo) -> date:
    """The calendar date of ``instant`` in ``tz``."""
    return instant.astimezone(tz).date()


def days_until(deadline: date, now: datetime, tz: tzinfo) -> int:
    """Whole calendar days from today (in ``tz``) to ``deadline``; 0 on the day, negative after."""
    return (deadline - local_date(now, tz)).days


def utcnow() -> datetime:
    """The real current instant (the only place the wall clock is read)."""
    return datetime.now(UTC)


def iso(instant: datetime) -> str:
    """An aware instant as an ISO string in UTC with a Z suffix."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
