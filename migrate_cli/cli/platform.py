"""The platform commands: push, status, replay (enrollment changes to the platform's endpoint)."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate_cli.cli.common import JsonOpt, app, env, graceful_stop, handle_errors
from migrate_cli.cli.output import emit_json, emit_lines
from migrate_cli.errors import EXIT_PARTIAL, InputError, Problem

platform_app = typer.Typer(
    help="Enrollment changes to the platform's endpoint.", no_args_is_help=True
)
app.add_typer(
    platform_app,
    name="platform",
    help="Enrollment changes to the platform's endpoint, signed, in order.\n\n"
    "Example: migctl platform push",
)


@platform_app.command("push")
@handle_errors
def push_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Send the pending enrollment events now, oldest first, as signed batches.

    Exit codes: 0 all delivered, 1 the endpoint refused them (configuration), 3 some wait for
    a retry after a transient failure.
    Example: migctl platform push --json
    """
    from migrate_cli.platform.push import push
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    with store_lock(e.db_path, command="platform push"), graceful_stop() as stop:
        store = e.store(create=False)
        report = push(store, e.config, e.now(store), stop=stop)
    if json_out:
        emit_json(report.to_json())
    else:
        line = f"delivered {report.delivered} event(s) in {report.batches} batch(es)"
        if report.pending:
            line += f"; {report.pending} pending"
        if report.error:
            line += f" (last error: {report.error})"
        emit_lines([line])
    if report.partial:
        raise typer.Exit(EXIT_PARTIAL)


@platform_app.command("status")
@handle_errors
def status_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Pending, delivered and failing events and the age of the oldest undelivered one.

    Example: migctl platform status --json
    """
    from migrate_cli.store import events

    e = env(ctx)
    store = e.store(create=False)
    doc = events.summary(store, e.now(store))
    if json_out:
        emit_json(doc)
        return
    emit_lines([f"{key}: {'-' if value is None else value}" for key, value in doc.items()])


@platform_app.command("replay")
@handle_errors
def replay_cmd(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option("--since", help="Send again the events recorded at or after this instant."),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Send delivered events again (same ids and sequences), for a receiver that lost its data.

    Example: migctl platform replay --since 2016-05-01
    """
    from migrate_cli.platform.push import endpoint, push
    from migrate_cli.store import events
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import store_timezone
    from migrate_cli.timeutil import parse_instant

    e = env(ctx)
    with store_lock(e.db_path, command="platform replay"), graceful_stop() as stop:
        store = e.store(create=False)
        try:
            instant = parse_instant(since, store_timezone(store))
        except (ValueError, OverflowError) as exc:
            raise InputError(
                [Problem("--since", None, None, str(exc))], "invalid --since"
            ) from None
        endpoint(e.config)  # a missing endpoint or secret before anything is marked
        marked = events.replay(store, instant)
        report = push(store, e.config, e.now(store), stop=stop)
    if json_out:
        emit_json({"replayed": marked, **report.to_json()})
    else:
        emit_lines(
            [f"replaying {marked} event(s): delivered {report.delivered}, {report.pending} pending"]
        )
    if report.partial:
        raise typer.Exit(EXIT_PARTIAL)
