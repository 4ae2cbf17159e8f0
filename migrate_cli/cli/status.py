"""Commands that report: status, audit."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from migrate_cli.cli.common import (
    JsonOpt,
    app,
    env,
    handle_errors,
)
from migrate_cli.cli.output import (
    emit_json,
    emit_lines,
    emit_table,
    is_terminal,
    progress_bar,
)

if TYPE_CHECKING:
    from migrate_cli.store.db import Store

# --------------------------------------------------------------------------- status, audit


@app.command()
@handle_errors
def status(
    ctx: typer.Context,
    migration: Annotated[str | None, typer.Argument(help="Only this migration, in detail.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Per migration: phase, dates, days left, accounts per state, administrators pending.

    Example: migctl --now 2016-04-20 status email-delivery-changes
    """
    from migrate_cli.lifecycle.status import status_report

    e = env(ctx)
    store = e.store(create=False)
    report = status_report(store, e.now(store), migration)
    if json_out:
        emit_json(report)
        return
    if not report["migrations"]:
        emit_lines(["no migrations in the store; run `migctl sync` first"])
        return
    rows = []
    for m in report["migrations"]:
        a = m["accounts"]
        mandatory = m["mandatory_opt_in"]
        if isinstance(mandatory, dict):
            mandatory = ", ".join(f"{k}:{v or 'TBD'}" for k, v in mandatory.items())
        rows.append(
            [
                m["id"],
                m["severity"],
                m["phase"],
                m["grace_period_start"],
                mandatory or "TBD",
                m["days_left"] if m["days_left"] is not None else "-",
                a["pending"],
                a["opted_in"],
                a["auto_enrolled"],
                a["enforced"],
                progress_bar(m["migrated_share"])
                if is_terminal()
                else (f"{m['migrated_share']:.0%}" if m["migrated_share"] is not None else "-"),
                m["admins_pending"],
            ]
        )
    emit_table(
        f"Migrations at {report['now']} ({report['timezone']})",
        [
            "Migration",
            "Severity",
            "Phase",
            "Grace start",
            "Mandatory",
            "Days left",
            "Pending",
            "Opted in",
            "Auto",
            "Enforced",
            "Migrated",
            "Admins pending",
        ],
        rows,
    )
    delivered = [m for m in report["migrations"] if m["delivery"]["sent"]]
    if delivered:
        emit_table(
            "Delivery (provider feedback; rates over notices sent)",
            ["Migration", "Sent", "Delivered", "Bounced", "Hard", "Soft", "Complained", "Rejected"],
            [
                [
                    m["id"],
                    m["delivery"]["sent"],
                    *(_rated(m["delivery"], k) for k in ("delivered", "bounced")),
                    m["delivery"]["bounced_hard"],
                    m["delivery"]["bounced_soft"],
                    *(_rated(m["delivery"], k) for k in ("complained", "rejected")),
                ]
                for m in delivered
            ],
        )
    warnings = []
    if report["outbox"]["in_doubt"]:
        warnings.append(
            f"{report['outbox']['in_doubt']} notice(s) in doubt: check the provider, then "
            "`migctl outbox list --state in_doubt` and `migctl outbox resolve ID --sent|--not-sent`"
        )
    if report["outbox"]["failed"]:
        warnings.append(
            f"{report['outbox']['failed']} notice(s) failed: `migctl outbox list --state failed`"
        )
    if report["platform"]["failing"]:
        warnings.append(
            f"{report['platform']['pending']} enrollment event(s) not delivered to the platform "
            f"(oldest {report['platform']['oldest']}): `migctl platform status`"
        )
    if report["accounts_all_admins_suppressed"]:
        n = report["accounts_all_admins_suppressed"]
        warnings.append(
            f"{n} active account(s) have every administrator suppressed, nobody is being told "
            f"about them: {_listed(report['unreachable_accounts'][:3], n)} — see "
            "`migctl accounts list --unreachable` and `migctl suppress list`"
        )
    if report["accounts_without_admins"]:
        n = report["accounts_without_admins"]
        warnings.append(
            f"{n} active account(s) have no administrator: {_examples(store, n, no_admin=True)} "
            "— see `migctl accounts list --no-admin`"
        )
    for m in report["migrations"]:
        warnings += [held_line(m["id"], h) for h in m["held"]]
    emit_lines([f"warning: {w}" for w in warnings])
    emit_lines(
        [
            extended_line(m["id"], m["extended"])
            for m in report["migrations"]
            if m["extended"]["accounts"]
        ]
    )
    if migration is not None:
        m = report["migrations"][0]
        lines = [f"title: {m['title']}", f"total accounts in audience: {m['accounts']['total']}"]
        if m.get("applies_to"):
            lines.append(f"applies to: {m['applies_to']}")
        for p in m.get("plans", []):
            lines.append(
                f"plan {p['plan']}: {p['phase']}, mandatory {p['mandatory_opt_in'] or 'TBD'}, "
                f"days left {p['days_left'] if p['days_left'] is not None else '-'}"
            )
        emit_lines(lines)


def extended_line(migration_id: str, extended: dict[str, Any]) -> str:
    """How many pending accounts have a date of their own (rule 3b), and which dates."""
    dates = ", ".join(f"{n} until {until}" for until, n in extended["until"].items())
    return f"{migration_id}: {extended['accounts']} account(s) extended ({dates})"


def held_line(migration_id: str, hold: dict[str, Any]) -> str:
    """One held date (rule 3a), as status, enforce --dry-run, plan and sync print it."""
    scope = "" if hold["scope"] == "*" else f" (plan {hold['scope']})"
    return (
        f"{migration_id}{scope}: held until {hold['held_until']} (enforced no earlier than "
        f"{hold['earliest']}): {hold['why']}; only `migctl enforce {migration_id} --immediately "
        "--reason R` overrides"
    )


@app.command("audit")
@handle_errors
def audit_cmd(
    ctx: typer.Context,
    migration: Annotated[
        str | None, typer.Option("--migration", "-m", help="Only this migration.")
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", "-a", help="Only this account.")
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only actions starting with this.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many (newest first).")
    ] = 100,
    json_out: JsonOpt = False,
) -> None:
    """The audit log: every change to definitions, accounts and enrollments.

    Example: migctl audit --migration email-delivery-changes --account acme-prod
    """
    from migrate_cli.store.audit import list_events
    from migrate_cli.store.stored_migrations import get_migration

    store = env(ctx).store(create=False)
    if migration is not None:
        get_migration(store, migration)  # a typo is an error with a hint, not an empty log
    events = list_events(
        store,
        migration_id=migration,
        account_id=account,
        action=action,
        limit=limit,
    )
    if json_out:
        emit_json({"events": events})
        return
    emit_table(
        "Audit log",
        ["Id", "At", "Actor", "Action", "Migration", "Account", "Detail"],
        [
            [
                ev["id"],
                ev["at"],
                ev["actor"],
                ev["action"],
                ev["migration_id"],
                ev["account_id"],
                _short(ev["detail"]),
            ]
            for ev in events
        ],
    )


def _examples(store: Store, count: int, *, no_admin: bool = False) -> str:
    """The first few ids a warning counts, so the operator sees which accounts it means."""
    from migrate_cli.accounts.records import AccountFilter, iter_accounts

    ids = [r["id"] for r in iter_accounts(store, AccountFilter(no_admin=no_admin), limit=3)]
    return _listed(ids, count)


def _listed(ids: list[str], count: int) -> str:
    return ", ".join(ids) + (", …" if count > len(ids) else "")


def _rated(delivery: dict[str, Any], key: str) -> str:
    """`3 (1.2%)`: a count with its rate over the notices sent."""
    rate = delivery["rates"][key]
    return f"{delivery[key]}" + (f" ({rate:.1%})" if rate is not None else "")


def _short(detail: Any) -> str:
    """`key: value, …` as a person reads it (the JSON stays in `audit --json`)."""
    if not detail:
        return ""
    if not isinstance(detail, dict):
        return str(detail)
    parts = []
    for key, value in detail.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False)
        parts.append(f"{key}: {value}")
    text = ", ".join(parts)
    return text if len(text) <= 160 else text[:157] + "..."
