"""The feedback commands: delivery events from the providers (bounces, complaints, deliveries)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from migrate_cli.cli.common import ActorOpt, app, env, graceful_stop, handle_errors
from migrate_cli.cli.output import emit_lines

feedback_app = typer.Typer(
    help="Delivery events from the providers: delivered, bounced, complained.",
    no_args_is_help=True,
)
app.add_typer(
    feedback_app,
    name="feedback",
    help="Delivery events from the providers: delivered, bounced, complained; suppression "
    "follows.\n\nExample: migctl feedback serve --port 8025",
)


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
    from migrate_cli.cli.context import default_actor
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
