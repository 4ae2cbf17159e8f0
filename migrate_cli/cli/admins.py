"""Commands about administrators: admins show."""

from __future__ import annotations

from typing import Annotated

import typer

from migrate_cli.cli.common import JsonOpt, app, env, handle_errors
from migrate_cli.cli.output import delivery_cell, emit_json, emit_lines, emit_table

admins_app = typer.Typer(
    help="Account administrators: what they administer and what they were told.",
    no_args_is_help=True,
)
app.add_typer(
    admins_app,
    name="admins",
    help="Account administrators: what they administer and what they were told.\n\n"
    "Example: migctl admins show ops@acme.example",
)


@admins_app.command("show")
@handle_errors
def admins_show(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The administrator's email address.")],
    json_out: JsonOpt = False,
) -> None:
    """One administrator: their accounts with each migration's state and date, every notice
    sent or queued to them (kind, state, times, why), and their suppression.

    Example: migctl admins show ops@acme.example
    """
    from migrate_cli.accounts.admins import admin_history

    history = admin_history(env(ctx).store(create=False), email)
    if json_out:
        emit_json(history)
        return
    s = history["suppressed"]
    emit_lines(
        [
            f"administrator {history['email']}",
            "suppressed: "
            + (f"yes, since {s['created_at']} ({s['reason']}, from {s['source']})" if s else "no"),
        ]
    )
    emit_table(
        "Accounts",
        ["Account", "Name", "Plan", "Status", "Migration", "State", "Mandatory"],
        [
            [
                a["id"],
                a["name"],
                a["plan"],
                a["status"],
                m["migration"],
                m["state"],
                m["deadline"] or "TBD",
            ]
            for a in history["accounts"]
            for m in a["migrations"] or [{"migration": "-", "state": "-", "deadline": "-"}]
        ],
    )
    emit_table(
        "Notices (newest first; `migctl outbox show ID` shows one as sent)",
        ["Id", "Migration", "Kind", "State", "Queued", "Sent", "Delivery", "Attempts", "Why"],
        [
            [
                n["id"],
                n["migration_id"],
                n["kind"],
                n["state"],
                n["created_at"],
                n["sent_at"] or "-",
                delivery_cell(n["delivery"]) or "-",
                n["attempts"],
                n["why"] + (f" — {n['last_error']}" if n["last_error"] else ""),
            ]
            for n in history["notices"]
        ],
    )
