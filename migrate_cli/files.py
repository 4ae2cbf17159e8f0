"""Private files: everything migctl writes appears whole and owner-only (files 0600, folders 0700)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and each missing parent, from the first missing one down, at 0700.

    Folders that exist are left as they are (the operator chose them).
    """
    missing: list[Path] = []
    current = folder
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    # mkdir(parents=True, mode=...) gives the mode to the last level only.
    for level in reversed(missing):
        try:
            level.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue  # created meanwhile by someone else: not ours to change
        os.chmod(level, FOLDER_MODE)  # mkdir's mode passes through the umask


@contextmanager
def open_private(
    path: Path, mode: Literal["w", "wb"] = "w", *, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Write `path` atomically, owner-only: a temporary file in the same folder, fsync'ed, then
    renamed over `path`. Readers see the old file or the whole new one; on any error (or
    Ctrl-C) the temporary file is removed and `path` is untouched. Text is UTF-8."""
    make_private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 passes through the umask too
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def write_private(path: Path, data: bytes | str) -> None:
    """`open_private` for content already in memory."""
    with open_private(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


def _sync_folder(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk; not every system can
    # open a folder for that, and the file is complete either way.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
