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

from migrate_cli.files import open_private, write_private
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


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask: what the folders would get if migctl left their mode to it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_sync_into_new_folders_makes_each_of_them_private(tmp_path: Path, runner: Any) -> None:
    # The lock used to create new/ and new/state/ (0755) before the store could make them 0700.
    (tmp_path / "migrations.yaml").write_bytes((REPO / "migrations.yaml").read_bytes())
    tmp_path.chmod(0o755)
    r = runner("--db", "new/state/migctl.db", "sync")
    assert r.exit_code == 0, r.output
    assert mode(tmp_path / "new") == 0o700, oct(mode(tmp_path / "new"))
    assert mode(tmp_path / "new" / "state") == 0o700, oct(mode(tmp_path / "new" / "state"))
    state = tmp_path / "new" / "state"
    assert {f.name: mode(f) for f in state.iterdir() if not f.name.endswith(("-wal", "-shm"))} == {
        "migctl.db": 0o600,
        "migctl.db.lock": 0o600,
        "migctl.db.lock.holder": 0o600,
    }
    assert mode(tmp_path) == 0o755  # the folder that existed keeps its mode


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize(
    "command",
    [
        ["accounts", "export", "--format", "csv", "--out"],
        ["dashboard", "export", "--out"],
    ],
)
def test_exports_into_new_folders_are_private_and_replace_the_old_file(
    tmp_path: Path, runner: Any, command: list[str]
) -> None:
    db = make_store(tmp_path)
    out = tmp_path / "exports" / "daily" / "out.txt"
    r = runner("--db", db, "--now", "2016-04-20", *command, out)
    assert r.exit_code == 0, r.output
    first = out.read_text()
    assert first
    assert mode(out) == 0o600
    assert mode(out.parent) == mode(out.parent.parent) == 0o700
    # A file that a previous tool left readable by everyone is replaced by a private one.
    out.write_text("stale")
    out.chmod(0o644)
    r = runner("--db", db, "--now", "2016-04-20", *command, out)
    assert r.exit_code == 0, r.output
    assert out.read_text() == first
    assert mode(out) == 0o600
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.txt"]  # no temporary left


@pytest.mark.parametrize("command", [["accounts", "export"], ["dashboard", "export"]])
def test_export_to_a_folder_is_a_usage_error(
    tmp_path: Path, runner: Any, command: list[str]
) -> None:
    db = make_store(tmp_path)
    r = runner("--db", db, *command, "--out", tmp_path)
    assert r.exit_code == 2, r.output
    assert "is a directory" in r.stderr


# --------------------------------------------------------------------------- the write helper


class Boom(Exception):
    pass


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, error: type[BaseException]
) -> None:
    target = tmp_path / "report.json"
    write_private(target, "old")
    with pytest.raises(error), open_private(target) as handle:
        handle.write("half of the new")
        handle.flush()
        raise error()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.usefixtures("umask_022")
def test_an_error_while_writing_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "report.json"
    with pytest.raises(Boom), open_private(target, "wb") as handle:
        handle.write(b"x" * 100_000)
        raise Boom()
    assert list(target.parent.iterdir()) == []


@pytest.mark.usefixtures("umask_022")
def test_folders_are_private_from_the_first_missing_one_down(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir(mode=0o755)
    target = tmp_path / "kept" / "b" / "c" / "file.txt"
    write_private(target, "x")
    assert mode(tmp_path / "kept") == 0o755  # the operator's folder keeps its mode
    assert mode(tmp_path / "kept" / "b") == 0o700
    assert mode(tmp_path / "kept" / "b" / "c") == 0o700
    assert mode(target) == 0o600
    assert target.read_text() == "x"


def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o277)  # would give folders 0500 (not writable) through mkdir's mode alone
    try:
        write_private(tmp_path / "d" / "f.bin", b"\x00\xff")
    finally:
        os.umask(old)
    assert mode(tmp_path / "d") == 0o700
    assert mode(tmp_path / "d" / "f.bin") == 0o600
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"\x00\xff"


def test_text_is_utf8_and_newlines_are_kept_as_given(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    with open_private(target, newline="") as handle:
        handle.write("é,ü\r\nx\n")
    assert target.read_bytes() == "é,ü\r\nx\n".encode()


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
    # Room for the template store (~690 KB of 16 KB pages since schema m009, and its WAL when
    # it is built here), not for the import of 20,000 accounts (several MB).
    with mounted("tmpfs", folder, size="2m"):
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
