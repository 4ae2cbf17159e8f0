"""The dashboard export command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from migrate_cli.cli.common import (
    dashboard_app,
    env,
    handle_errors,
)
from migrate_cli.cli.output import (
    console,
)
from migrate_cli.errors import (
    UsageError,
)


@dashboard_app.command("export")
@handle_errors
def dashboard_export(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Per account, the active migrations it must act on, as JSON for the dashboard banner.

    Example: migctl dashboard export --out dashboard.json
    """
    import os
    import tempfile

    from migrate_cli.lifecycle.dashboard import write_export
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    e = env(ctx)
    store = e.store(create=False)
    catalog = load_catalog(store)
    tz = store_timezone(store)
    now = e.now(store)
    if out is None:
        write_export(sys.stdout, store, catalog, tz, now, e.config.dashboard.url)
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dashboard-", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            count = write_export(handle, store, catalog, tz, now, e.config.dashboard.url)
        os.replace(tmp, out)  # readers never see a half-written file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    console(stderr=True).print(f"wrote {count} account(s) to {out}", markup=False)
