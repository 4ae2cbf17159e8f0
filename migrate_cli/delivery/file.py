"""Development provider that writes one .eml file per notice into a directory."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from email.message import EmailMessage
from pathlib import Path

from migrate_cli.config import Config
from migrate_cli.delivery.base import OutgoingEmail, ProviderConfigError
from migrate_cli.delivery.console import ConsoleProvider
from migrate_cli.delivery.mime import as_bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def eml_filename(key: str) -> str:
    """A file name for a notice key: readable, unique per key, unable to leave its directory."""
    readable = _UNSAFE.sub("_", key).strip("_")[:80] or "notice"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"{readable}-{digest}.eml"


class FileProvider(ConsoleProvider):
    """The console provider with the output target changed to ``[email.file] directory``.

    The same key always maps to the same file, so re-sending a notice replaces it rather than
    adding a second copy; each file appears atomically (written aside, then renamed).
    """

    name = "file"
    development_only = True

    def __init__(self, config: Config, directory: Path | None = None) -> None:
        super().__init__(config)
        self.directory = Path(directory or config.email.file.directory)

    def open(self) -> None:
        try:
            # Notices contain administrators' addresses: keep the folder private.
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ProviderConfigError(
                self.name,
                f"cannot create the outbox directory {str(self.directory)!r} ({exc.strerror}); "
                "set [email.file] directory in migctl.toml to a writable folder",
            ) from None

    def write_message(self, msg: EmailMessage, email: OutgoingEmail) -> str:
        if not self.directory.is_dir():
            self.open()
        target = self.directory / eml_filename(email.key)
        # mkstemp creates the file with mode 0o600; os.replace makes it appear all at once.
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        except OSError as exc:  # nothing written: a setup problem, never a notice in doubt
            raise ProviderConfigError(
                self.name,
                f"cannot write to {str(self.directory)!r} ({exc.strerror}); set [email.file] "
                "directory in migctl.toml to a writable folder",
            ) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(as_bytes(msg))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            # A full disk or a read-only folder fails every notice alike: stop the run.
            raise ProviderConfigError(
                self.name, f"cannot write to {str(self.directory)!r} ({exc.strerror})"
            ) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(target)
