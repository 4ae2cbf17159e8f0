"""Reading account files (CSV, JSON Lines): streaming, validating, every bad row located."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any

from migrate_cli.errors import InputError, Problem
from migrate_cli.timeutil import parse_instant

COLUMNS = ("id", "name", "plan", "tags", "created_at", "status", "admins")
REQUIRED_COLUMNS = ("id", "plan", "created_at", "admins")
STATUSES = ("active", "closed")
MAX_PROBLEMS = 200  # listed; the rest are counted
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
MAX_NAME = 1000


@dataclass(frozen=True)
class AccountRow:
    """One validated account from a file or the command line."""

    line: int
    id: str
    # None = the column is absent from the file: an update keeps the stored value.
    name: str | None
    plan: str
    tags: tuple[str, ...] | None
    created_at: datetime
    status: str | None
    admins: tuple[str, ...]


def normalise_email(raw: str) -> str:
    """Lower-case, trim and IDNA-encode an address; ValueError says what is wrong."""
    value = raw.strip()
    if not value:
        raise ValueError("empty address")
    if _CONTROL.search(value) or " " in value:
        raise ValueError(f"{raw!r} contains spaces or control characters")
    if value.count("@") != 1:
        raise ValueError(f"{raw!r} is not an email address")
    local, domain = value.split("@")
    if not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError(f"{raw!r}: the part before @ is not valid (ASCII only)")
    try:
        ascii_domain = domain.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{raw!r}: the domain is not valid") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{raw!r}: the domain is not valid")
    return f"{local.lower()}@{ascii_domain}"


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(";") if part.strip()]


def validate_row(raw: dict[str, Any], line: int, file: str, tz: tzinfo) -> tuple[AccountRow | None, list[Problem]]:
    """Check one record; return the row or the problems (all of them)."""
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append(Problem(file, line, field, message))

    for key, value in raw.items():
        if value is not None and not isinstance(value, (str, list)):
            if key in ("tags", "admins") or not isinstance(value, (int, float)) or isinstance(value, bool):
                bad(key, f"expected text, got {json.dumps(value)[:40]}")
    acc_id = str(raw.get("id") or "").strip()
    if not acc_id:
        bad("id", "is missing")
    elif not ACCOUNT_ID.match(acc_id):
        bad("id", f"{acc_id[:60]!r} is not a valid account id (letters, digits, . _ : @ -; at most 128)")
    name = str(raw.get("name") or "").strip() or acc_id
    if len(name) > MAX_NAME:
        bad("name", f"is {len(name)} characters; the limit is {MAX_NAME}")
    if "\x00" in name:
        bad("name", "contains a NUL character")
    plan = str(raw.get("plan") or "").strip()
    if not plan:
        bad("plan", "is missing")
    elif not NAME_RE.match(plan):
        bad("plan", f"{plan[:40]!r} is not a valid plan name")
    tags = _split(raw.get("tags"))
    for tag in tags:
        if not NAME_RE.match(tag):
            bad("tags", f"{tag[:40]!r} is not a valid tag")
    created_raw = str(raw.get("created_at") or "").strip()
    created: datetime | None = None
    if not created_raw:
        bad("created_at", "is missing")
    else:
        try:
            created = parse_instant(created_raw, tz)
        except ValueError as exc:
            bad("created_at", str(exc))
        except OverflowError:
            bad("created_at", f"{created_raw!r} is out of range")
    status = str(raw.get("status") or "active").strip().lower()
    if status not in STATUSES:
        bad("status", f"{status[:20]!r} is not one of {', '.join(STATUSES)}")
    admins: list[str] = []
    for item in _split(raw.get("admins")):
        try:
            email = normalise_email(item)
        except ValueError as exc:
            bad("admins", str(exc))
            continue
        if email not in admins:
            admins.append(email)
    if problems or created is None:
        return None, problems
    return (
        AccountRow(
            line=line,
            id=acc_id,
            name=name if "name" in raw else None,
            plan=plan,
            tags=tuple(sorted(set(tags))) if "tags" in raw else None,
            created_at=created,
            status=status if "status" in raw else None,
            admins=tuple(admins),
        ),
        [],
    )


class _Lines:
    """Decodes a binary file line by line so a bad byte is reported with its line number."""

    def __init__(self, handle: IO[bytes], file: str, problems: list[Problem]) -> None:
        self.handle = handle
        self.file = file
        self.problems = problems
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:
            self.line += 1
            if self.line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problems.append(
                    Problem(
                        self.file,
                        self.line,
                        None,
                        f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                        "save the file as UTF-8",
                    )
                )
                yield raw.decode("utf-8", errors="replace")


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def read_accounts(
    path: Path, tz: tzinfo, problems: list[Problem], fmt: str | None = None
) -> Iterator[AccountRow]:
    """Yield valid rows; append every problem found to ``problems`` (caller decides)."""
    file = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError([Problem(file, None, None, f"cannot read: {exc.strerror}")]) from None
    with handle:
        lines = _Lines(handle, file, problems)
        if (fmt or detect_format(path)) == "jsonl":
            yield from _read_jsonl(lines, file, tz, problems)
        else:
            yield from _read_csv(lines, file, tz, problems)


def _csv_error(exc: csv.Error) -> str:
    if "new-line character seen in unquoted field" in str(exc):
        # Python's advice ("universal-newline mode") means nothing to an operator.
        return "invalid CSV: lines end with a bare carriage return; save the file with LF or CRLF line ends"
    return f"invalid CSV: {exc}"


def _read_csv(lines: _Lines, file: str, tz: tzinfo, problems: list[Problem]) -> Iterator[AccountRow]:
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        problems.append(Problem(file, 1, None, "file is empty (expected a header line)"))
        return
    except csv.Error as exc:
        problems.append(Problem(file, 1, None, _csv_error(exc)))
        return
    header = [h.strip().lower() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    dupes = {h for h in header if header.count(h) > 1}
    if unknown or missing or dupes:
        if unknown:
            problems.append(Problem(file, 1, None, f"unknown column(s) {', '.join(unknown)}; expected {','.join(COLUMNS)}"))
        if missing:
            problems.append(Problem(file, 1, None, f"missing column(s) {', '.join(missing)}"))
        if dupes:
            problems.append(Problem(file, 1, None, f"duplicate column(s) {', '.join(sorted(dupes))}"))
        return
    previous_end = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(Problem(file, reader.line_num, None, _csv_error(exc)))
            return
        line = previous_end + 1
        previous_end = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue  # blank lines are harmless
        if len(values) != len(header):
            problems.append(
                Problem(file, line, None, f"{len(values)} values but the header has {len(header)} columns")
            )
            continue
        row, found = validate_row(dict(zip(header, values, strict=True)), line, file, tz)
        problems.extend(found)
        if row is not None:
            yield row


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _read_jsonl(lines: Iterable[str], file: str, tz: tzinfo, problems: list[Problem]) -> Iterator[AccountRow]:
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            problems.append(Problem(file, n, None, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except _DuplicateKey as exc:
            problems.append(Problem(file, n, exc.key, f"duplicate field {exc.key!r}"))
            continue
        except RecursionError:
            problems.append(Problem(file, n, None, "invalid JSON: nested too deeply"))
            continue
        except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
            problems.append(Problem(file, n, None, f"invalid JSON: {exc}"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(file, n, None, "expected a JSON object per line"))
            continue
        unknown = [k for k in obj if k not in COLUMNS]
        if unknown:
            problems.append(Problem(file, n, unknown[0], f"unknown field(s) {', '.join(unknown)}"))
            continue
        missing = [c for c in REQUIRED_COLUMNS if c not in obj]
        if missing:
            problems.append(Problem(file, n, missing[0], f"missing field(s) {', '.join(missing)}"))
            continue
        row, found = validate_row(obj, n, file, tz)
        problems.extend(found)
        if row is not None:
            yield row
