"""sync: idempotent upserts, changes audited with from/to, schedule versions, retire and revive."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrate_cli.definitions.model import load_definitions
from migrate_cli.errors import InputError
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import load_catalog
from migrate_cli.store.sync import sync

T0 = datetime(2016, 3, 1, tzinfo=UTC)
T1 = datetime(2016, 3, 2, tzinfo=UTC)


def flat(text: str) -> str:
    """stderr with Rich line wrapping undone (see test_cli_core::test_error_lines_are_not_wrapped)."""
    return " ".join(text.split())


def file_digest(db: Path) -> str:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return hashlib.sha256(db.read_bytes()).hexdigest()


def dump(db: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db)
    tables = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    out = {t: sorted(conn.execute(f"SELECT * FROM [{t}]").fetchall(), key=repr) for t in tables}
    conn.close()
    return out


def shipped(repo_root: Path, edit: callable = lambda s: s) -> Path:  # type: ignore[valid-type]
    path = Path("migrations.yaml")
    path.write_text(edit((repo_root / "migrations.yaml").read_text()))
    return path


def do_sync(db: Path, yaml_path: Path, now: datetime = T0):  # type: ignore[no-untyped-def]
    with Store(db) as store:
        return sync(store, load_definitions(yaml_path), now=now, actor="tester")


def events(db: Path, action: str) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT * FROM audit WHERE action = ? ORDER BY id", (action,)).fetchall()
    conn.close()
    return [dict(r) | {"detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]


def test_first_sync_adds_everything(repo_root: Path) -> None:
    report = do_sync(Path("s.db"), shipped(repo_root))
    assert report.added == ["vulnerable-password-flow", "email-delivery-changes"]
    assert not report.nothing_changed
    added = events(Path("s.db"), "migration.added")
    assert [e["migration_id"] for e in added] == report.added
    assert added[0]["actor"] == "tester"
    assert added[0]["detail"]["definition"]["title"] == "Vulnerable Password Flow"


def test_second_sync_changes_nothing_byte_for_byte(repo_root: Path) -> None:
    db = Path("s.db")
    yaml_path = shipped(repo_root)
    do_sync(db, yaml_path)
    before = file_digest(db)
    report = do_sync(db, yaml_path, now=T1)
    assert report.nothing_changed
    assert report.unchanged == ["vulnerable-password-flow", "email-delivery-changes"]
    assert file_digest(db) == before


def test_cli_second_sync_says_nothing_changed(repo_root: Path, runner) -> None:  # type: ignore[no-untyped-def]
    shipped(repo_root)
    first = runner("--db", "s.db", "sync")
    assert first.exit_code == 0, first.output
    assert "added vulnerable-password-flow" in first.stdout
    second = runner("--db", "s.db", "sync", "--json")
    assert second.exit_code == 0
    assert json.loads(second.stdout)["changed_anything"] is False
    third = runner("--db", "s.db", "sync")
    assert "nothing changed" in third.stdout


def test_changed_title_is_audited_with_from_and_to(repo_root: Path) -> None:
    db = Path("s.db")
    do_sync(db, shipped(repo_root))
    report = do_sync(
        db,
        shipped(
            repo_root,
            lambda s: s.replace(
                "title: Email Delivery Changes", "title: Email Delivery Changes (2016)"
            ),
        ),
        T1,
    )
    assert report.changed == {"email-delivery-changes": ["title"]}
    assert report.rescheduled == []
    (ev,) = events(db, "migration.changed")
    assert ev["migration_id"] == "email-delivery-changes"
    assert ev["detail"] == {
        "title": {"from": "Email Delivery Changes", "to": "Email Delivery Changes (2016)"}
    }
    assert ev["at"].startswith("2016-03-02")
    with Store(db) as store:
        sm = {s.id: s for s in load_catalog(store)}["email-delivery-changes"]
        assert sm.migration.title == "Email Delivery Changes (2016)"
        assert sm.schedule_version == 0


def test_moved_date_bumps_schedule_version(repo_root: Path) -> None:
    db = Path("s.db")
    do_sync(db, shipped(repo_root))
    report = do_sync(
        db,
        shipped(
            repo_root,
            lambda s: s.replace("mandatory_opt_in: 2016-05-11", "mandatory_opt_in: 2016-06-01"),
        ),
        T1,
    )
    assert report.changed == {"email-delivery-changes": ["mandatory_opt_in"]}
    assert report.rescheduled == ["email-delivery-changes"]
    (ev,) = events(db, "migration.rescheduled")
    assert ev["detail"] == {"from": "2016-05-11", "to": "2016-06-01"}
    (ch,) = events(db, "migration.changed")
    assert ch["detail"] == {"mandatory_opt_in": {"from": "2016-05-11", "to": "2016-06-01"}}
    with Store(db) as store:
        row = store.query("SELECT * FROM migrations WHERE id = 'email-delivery-changes'")[0]
        assert row["schedule_version"] == 1
        assert json.loads(row["previous_mandatory_opt_in"]) == "2016-05-11"
        assert row["schedule_changed_at"].startswith("2016-03-02")
        other = store.query("SELECT * FROM migrations WHERE id = 'vulnerable-password-flow'")[0]
        assert other["schedule_version"] == 0


def test_tbd_becoming_a_date_is_a_schedule_change(repo_root: Path) -> None:
    db = Path("s.db")
    do_sync(db, shipped(repo_root))
    report = do_sync(
        db,
        shipped(
            repo_root, lambda s: s.replace("mandatory_opt_in: TBD", "mandatory_opt_in: 2016-07-01")
        ),
        T1,
    )
    assert report.rescheduled == ["vulnerable-password-flow"]
    (ev,) = events(db, "migration.rescheduled")
    assert ev["detail"] == {"from": None, "to": "2016-07-01"}
    # Moving it again bumps the version again.
    do_sync(
        db,
        shipped(
            repo_root, lambda s: s.replace("mandatory_opt_in: TBD", "mandatory_opt_in: 2016-08-01")
        ),
        datetime(2016, 3, 3, tzinfo=UTC),
    )
    with Store(db) as store:
        assert (
            store.scalar(
                "SELECT schedule_version FROM migrations WHERE id = 'vulnerable-password-flow'"
            )
            == 2
        )


def test_summary_change_is_not_a_schedule_change(repo_root: Path) -> None:
    db = Path("s.db")
    do_sync(db, shipped(repo_root))
    report = do_sync(
        db,
        shipped(
            repo_root,
            lambda s: s.replace(
                "severity: medium\n    grace_period_start: 2016-04-04",
                "severity: high\n    grace_period_start: 2016-04-04",
            ),
        ),
        T1,
    )
    assert report.changed == {
        "email-delivery-changes": ["notices", "severity"]
    }  # high: reminders every 7d
    assert report.rescheduled == []
    (ev,) = events(db, "migration.changed")
    assert ev["detail"]["severity"] == {"from": "medium", "to": "high"}
    assert ev["detail"]["notices"]["to"]["reminder_every"] == "7d"


def test_timezone_change_is_audited(repo_root: Path) -> None:
    db = Path("s.db")
    do_sync(db, shipped(repo_root))
    report = do_sync(
        db,
        shipped(repo_root, lambda s: s.replace("timezone: UTC", "timezone: America/New_York")),
        T1,
    )
    assert report.changed == {"(defaults)": ["timezone"]}
    (ev,) = events(db, "timezone.changed")
    assert ev["detail"] == {"from": "UTC", "to": "America/New_York"}


def _without_edc(text: str) -> str:
    head, _, _ = text.partition("  - id: email-delivery-changes")
    return head


def test_removed_migration_is_retired_with_history_kept_and_can_come_back(
    repo_root: Path, runner
) -> None:  # type: ignore[no-untyped-def]
    db = Path("s.db")
    do_sync(db, shipped(repo_root))
    with Store(db) as store:
        from migrate_cli.accounts.records import import_accounts

        import_accounts(store, repo_root / "examples" / "accounts.csv", now=T0, actor="t")
    assert (
        runner(
            "--db", db, "--now", "2016-04-20", "opt-in", "email-delivery-changes", "-a", "globex"
        ).exit_code
        == 0
    )

    report = do_sync(db, shipped(repo_root, _without_edc), datetime(2016, 4, 21, tzinfo=UTC))
    assert report.retired == ["email-delivery-changes"]
    assert report.unchanged == ["vulnerable-password-flow"]
    with Store(db) as store:
        row = store.query("SELECT * FROM migrations WHERE id = 'email-delivery-changes'")[0]
        assert row["status"] == "retired" and row["retired_at"].startswith("2016-04-21")
        assert (
            store.scalar(
                "SELECT count(*) FROM enrollments WHERE migration_id = 'email-delivery-changes'"
            )
            == 1
        )
        assert (
            store.scalar("SELECT count(*) FROM audit WHERE migration_id = 'email-delivery-changes'")
            == 3
        )
    status = json.loads(runner("--db", db, "--now", "2016-04-22", "status", "--json").stdout)
    phases = {m["id"]: m["phase"] for m in status["migrations"]}
    assert phases == {"vulnerable-password-flow": "grace", "email-delivery-changes": "retired"}
    refused = runner(
        "--db", db, "--now", "2016-04-22", "opt-in", "email-delivery-changes", "-a", "wayne"
    )
    assert refused.exit_code == 1 and "retired" in flat(refused.stderr)

    # Syncing the smaller file again changes nothing (it is already retired).
    assert do_sync(
        db, shipped(repo_root, _without_edc), datetime(2016, 4, 22, tzinfo=UTC)
    ).nothing_changed

    back = do_sync(db, shipped(repo_root), datetime(2016, 4, 23, tzinfo=UTC))
    assert back.revived == ["email-delivery-changes"]
    assert back.changed == {}  # same definition as before
    assert [e["migration_id"] for e in events(db, "migration.revived")] == [
        "email-delivery-changes"
    ]
    with Store(db) as store:
        row = store.query("SELECT * FROM migrations WHERE id = 'email-delivery-changes'")[0]
        assert row["status"] == "active" and row["retired_at"] is None
        assert (
            store.scalar("SELECT state FROM enrollments WHERE account_id = 'globex'") == "opted_in"
        )


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace("severity: medium", "severity: NO", 1),
        lambda s: s.replace("mandatory_opt_in: 2016-05-11", "mandatory_opt_in: 2016-02-30"),
        lambda s: s + "  - [not, a, mapping]\n",
        lambda s: s.replace("defaults:", "defaults:\n  timezone: Nowhere/Else\n  x: 1\ndefaultz:"),
        lambda s: "\t" + s,
    ],
)
def test_invalid_yaml_exits_1_and_leaves_the_store_untouched(repo_root: Path, runner, edit) -> None:  # type: ignore[no-untyped-def]
    db = Path("s.db")
    do_sync(db, shipped(repo_root))
    before = file_digest(db)
    tables = dump(db)
    shipped(repo_root, edit)
    result = runner("--db", db, "sync")
    assert result.exit_code == 1
    assert "migrations.yaml" in flat(result.stderr)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert dump(db) == tables
    assert file_digest(db) == before
    with pytest.raises(InputError):
        load_definitions(Path("migrations.yaml"))


def test_invalid_yaml_creates_no_store(runner) -> None:  # type: ignore[no-untyped-def]
    Path("migrations.yaml").write_text("migrations: [")
    result = runner("--db", "fresh.db", "sync")
    assert result.exit_code == 1
    assert not Path("fresh.db").exists()


def test_schema_is_versioned_and_reopening_is_harmless(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    Store(db).close()
    digest = file_digest(db)
    with Store(db) as store:
        assert store.scalar("PRAGMA journal_mode") == "wal"
        assert store.scalar("PRAGMA foreign_keys") == 1
        assert store.scalar("PRAGMA busy_timeout") >= 1000
        assert store.scalar("PRAGMA page_size") == 16384
        options = {r[0] for r in store.query("PRAGMA compile_options")}
        no_workers = "THREADSAFE=0" in options or "MAX_WORKER_THREADS=0" in options
        assert store.scalar("PRAGMA threads") == (0 if no_workers else 2)
        names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {
            "accounts_plan",
            "account_admins_email",
            "enrollments_state",
            "audit_migration",
        } <= names
        assert store.integrity_ok()
    assert file_digest(db) == digest
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def test_a_store_with_another_page_size_keeps_it(tmp_path: Path, repo_root: Path) -> None:
    """Stores made before 16 KiB pages (or by hand) open, upgrade and work as they are."""
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA page_size = 4096")
    raw.execute("PRAGMA journal_mode = WAL")
    # A migctl store of its time (a foreign file is refused: test_store_refusal).
    from sqlite_utils import Database

    from migrate_cli.store.schema import migrations

    migrations.apply(Database(raw), stop_before="m005_events")
    raw.close()
    with Store(db) as store:
        assert store.scalar("PRAGMA page_size") == 4096
        assert store.scalar("PRAGMA journal_mode") == "wal"
        sync(store, load_definitions(shipped(repo_root)), now=T0, actor="t")
        assert store.scalar("SELECT count(*) FROM migrations") >= 1
        assert store.integrity_ok()
    with Store(db) as store:
        assert store.scalar("PRAGMA page_size") == 4096
