"""The enforce command."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from migrate_cli.cli.common import (
    ActorOpt,
    JsonOpt,
    ReasonOpt,
    app,
    env,
    handle_errors,
    progress_reporter,
)
from migrate_cli.cli.context import default_actor
from migrate_cli.cli.output import (
    emit_json,
    emit_lines,
    emit_table,
    is_terminal,
)
from migrate_cli.errors import EXIT_ERROR

if TYPE_CHECKING:
    from migrate_cli.lifecycle.enforcement import Enforcement


@app.command()
@handle_errors
def enforce(
    ctx: typer.Context,
    migration: Annotated[str | None, typer.Argument(help="Only this migration.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
    ] = False,
    immediately: Annotated[
        bool, typer.Option("--immediately", help="Enforce now, before the date (needs --reason).")
    ] = False,
    reason: ReasonOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Skip the confirmation for large batches.")
    ] = False,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Switch every remaining pending account of migrations whose mandatory date has passed.

    Example: migctl --now 2016-05-11 enforce email-delivery-changes --dry-run
    """
    from migrate_cli.lifecycle.enforcement import ConfirmPolicy, NotConfirmed
    from migrate_cli.lifecycle.enforcement import enforce as do_enforce
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    policy = ConfirmPolicy(
        limit=e.config.enforcement.max_accounts_without_confirm,
        yes=yes,
        interactive=is_terminal() and sys.stdin.isatty(),
    )
    with store_lock(e.db_path, command="enforce"), progress_reporter() as progress:
        store = e.store()
        try:
            outcome = do_enforce(
                store,
                e.now(store),
                only=migration,
                immediately=immediately,
                reason=reason,
                dry_run=dry_run,
                actor=actor or default_actor(),
                from_addr=e.config.email.from_addr,
                policy=policy,
                ask=_ask,
                progress=progress,
            )
        except NotConfirmed:
            emit_lines(["aborted: nothing was switched"])
            raise typer.Exit(EXIT_ERROR) from None
    if json_out:
        emit_json(outcome.to_json())
    elif outcome.report is not None:
        _enforce_table(outcome.batches, "switched")
        emit_lines(
            [
                f"queued {outcome.report.notices} enforced notice(s); "
                "`migctl notify` or `migctl run` sends them"
            ]
        )
    else:
        _enforce_table(
            outcome.batches, "would switch" if dry_run and outcome.batches else "nothing is due"
        )
        if dry_run:
            emit_lines(["dry run: nothing was written"])


def _ask(batches: list[Enforcement], question: str) -> str:
    _enforce_table(batches, "about to switch")
    try:
        return str(typer.prompt(question, default="", show_default=False))
    except typer.Abort:  # end of input: no answer is not a yes
        return ""


def _enforce_table(batches: list[Enforcement], what: str) -> None:
    if not batches:
        emit_lines([f"enforce: {what}"])
        return
    emit_table(
        f"Enforcement ({what})",
        ["Migration", "Scope", "Mandatory", "Accounts", "Administrators", "Immediate"],
        [
            [
                b.migration_id,
                b.scope,
                b.deadline.isoformat() if b.deadline else "-",
                b.accounts,
                b.admins,
                "yes" if b.immediate else "no",
            ]
            for b in batches
        ],
    )
