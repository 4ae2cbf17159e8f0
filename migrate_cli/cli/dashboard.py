"""The dashboard export command."""

from __future__ import annotations

import sys

import typer

from migrate_cli.cli.common import (
    OutFileOpt,
    dashboard_app,
    env,
    handle_errors,
)
from migrate_cli.cli.output import (
    console,
)


@dashboard_app.command("export")
@handle_errors
def dashboard_export(
    ctx: typer.Context,
    out: OutFileOpt = None,
) -> None:
    """Per account, the active migrations it must act on, as JSON for the dashboard banner.

    Example: migctl dashboard export --out dashboard.json
    """
    from migrate_cli.files import open_private
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
    with open_private(out) as handle:
        count = write_export(handle, store, catalog, tz, now, e.config.dashboard.url)
    console(stderr=True).print(f"wrote {count} account(s) to {out}", markup=False)
