"""What every command needs: config, store, definitions and the instant 'now', resolved lazily."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

from migrate_cli.config import Config, load_config
from migrate_cli.definitions.model import Definitions, load_definitions
from migrate_cli.errors import InputError, Problem
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import store_timezone
from migrate_cli.timeutil import parse_instant, utcnow


def default_actor() -> str:
    """The OS user, for audit events when --actor is not given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


@dataclass
class Env:
    """Global options, resolved on first use so that `--help` never touches the store."""

    db_path: Path
    config_path: Path | None
    config_explicit: bool
    now_raw: str | None
    # Files this command may create: on failure they are removed again if still unused.
    store_existed: bool = True
    _config: Config | None = None
    _config_error: InputError | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config_error is not None:
            raise self._config_error  # report a bad config once, not once per use
        if self._config is None:
            try:
                self._config = load_config(self.config_path, explicit=self.config_explicit)
            except InputError as exc:
                self._config_error = exc
                raise
        return self._config

    def store(self, *, create: bool = False) -> Store:
        """The store; only the commands that may start one (sync, accounts import, run) pass
        create=True, so a mistyped --db is an error, not a new empty store."""
        if self._store is None:
            self._store = Store(self.db_path, create=create)
        return self._store

    def definitions(self, file: Path | None = None) -> Definitions:
        return load_definitions(file or self.config.migrations_file)

    def now(self, store: Store | None = None) -> datetime:
        """--now in the store's timezone (dates are midnight there), else the real clock."""
        if not self.now_raw:
            return utcnow()
        return self.now_in(store_timezone(store if store is not None else self.store()))

    def now_in(self, tz: tzinfo) -> datetime:
        """--now resolved in an explicit timezone (sync, before the store knows one)."""
        if not self.now_raw:
            return utcnow()
        try:
            return parse_instant(self.now_raw, tz)
        except (ValueError, OverflowError) as exc:
            raise InputError([Problem("--now", None, None, str(exc))], "invalid --now") from None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
