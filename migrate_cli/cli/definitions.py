"""Commands that check and load migrations.yaml: validate, sync."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from migrate_cli.cli.common import (
    ActorOpt,
    JsonOpt,
    app,
    env,
    handle_errors,
)
from migrate_cli.cli.context import Env, default_actor
from migrate_cli.cli.output import (
    emit_json,
    emit_lines,
    emit_warnings,
)
from migrate_cli.cli.status import held_line
from migrate_cli.errors import (
    EXIT_ERROR,
    InputError,
)

if TYPE_CHECKING:
    from migrate_cli.definitions.model import Definitions
    from migrate_cli.store.stored_migrations import Hold

# --------------------------------------------------------------------------- definitions


@app.command()
@handle_errors
def validate(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="migrations.yaml to check.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check migrations.yaml, the configuration and the templates; errors name file, line and field.

    Example: migctl validate --file migrations.yaml
    """
    from migrate_cli.notices.templates import check_setup

    e = env(ctx)
    defs, problems, warnings = check_setup(lambda: e.config, file)
    held = _held_lines(e, defs) if defs is not None and not problems else []
    if json_out:
        emit_json(
            {
                "valid": not problems,
                "problems": [p.__dict__ for p in problems],
                "warnings": [w.__dict__ for w in warnings],
                "held": [{"migration": mid, **h.to_json()} for mid, h in held],
                "migrations": defs.ids if defs else [],
            }
        )
        if problems:
            raise typer.Exit(EXIT_ERROR)
        return
    emit_warnings([*warnings, *(held_line(mid, h.to_json()) for mid, h in held)])
    if problems:
        raise InputError(problems, f"{len(problems)} problem(s) found")
    assert defs is not None
    emit_lines(
        [
            f"ok: {defs.path}: {len(defs.migrations)} migration(s) ({', '.join(defs.ids)}); "
            "configuration and templates are valid"
        ]
    )


def _held_lines(e: Env, defs: Definitions) -> list[tuple[str, Hold]]:
    """What a sync now would hold (rule 3a), when there is a store to compare with."""
    from migrate_cli.store.sync import holds_after_sync

    if not e.db_path.exists():
        return []
    return holds_after_sync(e.store(create=False), defs, e.now_in(defs.timezone))


@app.command()
@handle_errors
def sync(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="migrations.yaml to load.")
    ] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Load migrations.yaml into the store (idempotent; changes go to the audit log).

    Example: migctl sync --file migrations.yaml
    """
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import load_catalog
    from migrate_cli.store.sync import sync as do_sync

    e = env(ctx)
    defs = e.definitions(file)
    now = e.now_in(defs.timezone)
    with store_lock(e.db_path, command="sync"):
        report = do_sync(e.store(create=True), defs, now=now, actor=actor or default_actor())
    held = [(sm.id, h) for sm in load_catalog(e.store()) for h in sm.active_holds(now)]
    emit_warnings([held_line(mid, h.to_json()) for mid, h in held])
    if json_out:
        emit_json(
            {**report.to_json(), "held": [{"migration": mid, **h.to_json()} for mid, h in held]}
        )
        return
    if report.nothing_changed:
        emit_lines([f"nothing changed: {len(report.unchanged)} migration(s) already up to date"])
        return
    lines = [f"added {mid}" for mid in report.added]
    lines += [f"changed {mid}: {', '.join(fields)}" for mid, fields in report.changed.items()]
    lines += [f"rescheduled {mid}" for mid in report.rescheduled]
    lines += [f"revived {mid}" for mid in report.revived]
    lines += [f"retired {mid} (history kept)" for mid in report.retired]
    emit_lines(lines)
