"""The `feedback` group: delivery events from the providers (import; pull and serve join it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from migrate_cli.cli.common import ActorOpt, JsonOpt, app, env, handle_errors
from migrate_cli.cli.context import default_actor
from migrate_cli.cli.output import emit_json, emit_lines, emit_warnings

feedback_app = typer.Typer(
    help="Delivery events from the providers: bounces, complaints, deliveries.",
    no_args_is_help=True,
)
app.add_typer(
    feedback_app,
    name="feedback",
    help="Delivery events from the providers: bounces, complaints, deliveries.\n\n"
    "Example: migctl feedback import ses-events.jsonl",
)

SHOWN = 20  # orphans and problems listed in human output; --json lists them all


@feedback_app.command("import")
@handle_errors
def feedback_import(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON (an event, an SNS envelope, a list) or JSON Lines (one per line).",
            dir_okay=True,  # a folder is refused with a located message, exit 1
        ),
    ],
    json_out: JsonOpt = False,
    actor: ActorOpt = None,
) -> None:
    """Record delivery events saved in a file (SES events from SQS, S3 or Firehose; SendGrid
    Event Webhook batches). Hard bounces and complaints suppress the address at once.

    Example: migctl feedback import examples/feedback/ses-bounce.json
    """
    from migrate_cli.feedback.importing import import_file

    e = env(ctx)
    # No run lock: the batch is one transaction, like `feedback pull` and `serve` beside cron.
    store = e.store(create=False)
    summary = import_file(
        store,
        file,
        config=e.config.feedback,
        now=e.now(store),
        actor=actor or default_actor(),
    )
    if json_out:
        emit_json(summary.to_json())
        return
    emit_lines(
        [
            f"{summary.received} events read: {summary.recorded} recorded, "
            f"{summary.duplicates} duplicates, {summary.orphans} orphans, "
            f"{summary.ignored} ignored, {summary.malformed} malformed",
            *(f"suppressed {address}" for address in summary.suppressed),
            *(f"orphan (no notice in this store): {o}" for o in summary.orphaned[:SHOWN]),
        ]
    )
    if len(summary.orphaned) > SHOWN:
        emit_lines([f"... and {len(summary.orphaned) - SHOWN} more orphans (--json lists all)"])
    emit_warnings(summary.problems[:SHOWN])
    if len(summary.problems) > SHOWN:
        emit_warnings([f"... and {len(summary.problems) - SHOWN} more problems (--json)"])
