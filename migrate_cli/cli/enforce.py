"""The enforce command."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from migrate_cli.cli.common import (
    ActorOpt,
    JsonOpt,
    ReasonOpt,
    app,
    env,
    handle_errors,
)
from migrate_cli.cli.context import default_actor
from migrate_cli.cli.output import (
    emit_json,
    emit_lines,
    emit_table,
    is_terminal,
)
from migrate_cli.errors import (
    EXIT_ERROR,
    InputError,
    UsageError,
)

# --------------------------------------------------------------------------- enforcement, cron


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
    from migrate_cli.lifecycle.enforcement import (
        EnforceReport,
        apply_enforcements,
        due_enforcements,
        immediate_enforcement,
    )
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import get_migration, load_catalog, store_timezone
    from migrate_cli.timeutil import iso

    e = env(ctx)
    if immediately and (not migration or not reason or not reason.strip()):
        raise UsageError("--immediately needs a MIGRATION and a --reason (it is recorded)")
    # Only an operator at a terminal is asked to confirm a large batch: only then (and for a
    # dry run) are the accounts counted before switching. Otherwise the output reports what
    # the enforcement itself switched.
    confirm = not yes and is_terminal() and sys.stdin.isatty()
    with store_lock(e.db_path, command="enforce"):
        store = e.store()
        tz = store_timezone(store)
        now = e.now(store)
        catalog = load_catalog(store)
        if migration:
            sm = get_migration(store, migration)
            if sm.status != "active":
                raise InputError([], f"{migration} is retired; nothing to enforce")
        if immediately:
            assert migration is not None
            batches = [immediate_enforcement(store, get_migration(store, migration), tz)]
        else:
            batches = due_enforcements(
                store, catalog, tz, now, migration, with_admins=dry_run, counted=dry_run or confirm
            )
        total = sum(b.accounts or 0 for b in batches)
        doc: dict[str, Any] = {
            "now": iso(now),
            "dry_run": dry_run,
            "batches": [b.to_json() for b in batches],
            "enforced": {},
        }
        if dry_run or not batches:
            doc["enforced"] = EnforceReport(batches=batches).by_migration() if dry_run else {}
            if json_out:
                emit_json(doc)
            else:
                _enforce_table(batches, "would switch" if dry_run and batches else "nothing is due")
                if dry_run:
                    emit_lines(["dry run: nothing was written"])
            return
        limit = e.config.enforcement.max_accounts_without_confirm
        if total > limit and confirm:
            _enforce_table(batches, "about to switch")
            if not typer.confirm(f"Switch {total} account(s) now?", default=False):
                raise typer.Exit(EXIT_ERROR)
        report = apply_enforcements(
            store,
            catalog,
            tz,
            now,
            batches,
            actor=actor or default_actor(),
            from_addr=e.config.email.from_addr,
            reason=reason.strip() if reason else None,
        )
    doc["batches"] = [b.to_json() for b in report.batches]  # what was switched, counted
    doc["enforced"] = report.by_migration()
    doc["notices_queued"] = report.notices
    if json_out:
        emit_json(doc)
        return
    _enforce_table(report.batches, "switched")
    emit_lines(
        [f"queued {report.notices} enforced notice(s); `migctl notify` or `migctl run` sends them"]
    )


def _enforce_table(batches: list[Any], what: str) -> None:
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
