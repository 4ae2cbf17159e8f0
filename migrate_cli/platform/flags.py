"""The flags snapshot: every account's state per migration and the last event it reflects."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from migrate_cli.errors import InputError, Problem
from migrate_cli.lifecycle.enrollment import audience_sql, state_sql
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import (
    StoredMigration,
    get_migration,
    load_catalog,
    store_timezone,
)
from migrate_cli.vocabulary import Enrollment, choices

FORMATS = ("jsonl", "csv")
COLUMNS = ("migration", "account", "state", "sequence")
MAX_PROBLEMS = 20


def _migrations(store: Store, only: str | None) -> list[StoredMigration]:
    if only is not None:
        return [get_migration(store, only)]
    return [sm for sm in load_catalog(store) if sm.status == "active"]


def rows(store: Store, only: str | None = None) -> Iterator[tuple[str, str, str, int]]:
    """(migration, account, state, last sequence) for every account in each audience, streamed
    in account order. Sequence 0: no event yet (pending, or switched before events existed)."""
    tz = store_timezone(store)
    for sm in _migrations(store, only):
        where, wparams = audience_sql(sm.migration)
        expr, sparams = state_sql(sm.migration, tz)
        cur = store.conn.execute(
            f"SELECT a.id, {expr}, COALESCE((SELECT max(x.sequence) FROM events x "
            "WHERE x.migration_id = ? AND x.account_id = a.id), 0) FROM accounts a "
            "LEFT JOIN enrollments e ON e.migration_id = ? AND e.account_id = a.id "
            f"WHERE {where} ORDER BY a.id",
            [*sparams, sm.id, sm.id, *wparams],
        )
        for account, state, sequence in cur:
            yield sm.id, account, state, sequence


def write_export(out: IO[str], store: Store, only: str | None, fmt: str) -> int:
    """Stream the snapshot as JSON Lines or CSV; returns the number of rows."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows(store, only):
            writer.writerow(row)
            count += 1
        return count
    for m, account, state, sequence in rows(store, only):
        out.write(
            json.dumps(
                {"migration": m, "account": account, "state": state, "sequence": sequence},
                separators=(",", ":"),
            )
            + "\n"
        )
        count += 1
    return count


def read_view(path: Path, fmt: str) -> Iterator[tuple[str, str, str]]:
    """The platform's own view (the export's format): (migration, account, state) per row,
    streamed as read; every bad line is reported at once, with its number, when the file ends
    (the caller's rows so far are discarded then: they only fill a temporary table)."""
    problems: list[Problem] = []
    states = set(choices(Enrollment))
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError([Problem(str(path), None, None, exc.strerror or str(exc))]) from None
    with handle:
        records: Iterator[tuple[int, Any]]
        if fmt == "csv":
            reader = csv.DictReader(handle)
            missing = {"migration", "account", "state"} - set(reader.fieldnames or ())
            if missing:
                raise InputError(
                    [
                        Problem(
                            str(path), 1, None, f"missing column(s): {', '.join(sorted(missing))}"
                        )
                    ]
                )
            records = ((n, r) for n, r in enumerate(reader, start=2))
        else:
            records = ((n, line) for n, line in enumerate(handle, start=1) if line.strip())
        for n, record in records:
            if fmt != "csv":
                try:
                    record = json.loads(record)
                except json.JSONDecodeError as exc:
                    problems.append(Problem(str(path), n, None, f"not JSON: {exc.msg}"))
                    continue
                if not isinstance(record, dict):
                    problems.append(Problem(str(path), n, None, "expected a JSON object"))
                    continue
            for key in ("migration", "account", "state"):
                if not isinstance(record.get(key), str) or not record[key]:
                    problems.append(Problem(str(path), n, key, "missing or not a string"))
                    break
            else:
                if record["state"] not in states:
                    problems.append(
                        Problem(
                            str(path),
                            n,
                            "state",
                            f"unknown state {record['state']!r} (one of {', '.join(sorted(states))})",
                        )
                    )
                    continue
                if not problems:  # after the first problem nothing is compared: only checked
                    yield (record["migration"], record["account"], record["state"])
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise InputError(problems, f"{path}: {len(problems)} problem(s); nothing was compared")


def check(store: Store, path: Path, fmt: str, only: str | None = None) -> list[dict[str, Any]]:
    """The accounts whose state in the platform's view differs from migctl's. An account the
    view does not list counts as pending there (the old behaviour)."""
    conn = store.conn
    conn.execute("DROP TABLE IF EXISTS temp.flags_view")
    conn.execute(
        "CREATE TEMP TABLE flags_view (migration TEXT, account TEXT, state TEXT, "
        "PRIMARY KEY (migration, account)) WITHOUT ROWID"
    )
    conn.execute("DROP TABLE IF EXISTS temp.flags_ours")
    conn.execute(
        "CREATE TEMP TABLE flags_ours (migration TEXT, account TEXT, state TEXT, "
        "PRIMARY KEY (migration, account)) WITHOUT ROWID"
    )
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO temp.flags_view VALUES (?, ?, ?)", read_view(path, fmt)
        )
        conn.executemany(
            "INSERT INTO temp.flags_ours VALUES (?, ?, ?)",
            ((m, a, s) for m, a, s, _ in rows(store, only)),
        )
        scope = {sm.id for sm in _migrations(store, only)}
        differ: list[dict[str, Any]] = []
        cur = conn.execute(
            "SELECT o.migration, o.account, o.state, COALESCE(v.state, 'pending') "
            "FROM temp.flags_ours o LEFT JOIN temp.flags_view v "
            "ON v.migration = o.migration AND v.account = o.account "
            "WHERE o.state != COALESCE(v.state, 'pending') "
            "UNION ALL SELECT v.migration, v.account, NULL, v.state FROM temp.flags_view v "
            "WHERE v.state != 'pending' AND NOT EXISTS (SELECT 1 FROM temp.flags_ours o "
            "WHERE o.migration = v.migration AND o.account = v.account) ORDER BY 1, 2"
        )
        for m, account, ours, theirs in cur:
            if m in scope:
                differ.append(
                    {"migration": m, "account": account, "migctl": ours, "platform": theirs}
                )
        return differ
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.flags_view")
        conn.execute("DROP TABLE IF EXISTS temp.flags_ours")
