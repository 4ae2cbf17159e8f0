"""The `feedback` group: delivery events from the providers (import, pull, serve)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from migrate_cli.cli.common import (
    ActorOpt,
    JsonOpt,
    app,
    env,
    graceful_stop,
    handle_errors,
    progress_reporter,
)
from migrate_cli.cli.context import default_actor
from migrate_cli.cli.output import emit_json, emit_lines, emit_warnings

if TYPE_CHECKING:
    from migrate_cli.feedback.record import FeedbackSummary
    from migrate_cli.feedback.sqs import PullSummary

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
    emit_summary(summary)


def emit_summary(summary: FeedbackSummary) -> None:
    """What a batch of events did, as `feedback import`, `pull` and `run` print it."""
    emit_lines(
        [
            f"events: {summary.received} received, {summary.recorded} recorded, "
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


@feedback_app.command("pull")
@handle_errors
def pull_cmd(
    ctx: typer.Context,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-seconds",
            min=0,
            help="Stop after this long even if events keep coming (default: [feedback] "
            "max_seconds).",
        ),
    ] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Read Amazon SES events from the SQS queue [feedback] sqs_queue_url names, record them,
    then delete them from the queue. Stops when the queue is empty.

    Exit codes: 0 ok, 1 the queue could not be read (nothing lost) or a configuration error.

    Example (crontab): */5 * * * * cd /srv/migctl && migctl feedback pull --json >> pull.log
    """
    from migrate_cli.feedback.sqs import pull, queue_url

    e = env(ctx)
    queue_url(e.config)  # a missing key is an error before the store is touched
    # No run lock, like `import` and `serve`: each batch is one transaction, and `run` pulls
    # under its own lock.
    store = e.store(create=False)
    with graceful_stop() as stop, progress_reporter() as progress:
        summary = pull(
            store,
            e.config,
            now=e.now(store),
            clock=time.monotonic,
            max_seconds=max_seconds,
            actor=actor or default_actor(),
            progress=progress,
            stop=stop,
        )
    if json_out:
        emit_json(summary.to_json())
        emit_warnings(summary.delete_errors)
        return
    emit_pull(summary)


def emit_pull(summary: PullSummary) -> None:
    """A pull as plain lines (also `run`'s): the queue, then what its events did."""
    emit_lines(
        [
            f"feedback: {summary.messages} message(s) from the SQS queue, {summary.deleted} "
            f"deleted (stopped: {summary.stopped_by})"
        ]
    )
    emit_summary(summary)
    emit_warnings(summary.delete_errors)


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@feedback_app.command("serve")
@handle_errors
def serve_cmd(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; keep 127.0.0.1 behind your HTTPS proxy."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    ] = 8025,
    actor: ActorOpt = None,
) -> None:
    """Receive SendGrid's signed Event Webhook on POST /sendgrid until Ctrl-C or SIGTERM.

    Each batch is verified (signature, timestamp, size), recorded in one short transaction,
    and only then answered 200; anything else gets an error status and SendGrid retries.
    One line per request on stderr; a summary line on stdout when it stops.
    Example: migctl feedback serve --host 127.0.0.1 --port 8025
    """
    from migrate_cli.feedback.webhook import PATH, Receiver, load_verifier, recorder

    e = env(ctx)
    config = e.config.feedback
    key_env = config.sendgrid_verification_key_env
    verifier = load_verifier(e.config.secret(key_env), key_env)  # before binding anything
    store = e.store(create=False)
    record = recorder(store, config, now=lambda: e.now(store), actor=actor or default_actor())
    receiver = Receiver(config, verifier, record, log=_stderr_line)
    with graceful_stop() as stop:
        bound_host, bound_port = receiver.listen(host, port)
        _stderr_line(f"listening on http://{bound_host}:{bound_port}{PATH} (Ctrl-C stops)")
        summary = receiver.serve(stop)
    emit_lines([summary.line()])
