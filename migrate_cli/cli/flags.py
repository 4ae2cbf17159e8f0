"""The flags commands: export the per-account states, check the platform's view against them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from migrate_cli.cli.common import JsonOpt, OutFileOpt, app, env, handle_errors
from migrate_cli.cli.output import console, emit_json, emit_lines
from migrate_cli.errors import EXIT_PARTIAL, UsageError

flags_app = typer.Typer(help="Every account's state per migration.", no_args_is_help=True)
app.add_typer(
    flags_app,
    name="flags",
    help="Every account's state per migration, for bootstrapping and reconciling the platform.\n\n"
    "Example: migctl flags export --format csv --out flags.csv",
)
FormatOpt = Annotated[str, typer.Option("--format", help="jsonl or csv.")]


def _format(fmt: str) -> str:
    if fmt not in ("jsonl", "csv"):
        raise UsageError(f"unknown --format {fmt!r} (jsonl or csv)")
    return fmt


@flags_app.command("export")
@handle_errors
def export_cmd(
    ctx: typer.Context,
    migration: Annotated[
        str | None, typer.Argument(help="One migration (default: all active).")
    ] = None,
    fmt: FormatOpt = "jsonl",
    out: OutFileOpt = None,
) -> None:
    """Each account's state per migration and the last event sequence it reflects, streamed.

    Example: migctl flags export password-reset-v2 --format csv --out flags.csv
    """
    from migrate_cli.files import open_private
    from migrate_cli.platform.flags import write_export

    fmt = _format(fmt)
    store = env(ctx).store(create=False)
    if out is None:
        write_export(sys.stdout, store, migration, fmt)
        return
    with open_private(out, newline="") as handle:
        count = write_export(handle, store, migration, fmt)
    console(stderr=True).print(f"wrote {count} row(s) to {out}", markup=False)


@flags_app.command("check")
@handle_errors
def check_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The platform's view, in the export's format.")],
    migration: Annotated[
        str | None, typer.Option("--migration", help="Only this migration.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl or csv (default: by the file's suffix).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the accounts whose state differs between the platform's view and migctl's.

    Exit codes: 0 identical, 1 bad file, 3 some accounts differ.
    Example: migctl flags check platform-view.jsonl
    """
    from migrate_cli.platform.flags import check

    fmt = _format(fmt or ("csv" if file.suffix.lower() == ".csv" else "jsonl"))
    store = env(ctx).store(create=False)
    differ = check(store, file, fmt, migration)
    if json_out:
        emit_json({"differ": len(differ), "accounts": differ})
    else:
        emit_lines(
            [
                f"{d['migration']} {d['account']}: migctl {d['migctl']}, platform {d['platform']}"
                for d in differ
            ]
            + [f"{len(differ)} account(s) differ"]
        )
    if differ:
        raise typer.Exit(EXIT_PARTIAL)
