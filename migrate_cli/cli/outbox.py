"""Commands that inspect and settle the outbox and the suppression list."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate_cli.cli.common import (
    ActorOpt,
    JsonOpt,
    env,
    handle_errors,
    outbox_app,
    suppress_app,
)
from migrate_cli.cli.context import default_actor
from migrate_cli.cli.output import (
    delivery_cell,
    emit_json,
    emit_lines,
    emit_table,
)
from migrate_cli.errors import (
    UsageError,
)
from migrate_cli.vocabulary import NoticeState


@outbox_app.command("list")
@handle_errors
def outbox_list(
    ctx: typer.Context,
    state: Annotated[
        NoticeState | None,
        typer.Option("--state", help="Only notices in this state."),
    ] = None,
    migration: Annotated[
        str | None, typer.Option("--migration", "-m", help="Only this migration.")
    ] = None,
    email: Annotated[str | None, typer.Option("--email", help="Only this administrator.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many (newest first).")
    ] = 100,
    json_out: JsonOpt = False,
) -> None:
    """Notices in the outbox with their state, attempts and last error.

    Example: migctl outbox list --state in_doubt
    """
    from migrate_cli.store.outbox import counts, list_rows
    from migrate_cli.store.stored_migrations import get_migration

    store = env(ctx).store(create=False)
    if migration is not None:
        get_migration(store, migration)  # a typo is an error with a hint, not an empty list
    rows = list_rows(store, state=state, migration_id=migration, email=email, limit=limit)
    if json_out:
        emit_json({"counts": counts(store), "rows": rows})
        return
    emit_table(
        "Outbox",
        [
            "Id",
            "State",
            "Kind",
            "Migration",
            "Administrator",
            "Attempts",
            "Next attempt",
            "Delivery",
            "Error",
        ],
        [
            [
                r["id"],
                r["state"],
                r["kind"],
                r["migration_id"],
                r["email"],
                r["attempts"],
                r["next_attempt_at"] or "" if r["state"] == "pending" else "",
                delivery_cell(r["delivery"]),
                r["last_error"] or "",
            ]
            for r in rows
        ],
    )
    c = counts(store)
    emit_lines([", ".join(f"{k} {v}" for k, v in c.items())])


@outbox_app.command("show")
@handle_errors
def outbox_show(
    ctx: typer.Context,
    row_id: Annotated[int, typer.Argument(help="The notice's id (from `outbox list`).")],
    html: Annotated[bool, typer.Option("--html", help="Also print the HTML part.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """One stored notice as it is sent: its headers and text part, rendered from its row the
    way the send loop renders it (days left as of --now: give the run's --now to see it exactly).

    Example: migctl --now 2016-04-20 outbox show 12
    """
    from datetime import datetime

    from migrate_cli.delivery.mime import build_message
    from migrate_cli.notices.preview import stored_notice

    e = env(ctx)
    store = e.store(create=False)
    row, email = stored_notice(store, e.config, e.now(store), row_id)
    sent_at = datetime.fromisoformat(row["sent_at"]) if row["sent_at"] else None
    msg = build_message(email, now=sent_at)
    headers = [(k, str(v)) for k, v in msg.items() if k.lower() != "content-type"]
    if json_out:
        emit_json(
            {
                **row,
                "headers": dict(headers),
                "text": email.text,
                **({"html": email.html} if html else {}),
            }
        )
        return
    emit_lines(
        [f"notice {row['id']}: {row['kind']} of {row['migration_id']}, {row['state']}"]
        + [f"{k}: {v}" for k, v in headers]
        + ["", email.text.rstrip("\n")]
        + (["", "--- html part ---", email.html.rstrip("\n")] if html else [])
    )


@outbox_app.command("retry")
@handle_errors
def outbox_retry(
    ctx: typer.Context,
    row_id: Annotated[
        list[int] | None, typer.Option("--id", help="Only these rows (repeatable).")
    ] = None,
    actor: ActorOpt = None,
) -> None:
    """Put failed notices back to pending after the cause was fixed; the next run sends them.

    Example: migctl outbox retry --id 42
    """
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.outbox import retry_failed

    e = env(ctx)
    with store_lock(e.db_path, command="outbox retry"):
        store = e.store()
        n = retry_failed(store, now=e.now(store), actor=actor or default_actor(), ids=row_id)
    emit_lines([f"{n} failed notice(s) back to pending"])


@outbox_app.command("resolve")
@handle_errors
def outbox_resolve(
    ctx: typer.Context,
    row_id: Annotated[
        int, typer.Argument(help="Outbox row id (see `outbox list --state in_doubt`).")
    ],
    sent: Annotated[
        bool, typer.Option("--sent", help="The provider did accept it: mark it sent.")
    ] = False,
    not_sent: Annotated[
        bool, typer.Option("--not-sent", help="It never left: send it again.")
    ] = False,
    actor: ActorOpt = None,
) -> None:
    """Settle an in-doubt notice after checking the provider's logs.

    Example: migctl outbox resolve 42 --not-sent
    """
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.outbox import resolve

    if sent == not_sent:
        raise UsageError("give exactly one of --sent or --not-sent")
    e = env(ctx)
    with store_lock(e.db_path, command="outbox resolve"):
        store = e.store()
        result = resolve(store, row_id, sent=sent, now=e.now(store), actor=actor or default_actor())
    emit_lines([f"outbox row {row_id} is now {result['state']}"])


@suppress_app.command("add")
@handle_errors
def suppress_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="Address to suppress.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "operator request",
    source: Annotated[
        str, typer.Option("--source", help="Where it came from (e.g. a ticket).")
    ] = "operator",
    actor: ActorOpt = None,
) -> None:
    """Stop all notices to an address.

    Example: migctl suppress add bounced@example.com --reason "mailbox gone"
    """
    from migrate_cli.accounts.suppressions import add
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    with store_lock(e.db_path, command="suppress add"):
        store = e.store()
        result = add(
            store,
            email,
            reason=reason,
            source=source,
            now=e.now(store),
            actor=actor or default_actor(),
        )
    emit_lines([f"{result} {email.strip().lower()}"])


@suppress_app.command("remove")
@handle_errors
def suppress_remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="Address to allow again.")],
    actor: ActorOpt = None,
) -> None:
    """Allow notices to an address again.

    Example: migctl suppress remove bounced@example.com
    """
    from migrate_cli.accounts.suppressions import remove
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    with store_lock(e.db_path, command="suppress remove"):
        store = e.store()
        remove(store, email, now=e.now(store), actor=actor or default_actor())
    emit_lines([f"removed {email.strip().lower()}"])


@suppress_app.command("list")
@handle_errors
def suppress_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Suppressed addresses with reason and source.

    Example: migctl suppress list --json
    """
    from migrate_cli.accounts.suppressions import list_all

    rows = list_all(env(ctx).store(create=False))
    if json_out:
        emit_json({"suppressions": rows})
        return
    emit_table(
        "Suppressed addresses",
        ["Email", "Reason", "Source", "Since"],
        [[r["email"], r["reason"], r["source"], r["created_at"]] for r in rows],
    )
