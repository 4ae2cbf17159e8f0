"""Commands for notices: notify (and its test send), preview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from migrate_cli.cli.common import (
    JsonOpt,
    app,
    env,
    graceful_stop,
    handle_errors,
    progress_reporter,
)
from migrate_cli.cli.context import Env
from migrate_cli.cli.output import (
    emit_json,
    emit_lines,
    emit_table,
)
from migrate_cli.errors import (
    EXIT_PARTIAL,
    UsageError,
)
from migrate_cli.vocabulary import NoticeKind


def notices_lines(doc: dict[str, Any]) -> list[str]:
    n = doc["notices"]
    kinds = ", ".join(f"{k} {v}" for k, v in n["by_kind"].items()) or "none"
    line = (
        f"notices: planned {n['planned']} ({kinds}), sent {n['sent']}, failed {n['failed']}, "
        f"in doubt {n['in_doubt']}, suppressed {n['suppressed']}"
    )
    if n.get("retry_later"):
        line += f", retry later {n['retry_later']}"
    if n.get("quota_reached"):
        line += " — daily quota reached, the rest stays pending"
    lines = [line, *([f"paused: {n['paused']}"] if n.get("paused") else [])]
    for mid, accounts in doc.get("enforcement_due", {}).items():
        lines.append(
            f"enforcement due: {mid}: {accounts} account(s) past their date are still pending "
            f"and get no reminder; run `migctl enforce {mid}` (or the cron job, `migctl run`)"
        )
    return lines


def _plan_table(sample: list[Any], total: int) -> None:
    emit_table(
        f"Notices due ({total} planned"
        + (f", first {len(sample)} shown" if len(sample) < total else "")
        + ")",
        ["Administrator", "Migration", "Kind", "Accounts", "Why"],
        [
            [
                n.email + (" (suppressed)" if n.suppressed else ""),
                n.migration_id,
                n.kind,
                len(n.account_ids),
                n.why,
            ]
            for n in sample
        ],
    )


@app.command()
@handle_errors
def notify(
    ctx: typer.Context,
    migration: Annotated[str | None, typer.Argument(help="Only this migration.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show who would get what and why; write nothing.")
    ] = False,
    test_to: Annotated[
        str | None,
        typer.Option("--test-to", help="Send one sample notice to this address (not recorded)."),
    ] = None,
    kind: Annotated[
        NoticeKind, typer.Option("--kind", help="With --test-to: the kind of notice.")
    ] = NoticeKind.REMINDER,
    json_out: JsonOpt = False,
) -> None:
    """Plan the notices due now, queue them in the outbox and send them.

    Example: migctl --now 2016-04-20 notify --dry-run
    """
    from migrate_cli.delivery.base import ProviderConfigError
    from migrate_cli.errors import SendingStoppedError
    from migrate_cli.notices.notify import notify as do_notify
    from migrate_cli.notices.notify import plan_only
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    e = env(ctx)
    if test_to is not None:
        _send_test(e, migration, test_to, kind, json_out)
        return
    if dry_run:
        store = e.store(create=False)
        catalog = load_catalog(store)
        if migration and migration not in {sm.id for sm in catalog}:
            from migrate_cli.store.stored_migrations import get_migration

            get_migration(store, migration)
        summary = plan_only(store, catalog, store_timezone(store), e.now(store), migration)
        if json_out:
            emit_json(summary.to_json())
            return
        _plan_table(summary.sample, summary.planned + summary.suppressed)
        emit_lines(["dry run: nothing was written or sent", *notices_lines(summary.to_json())])
        return
    with store_lock(e.db_path, command="notify"), graceful_stop() as stop:
        store = e.store()
        catalog = load_catalog(store)
        if migration:
            from migrate_cli.store.stored_migrations import get_migration

            get_migration(store, migration)
        now = e.now(store)
        with progress_reporter() as progress:  # notify names its phases and real totals
            from migrate_cli.notices.notify import NotifySummary

            summary = NotifySummary(now=now, dry_run=False)
            try:
                do_notify(
                    store,
                    e.config,
                    catalog,
                    store_timezone(store),
                    now,
                    only=migration,
                    stop=stop,
                    progress=progress,
                    summary=summary,
                )
            except (ProviderConfigError, SendingStoppedError) as exc:
                if json_out:  # what was sent before the stop still counts
                    emit_json({**summary.to_json(), "error": str(exc)})
                raise
    doc = summary.to_json()
    if json_out:
        emit_json(doc)
    else:
        emit_lines(notices_lines(doc))
        if stop.is_set():
            emit_lines(["stopped by a signal after recording the send in flight"])
    if summary.partial:
        raise typer.Exit(EXIT_PARTIAL)


def _send_test(e: Env, migration: str | None, to: str, kind: str, json_out: bool) -> None:
    from migrate_cli.delivery.base import SendStatus
    from migrate_cli.notices.preview import send_test

    if migration is None:
        raise UsageError("--test-to needs a MIGRATION argument")
    store = e.store(create=False)
    address, result = send_test(store, e.config, migration, e.now(store), to=to, kind=kind)
    doc = {
        "to": address,
        "migration": migration,
        "kind": kind,
        "status": str(result.status),
        "provider_message_id": result.provider_message_id,
        "error": result.error,
        "code": result.code,
    }
    if json_out:
        emit_json(doc)
    else:
        emit_lines(
            [
                f"test notice to {address}: {result.status}"
                + (f" ({result.error})" if result.error else "")
            ]
        )
    if result.status != SendStatus.SENT:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
@handle_errors
def preview(
    ctx: typer.Context,
    migration: Annotated[str, typer.Argument(help="Migration id.")],
    kind: Annotated[NoticeKind, typer.Option("--kind", help="The kind of notice.")] = (
        NoticeKind.REMINDER
    ),
    admin: Annotated[
        str | None, typer.Option("--admin", help="Render for this administrator's accounts.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write .html and .eml files into this folder.")
    ] = None,
) -> None:
    """Render a notice as it would be sent (the store's data, or sample data when it has none).

    Example: migctl preview email-delivery-changes --kind reminder --admin ops@acme.test --out previews/
    """
    from migrate_cli.notices.notify import make_renderer
    from migrate_cli.notices.preview import build_preview, write_preview
    from migrate_cli.store.stored_migrations import get_migration, store_timezone

    e = env(ctx)
    store = e.store(create=False)
    sm = get_migration(store, migration)
    p = build_preview(
        store,
        sm,
        e.config,
        make_renderer(e.config),
        store_timezone(store),
        e.now(store),
        kind=kind,
        admin=admin,
    )
    if out is not None:
        paths = write_preview(p, out)
        emit_lines([f"wrote {path}" for path in paths])
        return
    header = f"To: {p.email.to}" + (
        f" (sample data: {p.sample_reason}; the administrator and accounts are made up)"
        if p.sample
        else " (from the store)"
    )
    emit_lines([header, f"Subject: {p.rendered.subject}", "", p.rendered.text.rstrip("\n")])
