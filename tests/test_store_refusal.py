"""A store that says what it is (SPEC section 6): newer, empty, foreign or missing stores are
refused and left untouched; only sync, accounts import and run start a store; one lock per
real path."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from migrate_cli.store.lock import store_lock
from migrate_cli.store.schema import migrations
from tests.conftest import RunCli
from tests.helpers_notices import DB, account, build_store, write_csv, write_yaml

READERS = [
    ("status",),
    ("outbox", "list"),
    ("suppress", "list"),
    ("accounts", "list"),
    ("audit",),
    ("notify", "--dry-run"),
    ("enforce", "--dry-run"),
]
CREATORS = [("sync",), ("accounts", "import", "accounts.csv"), ("run",)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder() -> set[str]:
    return {p.name for p in Path().iterdir()}


def _inputs() -> None:
    write_yaml()
    write_csv(Path("accounts.csv"), [account("acc-1", "admin@customer.example")])


@pytest.mark.parametrize("args", READERS + CREATORS, ids=" ".join)
def test_a_store_from_a_newer_migctl_is_refused_and_untouched(
    runner: RunCli, args: tuple[str, ...]
) -> None:
    build_store([account("acc-1", "admin@customer.example")])
    write_csv(Path("accounts.csv"), [account("acc-1", "admin@customer.example")])
    with sqlite3.connect(DB) as raw:
        raw.execute(
            "INSERT INTO _sqlite_migrations(migration_set, name, applied_at) "
            "VALUES ('migctl', 'm999_from_the_future', '2030-01-01')"
        )
    raw.close()
    before = _digest(DB)
    result = runner("--now", "2016-04-20", *args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "written by a newer migctl" in result.stderr
    assert "m999_from_the_future" in result.stderr
    assert _digest(DB) == before


@pytest.mark.parametrize(
    "content",
    [b"", b"id,name\nacc-1,Alpha\n", b"SQLite format 3\x00" + b"\x00" * 84],
    ids=["empty", "text", "truncated-sqlite"],
)
@pytest.mark.parametrize("args", READERS + CREATORS, ids=" ".join)
def test_an_empty_or_foreign_file_is_refused_and_untouched(
    runner: RunCli, args: tuple[str, ...], content: bytes
) -> None:
    _inputs()
    DB.write_bytes(content)
    result = runner("--now", "2016-04-20", *args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "not a migctl store" in result.stderr and "untouched" in result.stderr
    assert DB.read_bytes() == content


def test_another_programs_sqlite_database_is_refused_and_untouched(runner: RunCli) -> None:
    _inputs()
    with sqlite3.connect(DB) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    raw.close()
    before = _digest(DB)
    result = runner("sync")
    assert result.exit_code == 1
    assert "not a migctl store (no migctl schema)" in result.stderr
    assert _digest(DB) == before


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_commands_that_only_read_never_start_a_store(runner: RunCli, args: tuple[str, ...]) -> None:
    _inputs()
    before = _folder()
    result = runner("--now", "2016-04-20", *args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "no store at migctl.db" in result.stderr
    assert not DB.exists()
    # The lock files are issue 13's ("a failing command leaves no file behind").
    assert not {n for n in _folder() - before if not n.startswith("migctl.db.lock")}


@pytest.mark.parametrize("args", CREATORS, ids=" ".join)
def test_sync_import_and_run_start_a_store_where_no_file_exists(
    runner: RunCli, args: tuple[str, ...]
) -> None:
    _inputs()
    result = runner("--now", "2016-04-20", *args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    with sqlite3.connect(DB) as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM _sqlite_migrations")}
    raw.close()
    assert "m007_outbox_failing_since" in names


def test_an_older_store_upgrades_and_keeps_its_notices(runner: RunCli) -> None:
    build_store([account("acc-1", "admin@customer.example")])
    assert runner("--now", "2016-04-20", "notify").exit_code == 0
    # Make it a store of the previous version: without the last migration and its column.
    with sqlite3.connect(DB) as raw:
        raw.execute("ALTER TABLE outbox DROP COLUMN failing_since")
        raw.execute("DELETE FROM _sqlite_migrations WHERE name = 'm007_outbox_failing_since'")
    raw.close()
    result = runner("outbox", "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert '"failing_since": null' in result.stdout and '"state": "sent"' in result.stdout
    assert {m.name for m in migrations.pending(Database(DB))} == set()


def test_the_run_lock_follows_a_symlink_to_the_real_store(runner: RunCli) -> None:
    build_store([account("acc-1", "admin@customer.example")])
    Path("link.db").symlink_to(DB.resolve())
    with store_lock(DB):
        result = runner("--db", "link.db", "--now", "2016-04-20", "run")
    assert result.exit_code == 75, (result.stdout, result.stderr)
    assert "another migctl run holds the lock" in result.stderr
