"""The run lock: one OS file lock next to the store, taken by every state-changing command."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from migrate_cli.errors import LockHeldError
from migrate_cli.files import make_private_dirs, write_private
from migrate_cli.timeutil import iso, utcnow


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def _holder_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock.holder")


@contextmanager
def store_lock(db_path: Path, *, timeout: float = 0.5, command: str = "migctl") -> Iterator[None]:
    """Hold the lock or raise LockHeldError (exit 75) naming the holder.

    The OS releases a flock when its process dies, so a killed holder never leaves a stale lock;
    the holder file is only information for the message.
    """
    if str(db_path) == ":memory:":
        yield
        return
    # One lock per store, however it is named: a symlink or a relative path locks the file
    # it leads to.
    db_path = Path(os.path.realpath(db_path))
    # Before the store exists: its folders must be created private here, not by filelock.
    make_private_dirs(db_path.parent)
    lock = FileLock(str(lock_path(db_path)), mode=0o600)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise LockHeldError(
            f"another migctl run holds the lock on {db_path}: {_describe(db_path)}"
        ) from None
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": iso(utcnow()),
            "command": command,
        }
        with contextlib.suppress(OSError):  # information only
            write_private(_holder_path(db_path), json.dumps(holder))
        yield
    finally:
        lock.release()


def remove_lock_files(db_path: Path) -> None:
    """The lock and holder files of a store that a failing first command created and discarded."""
    for path in (lock_path(db_path), _holder_path(db_path)):
        path.unlink(missing_ok=True)


def _describe(db_path: Path) -> str:
    try:
        holder = json.loads(_holder_path(db_path).read_text())
        return (
            f"pid {holder['pid']} on {holder['host']} since {holder['since']} ({holder['command']})"
        )
    except (OSError, ValueError, KeyError):
        return "holder unknown"
