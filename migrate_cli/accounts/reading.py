"""Reading account files (CSV, JSON Lines): streaming, validating, every bad row located."""

from __future__ import annotations

import csv
import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any

from migrate_cli.definitions.yamlsafe import encodable
from migrate_cli.errors import InputError, Problem
from migrate_cli.timeutil import parse_instant

COLUMNS = ("id", "name", "plan", "tags", "created_at", "status", "admins")
REQUIRED_COLUMNS = ("id", "plan", "created_at", "admins")
STATUSES = ("active", "closed")
MAX_PROBLEMS = 200  # listed; the rest are counted
# A header is checked in linear time; beyond this many columns it is not an accounts file.
MAX_COLUMNS = 64
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
# An ASCII address that the full check below accepts unchanged except for case: local part of
# at most 64 characters without leading, trailing or double dots; two or more domain labels of
# 1-63 letters, digits and inner hyphens, no trailing dot. Explicit classes, no IGNORECASE (which
# would let the Kelvin sign match "k").
_LOCAL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@){_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*@(?:{_DOMAIN_LABEL}\.)+{_DOMAIN_LABEL}"
)
MAX_NAME = 1000
# The same rules as ACCOUNT_ID and NAME_RE for text that needs no trimming (for fullmatch).
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_STATUS_TEXT = {"active": "active", "closed": "closed", "": "active"}
_MEMO_LIMIT = 4096  # entries per memo of the CSV fast path; it starts again when full


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
    # Nearly every address is plain ASCII that only needs lower-casing: one regex instead of
    # the IDNA codec (tests/test_perf_equivalence.py checks both paths agree on any input).
    if _PLAIN_EMAIL.fullmatch(value):
        return value.lower()
    return _normalise_email_full(raw)


def _normalise_email_full(raw: str) -> str:
    # The complete rules: IDNA for international domains, and the exact reason for a refusal.
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


@functools.lru_cache(maxsize=4096)
def _parse_created(text: str, tz: tzinfo) -> datetime:
    # Creation dates repeat (a few thousand distinct days in a million accounts); errors are
    # not cached, so a bad value is reported on every line that has it.
    return parse_instant(text, tz)


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(";") if part.strip()]


def validate_row(
    raw: dict[str, Any], line: int, file: str, tz: tzinfo
) -> tuple[AccountRow | None, list[Problem]]:
    """Check one record; return the row or the problems (all of them)."""
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append(Problem(file, line, field, message))

    for key, value in raw.items():
        # Text only (numbers too: NaN, -Infinity and 1e400 would be stored as "nan", "inf");
        # tags and admins may also be a list of texts.
        items = value if isinstance(value, list) and key in ("tags", "admins") else [value]
        for item in items:
            if item is not None and not isinstance(item, str):
                bad(key, f"expected text, got {json.dumps(item)[:40]}")
            elif isinstance(item, str) and not encodable(item):
                bad(key, "contains a character that is not valid Unicode (a lone surrogate)")
    if problems:
        return None, problems
    acc_id = str(raw.get("id") or "").strip()
    if not acc_id:
        bad("id", "is missing")
    elif not ACCOUNT_ID.match(acc_id):
        bad(
            "id",
            f"{acc_id[:60]!r} is not a valid account id (letters, digits, . _ : @ -; at most 128)",
        )
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
            created = _parse_created(created_raw, tz)
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
) -> Generator[AccountRow, None, None]:
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


def plain_csv_row(header: list[str], tz: tzinfo) -> Callable[[list[str], int], AccountRow | None]:
    """A fast check of one CSV record for the common case: the row ``validate_row`` would
    return for ``dict(zip(header, values))``, or None when the record needs the full check
    (which then gives the verdict and the exact problems). Plans and tag lists repeat, so
    their verdicts are memoised (bounded)."""
    col = {name: i for i, name in enumerate(header)}
    i_id, i_plan, i_created, i_admins = (col[c] for c in REQUIRED_COLUMNS)
    i_name, i_tags, i_status = col.get("name"), col.get("tags"), col.get("status")
    plans: dict[str, str] = {}
    tag_lists: dict[str, tuple[str, ...]] = {}

    def check(values: list[str], line: int) -> AccountRow | None:
        acc_id = values[i_id]
        if not _PLAIN_ID.fullmatch(acc_id):
            return None
        name = None
        if i_name is not None:
            name = values[i_name].strip() or acc_id
            if len(name) > MAX_NAME or "\x00" in name:
                return None
        plan = plans.get(values[i_plan])
        if plan is None:
            plan = values[i_plan].strip()
            if not _PLAIN_NAME.fullmatch(plan):
                return None
            if len(plans) >= _MEMO_LIMIT:
                plans.clear()
            plans[values[i_plan]] = plan
        tags = None
        if i_tags is not None:
            tags = tag_lists.get(values[i_tags])
            if tags is None:
                parts = _split(values[i_tags])
                if not all(_PLAIN_NAME.fullmatch(tag) for tag in parts):
                    return None
                tags = tuple(sorted(set(parts)))
                if len(tag_lists) >= _MEMO_LIMIT:
                    tag_lists.clear()
                tag_lists[values[i_tags]] = tags
        created_raw = values[i_created].strip()
        if not created_raw:
            return None
        try:
            created = _parse_created(created_raw, tz)
        except (ValueError, OverflowError):
            return None
        status = None
        if i_status is not None:
            status = _STATUS_TEXT.get(values[i_status])
            if status is None:
                status = (values[i_status] or "active").strip().lower()
                if status not in STATUSES:
                    return None
        admins: list[str] = []
        for part in values[i_admins].split(";"):
            item = part.strip()
            if not item:
                continue
            if _PLAIN_EMAIL.fullmatch(item):
                email = item.lower()
            else:
                try:
                    email = _normalise_email_full(item)
                except ValueError:
                    return None
            if email not in admins:
                admins.append(email)
        return AccountRow(line, acc_id, name, plan, tags, created, status, tuple(admins))

    return check


def _read_csv(
    lines: _Lines, file: str, tz: tzinfo, problems: list[Problem]
) -> Iterator[AccountRow]:
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        problems.append(Problem(file, 1, None, "file is empty (expected a header line)"))
        return
    except csv.Error as exc:
        problems.append(Problem(file, 1, None, _csv_error(exc)))
        return
    if len(header) > MAX_COLUMNS:
        problems.append(
            Problem(
                file,
                1,
                None,
                f"the header has {len(header)} columns, more than {MAX_COLUMNS}; expected "
                f"{','.join(COLUMNS)}",
            )
        )
        return
    header = [h.strip().lower() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    dupes = {h for h, n in Counter(header).items() if n > 1}
    if unknown or missing or dupes:
        if unknown:
            problems.append(
                Problem(
                    file,
                    1,
                    None,
                    f"unknown column(s) {', '.join(unknown)}; expected {','.join(COLUMNS)}",
                )
            )
        if missing:
            problems.append(Problem(file, 1, None, f"missing column(s) {', '.join(missing)}"))
        if dupes:
            problems.append(
                Problem(file, 1, None, f"duplicate column(s) {', '.join(sorted(dupes))}")
            )
        return
    fast = plain_csv_row(header, tz)
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
        if not values or not "".join(values).strip():
            continue  # blank lines are harmless
        if len(values) != len(header):
            problems.append(
                Problem(
                    file,
                    line,
                    None,
                    f"{len(values)} values but the header has {len(header)} columns",
                )
            )
            continue
        row = fast(values, line)
        if row is None:
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


def _read_jsonl(
    lines: Iterable[str], file: str, tz: tzinfo, problems: list[Problem]
) -> Iterator[AccountRow]:
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


def read_account_ids(lines: Iterable[str]) -> list[str]:
    """Account ids, one a line (`--from-file`): blank lines and # comments skipped, a header
    line (id, account, account_id) skipped, and of a CSV line only the first column kept."""
    ids = []
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if n == 1 and text.lower() in ("id", "account", "account_id"):
            continue
        ids.append(text.split(",")[0].strip())
    return ids
