"""The report command: the adoption report as one offline HTML file, or its figures as JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from migrate_cli.cli.common import JsonOpt, app, env, handle_errors, progress_reporter
from migrate_cli.cli.output import emit_json


@app.command("report")
@handle_errors
def report_cmd(
    ctx: typer.Context,
    migration: Annotated[
        str | None, typer.Argument(help="Only this migration (default: every active one).")
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", dir_okay=False, help="The HTML file to write."),
    ] = Path("report.html"),
    json_out: JsonOpt = False,
) -> None:
    """The adoption report: adoption over time, per plan, notices, the administrators with the
    most pending accounts and the next 14 days; one self-contained HTML file that loads nothing
    from the network (--json: the same figures, nothing written).

    Example: migctl report --out report.html
    """
    from migrate_cli.files import write_private
    from migrate_cli.report.figures import report_figures
    from migrate_cli.report.html import render_html

    store = env(ctx).store(create=False)
    with progress_reporter() as progress:
        doc = report_figures(store, env(ctx).now(store), migration, progress=progress)
    if json_out:
        emit_json(doc)
        return
    # It names administrators: private, like every file migctl writes.
    write_private(out, render_html(doc))
    sys.stderr.write(f"wrote the report of {len(doc['migrations'])} migration(s) to {out}\n")
