"""Shared fixtures: every test runs in its own empty folder with no MIGCTL_* variables set."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """chdir into tmp_path and drop MIGCTL_* so no test reads or writes the repo folder."""
    for name in list(os.environ):
        if name.startswith("MIGCTL_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


RunCli = Callable[..., Result]


@pytest.fixture
def runner() -> RunCli:
    """run(*args, input=None, env=None) -> Result; `result.stdout` and `result.stderr` are separate
    (typer 0.29's CliRunner always keeps them apart; `result.output` is both interleaved)."""
    from migrate_cli.cli.app import app

    cli = CliRunner()

    def run(
        *args: Any, input: str | bytes | None = None, env: dict[str, str] | None = None
    ) -> Result:
        return cli.invoke(app, [str(a) for a in args], input=input, env=env)

    return run


@pytest.fixture
def synced_store(tmp_path: Path) -> Path:
    """A store with the shipped migrations.yaml synced and examples/accounts.csv imported
    (both at 2016-03-01, before either grace period). Returns the db path."""
    from migrate_cli.accounts.records import import_accounts
    from migrate_cli.definitions.model import load_definitions
    from migrate_cli.store.db import Store
    from migrate_cli.store.sync import sync

    db = tmp_path / "migctl.db"
    at = datetime(2016, 3, 1, tzinfo=UTC)
    with Store(db) as store:
        sync(store, load_definitions(REPO_ROOT / "migrations.yaml"), now=at, actor="fixture")
        import_accounts(store, REPO_ROOT / "examples" / "accounts.csv", now=at, actor="fixture")
    return db
