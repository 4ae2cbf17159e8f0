"""preview: render one notice as it would be sent, from the store's data or sample data."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from migrate_cli.accounts.reading import normalise_email
from migrate_cli.config import Config
from migrate_cli.delivery.base import OutgoingEmail, SendResult
from migrate_cli.delivery.mime import as_bytes, build_message
from migrate_cli.errors import InputError, NotFoundError, Problem
from migrate_cli.files import write_private
from migrate_cli.lifecycle.enrollment import pending_accounts_sql
from migrate_cli.lifecycle.planning import past_dates
from migrate_cli.notices.dispatch import changed_dates, dated_account, previous_deadline
from migrate_cli.notices.notify import make_renderer, provider_factory
from migrate_cli.notices.render import NoticeContext, Rendered, Renderer, sample_context
from migrate_cli.store.db import Store
from migrate_cli.store.outbox import message_id, notice_key
from migrate_cli.store.stored_migrations import (
    StoredMigration,
    get_migration,
    schedule_history,
    store_timezone,
)
from migrate_cli.timeutil import days_until, local_date
from migrate_cli.vocabulary import NoticeKind, choices

MAX_LISTED = 100


@dataclass
class Preview:
    context: NoticeContext
    rendered: Rendered
    email: OutgoingEmail
    sample: bool
    sample_reason: str = ""  # why the store's data could not be used (shown with the sample)


def build_preview(
    store: Store,
    sm: StoredMigration,
    config: Config,
    renderer: Renderer,
    tz: tzinfo,
    now: datetime,
    *,
    kind: str,
    admin: str | None,
    test: bool = False,
    to: str | None = None,
) -> Preview:
    if kind not in choices(NoticeKind):
        raise InputError(
            [
                Problem(
                    "--kind", None, None, f"{kind!r} is not one of {', '.join(choices(NoticeKind))}"
                )
            ]
        )
    m = sm.migration
    today = local_date(now, tz)
    context: NoticeContext | None = None
    sql, params = pending_accounts_sql(m, tz)
    past = past_dates(store, sm)
    befores, bparams = past.listed_sql()
    # Each account with its own date now and under each earlier schedule.
    mine = (
        f"SELECT p.*, {befores} AS befores FROM ({sql}) p JOIN account_admins x "
        "ON x.account_id = p.id AND x.email = ? ORDER BY p.id"
    )
    if admin is not None:
        admin = admin.strip().lower()
        rows = store.query(mine, [*bparams, *params, admin])
        if not rows:
            raise NotFoundError(f"{admin} has no pending account in {m.id}")
    else:
        first = store.query(
            f"SELECT x.email FROM ({sql}) p JOIN account_admins x ON x.account_id = p.id ORDER BY x.email LIMIT 1",
            params,
        )
        rows = []
        if first:
            admin = first[0]["email"]
            rows = store.query(mine, [*bparams, *params, admin])
    if rows:
        # The dates the administrator was last told of; once told of the latest change (or
        # never told anything), the dates before it.
        told = store.scalar(
            "SELECT max(schedule_version) FROM outbox WHERE migration_id = ? AND email = ? "
            "AND state != 'suppressed'",
            (m.id, admin),
        )
        version = told if told is not None and told < sm.schedule_version else None
        column = past.column(sm.schedule_version - 1 if version is None else version)
        if kind != NoticeKind.SCHEDULE_CHANGE:
            column = None  # only a schedule change names earlier dates
        accounts = [
            dated_account(
                m,
                r["id"],
                r["name"],
                r["plan"],
                r["deadline"],
                json.loads(r["befores"])[column] if column is not None else r["deadline"],
            )
            for r in rows
        ]
        deadlines = [a.deadline for a in accounts if a.deadline]
        deadline = min(deadlines) if deadlines else None
        previous = previous_deadline(sm)
        if kind == NoticeKind.SCHEDULE_CHANGE:
            deadline, previous = changed_dates(accounts, deadline, previous)
        context = NoticeContext(
            migration=m,
            kind=kind,
            admin_email=admin or "",
            deadline=deadline,
            days_left=days_until(deadline, now, tz) if deadline else None,
            accounts=accounts[:MAX_LISTED],
            accounts_total=len(rows),
            today=today,
            previous_deadline=previous,
            deadlines_differ=len({a.deadline for a in accounts}) > 1,
            emergency=kind == "enforced" and bool(sm.immediate_reason),
            reason=sm.immediate_reason,
        )
    sample = context is None
    reason = ""
    if context is None:
        active = int(store.scalar("SELECT count(*) FROM accounts WHERE status = 'active'") or 0)
        reason = (
            "no account in the store"
            if not active
            else f"none of the {active} active account(s) is pending in {m.id}"
        )
        context = _sample(store, sm, kind, today)
    rendered = renderer.render(kind, context)
    recipient = to or context.admin_email
    key = notice_key(m.id, recipient, kind, "test" if test else "preview")
    email = OutgoingEmail(
        key=key,
        to=recipient,
        from_addr=config.email.from_addr,
        reply_to=config.email.reply_to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id(key + (now.isoformat() if test else ""), config.email.from_addr),
        headers={"X-Migctl-Kind": kind, "X-Migctl-Migration": m.id},
        test=test,
    )
    return Preview(context, rendered, email, sample, reason)


def _sample(store: Store, sm: StoredMigration, kind: str, today: date) -> NoticeContext:
    """Made-up administrator and accounts, but the migration's real last schedule change."""
    context = sample_context(sm.migration, kind, today)
    if kind != NoticeKind.SCHEDULE_CHANGE or not sm.schedule_version:
        return context
    old = schedule_history(store, sm)[-1]
    accounts = [replace(a, previous_deadline=old.deadline_for(a.plan)) for a in context.accounts]
    deadline, previous = changed_dates(accounts, context.deadline, previous_deadline(sm))
    return replace(
        context,
        accounts=accounts,
        deadline=deadline,
        days_left=(deadline - today).days if deadline else None,
        previous_deadline=previous,
    )


_SAFE = re.compile(r"[^a-z0-9_.-]+")


def write_preview(preview: Preview, out_dir: Path) -> list[Path]:
    """Write .html and .eml into out_dir; names are built from slugs, never from user paths.

    Notices hold administrators' addresses and account names: owner-only, like the store.
    """
    base = _SAFE.sub("-", f"{preview.context.migration.id}.{preview.context.kind}".lower()).strip(
        ".-"
    )
    html_path = out_dir / f"{base}.html"
    eml_path = out_dir / f"{base}.eml"
    write_private(html_path, preview.rendered.html)
    write_private(eml_path, as_bytes(build_message(preview.email)))
    return [html_path, eml_path]


def send_test(
    store: Store, config: Config, migration_id: str, now: datetime, *, to: str, kind: str
) -> tuple[str, SendResult]:
    """Send one sample notice to ``to`` through the configured provider; nothing is recorded.

    Returns the normalised address and the provider's answer.
    """
    try:
        address = normalise_email(to)
    except ValueError as exc:
        raise InputError([], f"--test-to: {exc}") from None
    sm = get_migration(store, migration_id)
    factory, _ = provider_factory(config)
    preview = build_preview(
        store,
        sm,
        config,
        make_renderer(config),
        store_timezone(store),
        now,
        kind=kind,
        admin=None,
        test=True,
        to=address,
    )
    with factory() as provider:
        return address, provider.send(preview.email)


def stored_notice(
    store: Store, config: Config, now: datetime, row_id: int
) -> tuple[dict[str, Any], OutgoingEmail]:
    """An outbox row and its notice re-rendered exactly as the send loop renders it; the
    days left follow ``now`` (pass the run's --now to see what it sent)."""
    from migrate_cli.notices.dispatch import render_row
    from migrate_cli.store.outbox import get_row, row_json

    row = get_row(store, row_id)
    sm = get_migration(store, row["migration_id"])
    email = render_row(store, row, sm, make_renderer(config), config, now, store_timezone(store))
    return row_json(row), email
