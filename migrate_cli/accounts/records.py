"""Accounts and administrators in the store: import (all-or-nothing), add, list, show."""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any

from migrate_cli.accounts.reading import (
    MAX_PROBLEMS,
    AccountRow,
    normalise_email,
    read_accounts,
    validate_row,
)
from migrate_cli.errors import InputError, MigctlError, NotFoundError, Problem
from migrate_cli.lifecycle import status_figures
from migrate_cli.lifecycle.enrollment import audience_sql, deadline_sql, state_sql
from migrate_cli.progress import NO_PROGRESS, Progress, counted
from migrate_cli.store import events
from migrate_cli.store.db import Store, audit, db_time
from migrate_cli.store.stored_migrations import StoredMigration, load_catalog, store_timezone
from migrate_cli.timeutil import iso

BATCH = 5_000
# Creation instants repeat (whole days): format each distinct one once.
_db_time = functools.lru_cache(maxsize=4096)(db_time)


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    closed: int = 0
    without_admins: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS imp_accounts (
    line INTEGER, id TEXT, name TEXT, plan TEXT, tags TEXT, created_at TEXT, status TEXT, admins TEXT,
    tags_given INTEGER
);
CREATE TEMP TABLE IF NOT EXISTS imp_admins (account_id TEXT, email TEXT);
CREATE TEMP TABLE IF NOT EXISTS imp_tags (account_id TEXT, tag TEXT);
DELETE FROM imp_accounts; DELETE FROM imp_admins; DELETE FROM imp_tags;
"""


def _stage(conn: sqlite3.Connection, rows: Iterable[AccountRow]) -> int:
    count = 0
    accounts: list[tuple[Any, ...]] = []
    admins: list[tuple[str, str]] = []
    tags: list[tuple[str, str]] = []

    def flush() -> None:
        conn.executemany("INSERT INTO imp_accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", accounts)
        conn.executemany("INSERT INTO imp_admins VALUES (?, ?)", admins)
        conn.executemany("INSERT INTO imp_tags VALUES (?, ?)", tags)
        accounts.clear()
        admins.clear()
        tags.clear()

    for row in rows:
        count += 1
        accounts.append(
            (
                row.line,
                row.id,
                row.name,
                row.plan,
                None if row.tags is None else ";".join(row.tags),
                _db_time(row.created_at),
                row.status,
                ";".join(sorted(row.admins)),
                row.tags is not None,
            )
        )
        admins.extend((row.id, email) for email in row.admins)
        if row.tags is not None:
            tags.extend((row.id, tag) for tag in row.tags)
        if len(accounts) >= BATCH:
            flush()
    flush()
    return count


def _merge(
    conn: sqlite3.Connection,
    now: datetime,
    actor: str,
    source: str,
    report: ImportReport,
    catalog: list[StoredMigration],
    tz: tzinfo,
) -> None:
    stamp = db_time(now)
    conn.execute("CREATE INDEX IF NOT EXISTS temp.imp_accounts_id ON imp_accounts(id)")
    conn.execute("CREATE INDEX IF NOT EXISTS temp.imp_admins_acc ON imp_admins(account_id, email)")
    conn.execute("CREATE INDEX IF NOT EXISTS temp.imp_tags_acc ON imp_tags(account_id, tag)")
    # Columns absent from the file keep the stored values (an import never blanks a field it
    # was not given); new accounts get the defaults.
    conn.execute(
        "UPDATE imp_accounts SET name = COALESCE(imp_accounts.name, a.name), "
        "status = COALESCE(imp_accounts.status, a.status), tags = COALESCE(imp_accounts.tags, a.tags) "
        "FROM accounts a WHERE a.id = imp_accounts.id AND (imp_accounts.name IS NULL "
        "OR imp_accounts.status IS NULL OR imp_accounts.tags IS NULL)"
    )
    conn.execute(
        "UPDATE imp_accounts SET name = COALESCE(name, id), status = COALESCE(status, 'active'), "
        "tags = COALESCE(tags, '') WHERE name IS NULL OR status IS NULL OR tags IS NULL"
    )
    # Current admin list per account, in the same canonical form as the staged one.
    conn.execute(
        "CREATE TEMP TABLE cur_admins AS SELECT aa.account_id AS id, "
        "group_concat(aa.email, ';') AS admins FROM "
        "(SELECT account_id, email FROM account_admins WHERE account_id IN "
        "(SELECT id FROM imp_accounts) ORDER BY account_id, email) aa GROUP BY aa.account_id"
    )
    conn.execute("CREATE INDEX temp.cur_admins_id ON cur_admins(id)")
    conn.execute(
        "CREATE TEMP TABLE imp_diff AS SELECT i.id, "
        "CASE WHEN a.id IS NULL THEN 'added' "
        "WHEN a.name IS NOT i.name OR a.plan IS NOT i.plan OR a.tags IS NOT i.tags "
        "OR a.created_at IS NOT i.created_at OR a.status IS NOT i.status "
        "OR COALESCE(c.admins, '') IS NOT i.admins THEN 'updated' ELSE 'unchanged' END AS change, "
        "a.status AS old_status, i.status AS new_status "
        "FROM imp_accounts i LEFT JOIN accounts a ON a.id = i.id LEFT JOIN cur_admins c ON c.id = i.id"
    )
    for change, count in conn.execute("SELECT change, count(*) FROM imp_diff GROUP BY change"):
        setattr(report, change, count)
    report.without_admins = conn.execute(
        "SELECT count(*) FROM imp_accounts WHERE admins = '' AND status = 'active'"
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO accounts(id, name, plan, tags, created_at, status, updated_at) "
        "SELECT i.id, i.name, i.plan, i.tags, i.created_at, i.status, ? FROM imp_accounts i "
        "JOIN imp_diff d ON d.id = i.id WHERE d.change != 'unchanged' "
        "ON CONFLICT(id) DO UPDATE SET name = excluded.name, plan = excluded.plan, "
        "tags = excluded.tags, created_at = excluded.created_at, status = excluded.status, "
        "updated_at = excluded.updated_at",
        (stamp,),
    )
    changed = "(SELECT id FROM imp_diff WHERE change = 'updated')"
    conn.execute(
        f"DELETE FROM account_admins WHERE account_id IN {changed} AND NOT EXISTS "
        "(SELECT 1 FROM imp_admins n WHERE n.account_id = account_admins.account_id "
        "AND n.email = account_admins.email)"
    )
    conn.execute(
        "INSERT OR IGNORE INTO account_admins(account_id, email) SELECT n.account_id, n.email "
        "FROM imp_admins n JOIN imp_diff d ON d.id = n.account_id WHERE d.change != 'unchanged'"
    )
    changed = "(SELECT d.id FROM imp_diff d JOIN imp_accounts i ON i.id = d.id WHERE d.change = 'updated' AND i.tags_given)"
    conn.execute(
        f"DELETE FROM account_tags WHERE account_id IN {changed} AND NOT EXISTS "
        "(SELECT 1 FROM imp_tags n WHERE n.account_id = account_tags.account_id "
        "AND n.tag = account_tags.tag)"
    )
    conn.execute(
        "INSERT OR IGNORE INTO account_tags(account_id, tag) SELECT n.account_id, n.tag "
        "FROM imp_tags n JOIN imp_diff d ON d.id = n.account_id WHERE d.change != 'unchanged'"
    )
    # Status changes matter to operators (a closed account stops counting): one event each.
    for acc_id, old, new in conn.execute(
        "SELECT id, old_status, new_status FROM imp_diff WHERE change = 'updated' "
        "AND old_status IS NOT new_status"
    ).fetchall():
        audit(
            conn,
            at=now,
            actor=actor,
            action=f"account.{new}",
            account_id=acc_id,
            detail={"from": old, "to": new, "source": source},
        )
        if new == "closed":
            report.closed += 1
    if report.added or report.updated:
        # A re-import that changes nothing leaves the store exactly as it was (no event, and
        # the status figures stay valid).
        audit(
            conn,
            at=now,
            actor=actor,
            action="accounts.imported",
            detail={"source": source, **report.to_json()},
        )
        status_figures.changed(conn)
    # Updated accounts too: a plan or tag change, or a re-opening, may bring an account created
    # after a grace start into the audience, and the platform must hear that it is switched.
    _auto_enrolments(
        conn,
        catalog,
        tz,
        "SELECT id, change = 'updated' AS later FROM imp_diff WHERE change != 'unchanged'",
        now,
        actor,
    )
    conn.execute("DROP TABLE temp.cur_admins")
    conn.execute("DROP TABLE temp.imp_diff")


def _auto_enrolments(
    conn: sqlite3.Connection,
    catalog: list[StoredMigration],
    tz: tzinfo,
    changed_sql: str,
    now: datetime,
    actor: str,
) -> None:
    """Accounts of ``changed_sql`` (columns `id`, `later`: an existing account changed) now in
    an audience, created on or after its grace start and not switched otherwise, are enrolled
    (rule 2): one event each, in the transaction that adds or changes them, unless the
    platform was already told (their latest event says auto-enrolled). A new account is
    enrolled from its creation; one that joins on a later change, from that change."""
    for sm in catalog:
        if sm.status != "active":
            continue
        where, wparams = audience_sql(sm.migration)
        events.record(
            conn,
            sm.id,
            "SELECT a.id AS account_id, 'auto_enrolled' AS state, NULL AS previous_state, "
            "CASE WHEN d.later THEN ? ELSE a.created_at END AS effective "
            f"FROM ({changed_sql}) d JOIN accounts a ON a.id = d.id "
            f"WHERE a.created_at >= ? AND {where} AND NOT EXISTS "
            "(SELECT 1 FROM enrollments e WHERE e.migration_id = ? AND e.account_id = a.id) "
            "AND COALESCE((SELECT x.state FROM events x WHERE x.migration_id = ? "
            "AND x.account_id = a.id ORDER BY x.sequence DESC LIMIT 1), '') != 'auto_enrolled'",
            [
                db_time(now),
                db_time(sm.migration.grace_start_instant(tz)),
                *wparams,
                sm.id,
                sm.id,
            ],
            now=now,
            actor=actor,
            reason="created on or after the grace period start",
            effective_at="c.effective",
        )


def import_accounts(
    store: Store,
    path: Path,
    *,
    now: datetime,
    actor: str,
    fmt: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> ImportReport:
    """Add and update accounts from CSV/JSON Lines; any bad row and nothing is written."""
    progress.phase("reading")  # rows are counted as read: the file's row count is not known
    report = _import(store, path, now=now, actor=actor, fmt=fmt, progress=progress)
    if report.added or report.updated:
        progress.phase("counting")
        # The import invalidated every status figure: count them once now, after the commit,
        # so that the next `status` reads them (like the end of a cron run). Only an
        # optimisation: a failure here must not turn a good import into an error.
        try:
            status_figures.refresh(store)
        except (sqlite3.Error, MigctlError) as exc:
            sys.stderr.write(f"warning: status figures not refreshed: {exc}\n")
    return report


def _import(
    store: Store, path: Path, *, now: datetime, actor: str, fmt: str | None, progress: Progress
) -> ImportReport:
    tz = store_timezone(store)
    report = ImportReport()
    # counts=False: the staging tables would count as changes; _merge marks the status figures
    # changed itself when accounts really changed.
    with store.transaction(counts=False) as conn:
        if not _has_accounts(conn) and _import_into_empty(
            conn, path, tz, fmt, now, actor, report, progress
        ):
            _auto_enrolments(
                conn, load_catalog(store), tz, "SELECT id, 0 AS later FROM accounts", now, actor
            )
            return report
        problems: list[Problem] = []
        _staging(conn)
        report.rows = _stage(conn, counted(read_accounts(path, tz, problems, fmt), progress))
        for acc_id, lines in conn.execute(
            "SELECT id, group_concat(line, ', ') FROM imp_accounts GROUP BY id HAVING count(*) > 1"
        ):
            problems.append(
                Problem(
                    str(path),
                    int(lines.split(",")[-1]),
                    "id",
                    f"duplicate account id {acc_id!r} (lines {lines})",
                )
            )
        if problems:
            problems.sort(key=lambda p: p.line or 0)
            shown = problems[:MAX_PROBLEMS]
            more = len(problems) - len(shown)
            summary = f"{path}: {len(problems)} problem(s); nothing was imported"
            if more:
                summary += f" (first {MAX_PROBLEMS} listed)"
            raise InputError(shown, summary)
        if report.rows == 0:
            raise InputError(
                [Problem(str(path), None, None, "no accounts in the file")],
                f"{path}: nothing to import",
            )
        progress.phase("merging")
        _merge(conn, now, actor, str(path), report, load_catalog(store), tz)
    return report


def _has_accounts(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM accounts)").fetchone()[0] == 1


def _import_into_empty(
    conn: sqlite3.Connection,
    path: Path,
    tz: tzinfo,
    fmt: str | None,
    now: datetime,
    actor: str,
    report: ImportReport,
    progress: Progress,
) -> bool:
    """The first import into an empty store: every row is new, so write the rows straight into
    the tables (no staging, no diff). At the first bad row or duplicate id, or for an empty
    file, undo this and return False: the staged path then reads the file again and reports
    every problem exactly as for any other import."""
    problems: list[Problem] = []
    rows = counted(read_accounts(path, tz, problems, fmt), progress)
    stamp = db_time(now)
    accounts: list[tuple[str, ...]] = []
    admins: list[tuple[str, str]] = []
    tags: list[tuple[str, str]] = []
    count = without_admins = 0

    def flush() -> None:
        conn.executemany(
            "INSERT INTO accounts(id, name, plan, tags, created_at, status, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            accounts,
        )
        conn.executemany("INSERT INTO account_admins(account_id, email) VALUES (?, ?)", admins)
        conn.executemany("INSERT INTO account_tags(account_id, tag) VALUES (?, ?)", tags)
        accounts.clear()
        admins.clear()
        tags.clear()

    conn.execute("SAVEPOINT first_import")
    # Building an index once over the loaded rows (a sort) is several times cheaper than
    # growing it row by row in random order (the administrators' email index). The tables are
    # empty and the savepoint brings the definitions back if anything fails.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('accounts', 'account_admins', 'account_tags')"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    clean = False
    try:
        for row in rows:
            if problems:
                break
            count += 1
            # The defaults the staged path gives a new account for an absent column.
            status = row.status or "active"
            accounts.append(
                (
                    row.id,
                    row.id if row.name is None else row.name,
                    row.plan,
                    "" if row.tags is None else ";".join(row.tags),
                    _db_time(row.created_at),
                    status,
                    stamp,
                )
            )
            if row.admins:
                admins.extend((row.id, email) for email in row.admins)
            elif status == "active":
                without_admins += 1
            if row.tags:
                tags.extend((row.id, tag) for tag in row.tags)
            if len(accounts) >= BATCH:
                flush()
        else:
            flush()
            clean = count > 0 and not problems
    except sqlite3.IntegrityError:  # a duplicate id (the primary key)
        clean = False
    finally:
        rows.close()
    if not clean:
        conn.execute("ROLLBACK TO first_import")
        conn.execute("RELEASE first_import")
        return False
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("RELEASE first_import")
    report.rows = report.added = count
    report.without_admins = without_admins
    status_figures.changed(conn)
    audit(
        conn,
        at=now,
        actor=actor,
        action="accounts.imported",
        detail={"source": str(path), **report.to_json()},
    )
    return True


def _staging(conn: sqlite3.Connection) -> None:
    # executescript would COMMIT the open transaction, so run the statements one by one.
    for statement in _STAGING.split(";"):
        if statement.strip():
            conn.execute(statement)


@dataclass(frozen=True)
class AccountChanges:
    """The fields `accounts add` was given; None (or no administrators) keeps what is stored."""

    name: str | None = None
    plan: str | None = None
    tags: Sequence[str] | None = None  # given: replaces the tags
    created_at: str | None = None  # a date or an instant; a new account defaults to now
    status: str | None = None
    admins: Sequence[str] = ()  # given: replaces the administrators


def add_account(
    store: Store, account_id: str, changes: AccountChanges, *, now: datetime, actor: str
) -> str:
    """Add one account, or update the fields given for an existing one (the others are kept);
    the result is checked like an imported row. Returns 'added', 'updated' or 'unchanged'."""
    try:
        current = get_account(store, account_id)
    except NotFoundError:
        if changes.plan is None or not changes.admins:
            raise InputError(
                [], f"{account_id} is a new account: give --plan and at least one --admin"
            ) from None
        current = {
            "name": None,
            "plan": None,
            "tags": [],
            "created_at": iso(now),
            "status": "active",
            "admins": [],
        }
    merged = {
        "id": account_id,
        "name": changes.name if changes.name is not None else current["name"],
        "plan": changes.plan if changes.plan is not None else current["plan"],
        "tags": list(changes.tags) if changes.tags is not None else current["tags"],
        # Stored instants are UTC with a Z suffix, which parse_instant reads back exactly.
        "created_at": changes.created_at or current["created_at"],
        "status": changes.status or current["status"],
        "admins": list(changes.admins) or current["admins"],
    }
    row, problems = validate_row(merged, 0, "command line", store_timezone(store))
    if row is None:
        raise InputError(problems, "invalid account")
    report = ImportReport()
    catalog, tz = load_catalog(store), store_timezone(store)
    # counts=False: the staging tables would count as changes; _merge marks the status figures
    # changed itself when accounts really changed.
    with store.transaction(counts=False) as conn:
        _staging(conn)
        _stage(conn, [row])
        _merge(conn, now, actor, "command line", report, catalog, tz)
    return "added" if report.added else "updated" if report.updated else "unchanged"


@dataclass(frozen=True)
class AccountFilter:
    """Which accounts `accounts list` streams; with a migration, each row carries its state."""

    migration: StoredMigration | None = None
    state: str | None = None  # an enrollment state; needs `migration`
    plan: str | None = None
    status: str | None = None
    admin: str | None = None
    no_admin: bool = False  # active accounts nobody administers
    unreachable: bool = False  # active accounts whose every administrator is suppressed


def iter_accounts(
    store: Store, which: AccountFilter, *, limit: int | None = None, offset: int = 0
) -> Iterator[dict[str, Any]]:
    """Stream the accounts `which` selects, sorted by id (a cursor: bounded memory at 1M)."""
    where: list[str] = []
    params: list[Any] = []
    select = ""
    joins = ""
    sm = which.migration
    if sm is not None:
        tz = store_timezone(store)
        state, sparams = state_sql(sm.migration, tz)
        deadline, dparams = deadline_sql(sm.migration)
        audience, aparams = audience_sql(sm.migration)
        select = f", {state} AS state, {deadline} AS deadline"
        params += [*sparams, *dparams]
        joins = " LEFT JOIN enrollments e ON e.migration_id = ? AND e.account_id = a.id"
        params.append(sm.id)
        where.append(audience)
        params += aparams
        if which.state:
            where.append(f"{state} = ?")
            params += [*sparams, which.state]
    if which.plan:
        where.append("a.plan = ?")
        params.append(which.plan)
    if which.status:
        where.append("a.status = ?")
        params.append(which.status)
    if which.admin:
        where.append("a.id IN (SELECT account_id FROM account_admins WHERE email = ?)")
        try:  # the same normalisation as on import (case, whitespace, IDN domain)
            params.append(normalise_email(which.admin))
        except ValueError:
            params.append(which.admin.strip().lower())
    if which.no_admin:
        where.append(
            "a.status = 'active' AND NOT EXISTS "
            "(SELECT 1 FROM account_admins x WHERE x.account_id = a.id)"
        )
    if which.unreachable:
        where.append(
            "a.status = 'active' AND EXISTS (SELECT 1 FROM account_admins x "
            "WHERE x.account_id = a.id) AND NOT EXISTS (SELECT 1 FROM account_admins y "
            "WHERE y.account_id = a.id AND y.email NOT IN (SELECT email FROM suppressions))"
        )
    sql = (
        "SELECT a.*, (SELECT group_concat(email, ';') FROM account_admins x "
        f"WHERE x.account_id = a.id) AS admins{select} FROM accounts a{joins}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY a.id LIMIT ? OFFSET ?"
    )
    for r in store.iterate(sql, [*params, -1 if limit is None else limit, offset]):
        row = _account_json(r)
        if sm is not None:
            row["migration"] = sm.id
            row["state"] = r["state"]
            row["deadline"] = r["deadline"]
        yield row


def list_accounts(
    store: Store,
    *,
    plan: str | None = None,
    status: str | None = None,
    admin: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    which = AccountFilter(plan=plan, status=status, admin=admin)
    return list(iter_accounts(store, which, limit=limit, offset=offset))


LIST_COLUMNS = ("id", "name", "plan", "status", "created_at", "admins")
STATE_COLUMNS = ("migration", "state", "deadline")


def write_accounts(rows: Iterable[dict[str, Any]], out: IO[str], fmt: str, *, states: bool) -> int:
    """Write listed accounts as CSV (spreadsheet-safe) or JSON Lines; returns the count."""
    import csv
    import json

    columns = LIST_COLUMNS + (STATE_COLUMNS if states else ())
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(columns)
    count = 0
    for row in rows:
        count += 1
        if writer is not None:
            cells = [row[c] for c in columns]
            writer.writerow(
                [
                    _spreadsheet_safe(";".join(v) if isinstance(v, list) else str(v or ""))
                    for v in cells
                ]
            )
        else:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return count


def count_accounts(store: Store) -> dict[str, int]:
    return {
        r["status"]: r["n"]
        for r in store.query("SELECT status, count(*) AS n FROM accounts GROUP BY status")
    }


def get_account(store: Store, account_id: str) -> dict[str, Any]:
    rows = store.query(
        "SELECT a.*, (SELECT group_concat(email, ';') FROM account_admins x "
        "WHERE x.account_id = a.id) AS admins FROM accounts a WHERE a.id = ?",
        (account_id,),
    )
    if not rows:
        raise NotFoundError(f"no account {account_id!r} in the store")
    return _account_json(rows[0])


def _account_json(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "plan": r["plan"],
        "tags": [t for t in r["tags"].split(";") if t],
        "created_at": r["created_at"],
        "status": r["status"],
        "admins": sorted(e for e in (r["admins"] or "").split(";") if e),
    }


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(value: str) -> str:
    # A cell starting like a formula would be evaluated by a spreadsheet (=HYPERLINK(...)):
    # the leading apostrophe makes it text (OWASP "CSV injection").
    return "'" + value if value.startswith(_FORMULA_START) else value


def export_accounts(store: Store, out: IO[str], fmt: str, progress: Progress = NO_PROGRESS) -> int:
    """Stream every account (with its administrators) as CSV or JSON Lines; returns the count."""
    progress.phase("exporting", int(store.scalar("SELECT count(*) FROM accounts") or 0))
    import csv
    import json

    sql = (
        "SELECT a.id, a.name, a.plan, a.tags, a.created_at, a.status, "
        "(SELECT group_concat(email, ';') FROM (SELECT email FROM account_admins x "
        "WHERE x.account_id = a.id ORDER BY email)) AS admins FROM accounts a ORDER BY a.id"
    )
    count = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["id", "name", "plan", "tags", "created_at", "status", "admins"])
    for r in counted(store.iterate(sql), progress):
        count += 1
        created = r["created_at"].replace(".000000Z", "Z")
        if writer is not None:
            writer.writerow(
                [
                    _spreadsheet_safe(str(v))
                    for v in (
                        r["id"],
                        r["name"],
                        r["plan"],
                        r["tags"],
                        created,
                        r["status"],
                        r["admins"] or "",
                    )
                ]
            )
        else:
            out.write(
                json.dumps(
                    {
                        "id": r["id"],
                        "name": r["name"],
                        "plan": r["plan"],
                        "tags": [t for t in r["tags"].split(";") if t],
                        "created_at": created,
                        "status": r["status"],
                        "admins": [e for e in (r["admins"] or "").split(";") if e],
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    return count
