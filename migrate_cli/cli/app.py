"""The migctl application: every command module registered on the root Typer app."""

from __future__ import annotations

from migrate_cli.cli import (  # noqa: F401 - importing a module registers its commands
    accounts,
    admins,
    dashboard,
    definitions,
    enforce,
    feedback,
    flags,
    notices,
    outbox,
    platform,
    report,
    run,
    status,
)
from migrate_cli.cli.common import app


def main() -> None:
    """Console-script entry point."""
    app()
