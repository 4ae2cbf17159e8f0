"""The feedback commands: delivery events from the providers (pull from SES's SQS queue)."""

from __future__ import annotations

import time
from typing import Annotated

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

feedback_app = typer.Typer(
    help="Delivery events from the providers: bounces, complaints, deliveries.",
    no_args_is_help=True,
)
app.add_typer(
    feedback_app,
    name="feedback",
    help="Delivery events from the providers: bounces, complaints, deliveries; suppression "
    "follows.\n\nExample: migctl feedback pull",
)


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

    Exit codes: 0 ok, 1 the queue could not be read (nothing lost) or a configuration error,
    75 another run holds the lock.
    Example (crontab): */5 * * * * cd /srv/migctl && migctl feedback pull --json >> pull.log
    """
    from migrate_cli.feedback.sqs import pull, queue_url
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    queue_url(e.config)  # a missing key is an error before the lock or the store is touched
    with store_lock(e.db_path, command="feedback pull"), graceful_stop() as stop:
        store = e.store(create=False)
        with progress_reporter() as progress:
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
    else:
        emit_lines(pull_lines(summary.to_json()))
    emit_warnings(summary.delete_errors)


def pull_lines(doc: dict[str, object]) -> list[str]:
    """A pull's summary as plain lines (also `run`'s feedback line)."""
    lines = [
        f"feedback: {doc['messages']} message(s) from the queue, {doc['recorded']} event(s) "
        f"recorded, {doc['duplicates']} duplicate(s), {doc['orphans']} orphan(s), "
        f"{doc['malformed']} malformed, {doc['ignored']} ignored; {doc['deleted']} deleted "
        f"from the queue (stopped: {doc['stopped_by']})"
    ]
    suppressed = doc.get("suppressed") or []
    assert isinstance(suppressed, list)
    if suppressed:
        lines.append(f"suppressed: {', '.join(str(a) for a in suppressed)}")
    problems = doc.get("problems") or []
    assert isinstance(problems, list)
    lines += [f"problem: {p}" for p in problems]
    return lines
