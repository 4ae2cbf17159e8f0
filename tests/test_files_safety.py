"""Files: owner-only permissions for the store and every notice written to disk; a read-only or
full disk gives a clear error, no send without a committed outbox row, and no corruption."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_cli.store.db import Store
from tests import fuzz_settings
from tests.fuzz_settings import count
from tests.test_fuzz_loaders import REPO, data_dump, make_store


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_store_file_and_sidecars_are_owner_only(tmp_path: Path) -> None:
    db = make_store(tmp_path)
    with Store(db) as store, store.transaction() as conn:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('probe', 'x') ON CONFLICT(key) DO NOTHING"
        )
        for side in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            if side.exists():
                assert mode(side) & 0o077 == 0, (side, oct(mode(side)))
    assert mode(db) == 0o600, oct(mode(db))


def test_store_folder_created_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "new" / "state" / "migctl.db"
    Store(db).close()
    assert mode(db.parent) == 0o700, oct(mode(db.parent))


def test_file_provider_outbox_is_owner_only(tmp_path: Path, runner: Any) -> None:
    db = make_store(tmp_path)
    cfg = tmp_path / "migctl.toml"
    cfg.write_text(
        '[email]\nprovider = "file"\nfrom = "n@platform.example"\n[email.file]\ndirectory = "outbox"\n'
    )
    r = runner("--db", db, "--config", cfg, "--now", "2016-04-20", "notify")
    assert r.exit_code == 0, r.output
    out = tmp_path / "outbox"
    assert mode(out) == 0o700
    files = list(out.glob("*.eml"))
    assert files
    assert {mode(f) for f in files} == {0o600}


def test_preview_out_files_are_owner_only(tmp_path: Path, runner: Any) -> None:
    db = make_store(tmp_path)
    r = runner(
        "--db",
        db,
        "--now",
        "2016-04-20",
        "preview",
        "email-delivery-changes",
        "--out",
        tmp_path / "previews",
    )
    assert r.exit_code == 0, r.output
    files = list((tmp_path / "previews").iterdir())
    assert files
    assert {mode(f) for f in files} == {0o600}, {f.name: oct(mode(f)) for f in files}
    assert mode(tmp_path / "previews") == 0o700


def test_dashboard_export_is_not_world_writable(tmp_path: Path, runner: Any) -> None:
    db = make_store(tmp_path)
    out = tmp_path / "dash" / "d.json"
    assert (
        runner("--db", db, "--now", "2016-04-20", "dashboard", "export", "--out", out).exit_code
        == 0
    )
    assert mode(out) & 0o022 == 0


# --------------------------------------------------------------------------- read-only and full disks


def _run(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def mounted(kind: str, target: Path, size: str = "") -> Iterator[None]:
    """`ro` bind-mounts target read-only onto itself; `tmpfs` mounts a tiny tmpfs there."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount (a chmod'ed folder does not stop root from writing)")
    ok = (
        _run("mount", "--bind", str(target), str(target))
        and _run("mount", "-o", "remount,bind,ro", str(target))
        if kind == "ro"
        else _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target))
    )
    if not ok:
        _run("umount", str(target))
        pytest.skip(f"cannot mount {kind} here (container without CAP_SYS_ADMIN?)")
    try:
        yield
    finally:
        for _ in range(3):
            if _run("umount", str(target)):
                break


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def outbox_keys(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return (
            {r[0] for r in conn.execute("SELECT key FROM outbox")}
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='outbox'").fetchone()
            else set()
        )
    finally:
        conn.close()


def _file_config(tmp_path: Path, outbox: Path) -> Path:
    cfg = tmp_path / "migctl.toml"
    cfg.write_text(
        f'[email]\nprovider = "file"\nfrom = "n@platform.example"\n[email.file]\ndirectory = "{outbox}"\n'
    )
    return cfg


def _sent_keys(outbox: Path) -> list[str]:
    from tests.fakes.common import parse

    return (
        [str(parse(f.read_bytes())["X-Migctl-Notice"]) for f in outbox.glob("*.eml")]
        if outbox.exists()
        else []
    )


@pytest.mark.parametrize(
    "command",
    [
        ["notify"],
        ["run"],
        ["accounts", "import", str(REPO / "examples" / "accounts.csv")],
        ["sync"],
        ["opt-in", "email-delivery-changes", "--account", "acme-prod"],
    ],
)
def test_read_only_store_folder(tmp_path: Path, runner: Any, command: list[str]) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    db = make_store(folder)
    before = data_dump(db)
    outbox = tmp_path / "outbox"
    cfg = _file_config(tmp_path, outbox)
    with mounted("ro", folder):
        r = runner("--db", db, "--config", cfg, "--now", "2016-04-20", *command)
        count("files: read-only store runs")
        assert isinstance(r.exception, SystemExit), repr(r.exception)
        assert r.exit_code == 1, r.output
        msg = r.stderr.lower()
        assert "read-only" in msg or "readonly" in msg or "cannot" in msg or "unable" in msg, (
            r.stderr
        )
        assert _sent_keys(outbox) == [], "a notice was sent although nothing could be recorded"
    assert integrity(db) == "ok"
    assert data_dump(db) == before


def test_full_disk_during_import_and_notify(tmp_path: Path, runner: Any) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    outbox = tmp_path / "outbox"
    cfg = _file_config(tmp_path, outbox)
    big = tmp_path / "big.csv"
    with big.open("w") as f:
        f.write("id,name,plan,tags,created_at,status,admins\n")
        for i in range(20_000):
            f.write(
                f"acc-{i},Account {i} {'x' * 60},enterprise,eu,2015-01-01,active,admin{i}@c{i % 500}.example\n"
            )
    with mounted("tmpfs", folder, size="600k"):
        db = make_store(folder)
        before = data_dump(db)
        r = runner("--db", db, "--config", cfg, "--now", "2016-04-20", "accounts", "import", big)
        count("files: full-disk runs")
        assert isinstance(r.exception, SystemExit), repr(r.exception)
        assert r.exit_code == 1, r.output
        assert "full" in r.stderr.lower(), r.stderr
        assert integrity(db) == "ok"
        assert data_dump(db) == before
        # now fill what is left, then notify: nothing may be sent without its outbox row
        with contextlib.suppress(OSError), (folder / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        r = runner("--db", db, "--config", cfg, "--now", "2016-04-20", "notify")
        count("files: full-disk runs")
        assert isinstance(r.exception, SystemExit), repr(r.exception)
        assert r.exit_code in (0, 1, 3), r.output
        sent = _sent_keys(outbox)
        assert set(sent) <= outbox_keys(db), "an .eml exists without a committed outbox row"
        assert integrity(db) == "ok"
        (folder / "filler").unlink()


assert fuzz_settings.PROFILE
