"""The SQLite store: opening, pragmas, schema upgrades, transactions and the audit log."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from migrate_cli.errors import StoreError
from migrate_cli.files import make_private_dirs
from migrate_cli.store.schema import known_migrations
from migrate_cli.store.schema import migrations as schema_migrations

BUSY_TIMEOUT_MS = 30_000
PAGE_SIZE = 16384


def db_time(instant: datetime) -> str:
    """Fixed-width UTC text so that instants compare correctly as strings in SQL."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_db_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


SORTER_THREADS = 2


def check_store_file(path: Path) -> None:
    """Refuse, before writing a byte, a file that is not a store this migctl can trust: an
    empty or foreign file, or a store carrying a schema migration this version does not know
    (written by a newer migctl)."""
    try:
        if path.stat().st_size == 0:
            raise StoreError(
                f"{path} is an empty file, not a migctl store; it was left untouched (remove "
                "it, or point --db at the store)"
            )
        # Read-only: nothing is written, not even the journal mode, to a file we refuse.
        ro = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master")}
            applied = (
                [
                    r[0]
                    for r in ro.execute(
                        "SELECT name FROM _sqlite_migrations WHERE migration_set = ?",
                        (schema_migrations.name,),
                    )
                ]
                if schema_migrations.migrations_table in tables
                else []
            )
        finally:
            ro.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a migctl store ({exc}); it was left untouched") from None
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc.strerror}") from None
    if not applied:
        raise StoreError(f"{path} is not a migctl store (no migctl schema); it was left untouched")
    unknown = sorted(set(applied) - known_migrations())
    if unknown:
        raise StoreError(
            f"{path} was written by a newer migctl (schema {', '.join(unknown)} is unknown to "
            "this version); upgrade migctl to use it. The store was left untouched"
        )


class Store:
    """One open store; every write goes through ``transaction()``."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if str(path) != ":memory:":
            if path.exists():
                check_store_file(path)
            elif not create:
                raise StoreError(
                    f"no store at {path}; `migctl sync` or `migctl accounts import` creates one"
                )
            else:
                _create_private(path)
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
            # Explicit transactions only: no implicit BEGIN left open by a stray statement.
            conn.isolation_level = None
            self.db = Database(conn, execute_plugins=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Only an empty file takes a page size (then WAL fixes it). Bigger pages: a million-
            # row write (enforce, notify) makes a quarter of the read/write calls, ~40% less
            # system time; an existing store keeps its size.
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            if str(path) != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable across application crashes in WAL mode (only an OS crash
            # can lose the last commits), which is the failure model the outbox is built for.
            conn.execute("PRAGMA synchronous = NORMAL")
            # The sorter may use helper threads: GROUP BY over a million administrator links
            # (planning, status, enforcement) sorts in parallel chunks, about a third faster.
            conn.execute(f"PRAGMA threads = {SORTER_THREADS}")
            schema_migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from None

    @classmethod
    def in_memory_copy(cls, other: Store) -> Store:
        """A private in-memory copy of a store, for rehearsals that must write nothing."""
        mem = sqlite3.connect(":memory:")
        other.conn.backup(mem)
        mem.isolation_level = None
        mem.execute(f"PRAGMA threads = {SORTER_THREADS}")
        copy = cls.__new__(cls)
        copy.path = Path(":memory:")
        copy.db = Database(mem, execute_plugins=False)
        mem.execute("PRAGMA foreign_keys = ON")
        return copy

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, counts: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (all-or-nothing writes).

        ``counts=False`` declares that the transaction cannot change what `status` counts
        (accounts, administrators, enrollments, definitions, suppressions); every other write
        invalidates the cached status figures. Over-invalidating only costs a recount.
        """
        conn = self.conn
        if conn.in_transaction:
            raise StoreError("internal error: nested transaction")
        _begin_immediate(conn)
        before = conn.total_changes
        try:
            yield conn
            if counts and conn.total_changes != before:  # a no-op stays byte-for-byte a no-op
                bump_data_version(conn)
        except BaseException:
            # SQLite has already rolled back after some errors (SQLITE_FULL: a full disk); a
            # second ROLLBACK would raise and hide the real cause.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def data_version(self) -> int:
        return int(self.meta("data_version") or 0)

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        return cur.fetchall()

    def iterate(self, sql: str, params: Any = ()) -> Iterator[sqlite3.Row]:
        cur = self.conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        yield from cur

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def meta(self, key: str) -> str | None:
        value = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def integrity_ok(self) -> bool:
        return self.scalar("PRAGMA integrity_check") == "ok"


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, waiting for another writer in steps of a fraction of a millisecond.

    SQLite's own busy handler sleeps 1, 2, 5, 10 ms... between attempts: two processes that
    take turns with transactions of a few milliseconds (a large run's two dispatchers) would
    spend much of their time asleep. The overall limit stays BUSY_TIMEOUT_MS.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.0002
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def bump_data_version(conn: sqlite3.Connection) -> None:
    """Mark the status figures stale (inside the writer's own transaction)."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('data_version', '1') ON CONFLICT(key) "
        "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def audit(
    conn: sqlite3.Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    migration_id: str | None = None,
    account_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit event (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO audit(at, actor, action, migration_id, account_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            db_time(at),
            actor,
            action,
            migration_id,
            account_id,
            json.dumps(detail, sort_keys=True) if detail else None,
        ),
    )


def discard_if_unused(path: Path) -> bool:
    """Remove a store that holds nothing (created by a command that then failed): a failing
    command leaves no file behind. A store with any row an operator made is kept."""
    if not path.is_file():
        return True
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            used = conn.execute(
                "SELECT EXISTS(SELECT 1 FROM migrations) OR EXISTS(SELECT 1 FROM accounts)"
                " OR EXISTS(SELECT 1 FROM audit) OR EXISTS(SELECT 1 FROM suppressions)"
            ).fetchone()[0]
        conn.close()
    except sqlite3.DatabaseError:
        return False  # not ours to judge: keep it
    if used:
        return False
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return True


def _create_private(path: Path) -> None:
    # The store holds administrator emails: create it owner-only before SQLite touches it.
    try:
        make_private_dirs(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create the store {path}: {exc.strerror}") from None
