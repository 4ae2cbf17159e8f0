"""The migctl command line: parse options, call one library function, render, map errors."""

from __future__ import annotations

import functools
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from migrate_cli import __version__
from migrate_cli.context import Env, default_actor
from migrate_cli.errors import EXIT_ERROR, InputError, MigctlError, StoreError
from migrate_cli.output import console, emit_json, emit_lines, emit_table, is_terminal, progress_bar

app = typer.Typer(
    name="migctl",
    help="Run breaking-change migrations across customer accounts: announce, remind, enforce.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
accounts_app = typer.Typer(help="Customer accounts and their administrators.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")

F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who is making the change (default: the OS user).")
]


def handle_errors(fn: F) -> F:
    """Turn domain errors into one clear message on stderr and the SPEC exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx: typer.Context = kwargs["ctx"]  # every command takes ctx first
        try:
            return fn(*args, **kwargs)
        except MigctlError as exc:
            fail(exc)
        except sqlite3.DatabaseError as exc:
            fail(StoreError(f"store error: {exc} (store: {env(ctx).db_path})"))
        except OSError as exc:
            fail(MigctlError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")))
        finally:
            env(ctx).close()

    return wrapper  # type: ignore[return-value]


def fail(exc: MigctlError) -> None:
    err = console(stderr=True)
    err.print(f"error: {exc}", markup=False, highlight=False)
    raise typer.Exit(getattr(exc, "exit_code", EXIT_ERROR))


def env(ctx: typer.Context) -> Env:
    root = ctx.find_root()
    obj = root.obj
    assert isinstance(obj, Env)
    return obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"migctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    db: Annotated[
        Path, typer.Option("--db", envvar="MIGCTL_DB", help="The SQLite store.", show_default=True)
    ] = Path("migctl.db"),
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="MIGCTL_CONFIG", help="migctl.toml (default: ./migctl.toml if present)."),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            envvar="MIGCTL_NOW",
            help="Act as if it were this instant: 2016-05-11 (midnight in the configured timezone) "
            "or 2016-05-11T09:30:00+02:00. For rehearsals and tests.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """migctl — announce a breaking change, remind administrators, enforce it on the date.

    Example: migctl --now 2016-04-20 status
    """
    ctx.obj = Env(
        db_path=db,
        config_path=config if config is not None else Path("migctl.toml"),
        config_explicit=config is not None,
        now_raw=now,
    )


# --------------------------------------------------------------------------- definitions


@app.command()
@handle_errors
def validate(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="migrations.yaml to check.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check migrations.yaml, the configuration and the templates; errors name file, line and field.

    Example: migctl validate --file migrations.yaml
    """
    e = env(ctx)
    problems = []
    defs = None
    try:
        e.config  # noqa: B018 - loading validates it
    except InputError as exc:
        problems.extend(exc.problems)
    try:
        defs = e.definitions(file)
    except InputError as exc:
        problems.extend(exc.problems)
    if defs is not None and not problems:
        from migrate_cli.templating import check_templates

        problems.extend(check_templates(e.config, defs))
    if json_out:
        emit_json({"valid": not problems, "problems": [p.__dict__ for p in problems],
                   "migrations": defs.ids if defs else []})
        if problems:
            raise typer.Exit(EXIT_ERROR)
        return
    if problems:
        raise InputError(problems, f"{len(problems)} problem(s) found")
    assert defs is not None
    emit_lines([f"ok: {defs.path}: {len(defs.migrations)} migration(s) ({', '.join(defs.ids)}); "
                "configuration and templates are valid"])


@app.command()
@handle_errors
def sync(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="migrations.yaml to load.")] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Load migrations.yaml into the store (idempotent; changes go to the audit log).

    Example: migctl sync --file migrations.yaml
    """
    from migrate_cli.locking import store_lock
    from migrate_cli.sync import sync as do_sync

    e = env(ctx)
    defs = e.definitions(file)
    with store_lock(e.db_path):
        report = do_sync(e.store(), defs, now=e.now_in(defs.timezone), actor=actor or default_actor())
    if json_out:
        emit_json(report.to_json())
        return
    if report.nothing_changed:
        emit_lines([f"nothing changed: {len(report.unchanged)} migration(s) already up to date"])
        return
    lines = [f"added {mid}" for mid in report.added]
    lines += [f"changed {mid}: {', '.join(fields)}" for mid, fields in report.changed.items()]
    lines += [f"rescheduled {mid}" for mid in report.rescheduled]
    lines += [f"revived {mid}" for mid in report.revived]
    lines += [f"retired {mid} (history kept)" for mid in report.retired]
    emit_lines(lines)


# --------------------------------------------------------------------------- accounts


@accounts_app.command("import")
@handle_errors
def accounts_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV or JSON Lines (.jsonl) file of accounts.")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the file name).")
    ] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add and update accounts from a file; all-or-nothing, bad rows listed with line numbers.

    Columns: id,name,plan,tags,created_at,status,admins (tags and admins separated by ';').
    Example: migctl accounts import examples/accounts.csv
    """
    from migrate_cli.accounts import import_accounts
    from migrate_cli.locking import store_lock

    e = env(ctx)
    if fmt is not None and fmt not in ("csv", "jsonl"):
        raise InputError([], f"--format must be csv or jsonl, not {fmt!r}")
    with store_lock(e.db_path):
        store = e.store()
        report = import_accounts(store, file, now=e.now(store), actor=actor or default_actor(), fmt=fmt)
    if json_out:
        emit_json(report.to_json())
        return
    emit_lines([
        f"imported {report.rows} account(s) from {file}: {report.added} added, "
        f"{report.updated} updated, {report.unchanged} unchanged"
        + (f", {report.closed} closed" if report.closed else "")
    ])
    if report.without_admins:
        console(stderr=True).print(
            f"warning: {report.without_admins} active account(s) have no administrator and "
            "cannot be notified (see `migctl status`)", markup=False)


@accounts_app.command("add")
@handle_errors
def accounts_add(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account id.")],
    plan: Annotated[str, typer.Option("--plan", help="Plan name.")],
    admin: Annotated[list[str], typer.Option("--admin", help="Administrator email (repeatable).")],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    created_at: Annotated[
        str | None, typer.Option("--created-at", help="Creation date/instant (default: now).")
    ] = None,
    status: Annotated[str, typer.Option("--status", help="active or closed.")] = "active",
    actor: ActorOpt = None,
) -> None:
    """Add or update one account.

    Example: migctl accounts add acme-dev --plan developer --admin ops@acme.test
    """
    from migrate_cli.accounts import add_account
    from migrate_cli.accounts_io import validate_row
    from migrate_cli.catalog import store_timezone
    from migrate_cli.locking import store_lock
    from migrate_cli.timeutil import iso

    e = env(ctx)
    with store_lock(e.db_path):
        store = e.store()
        now = e.now(store)
        row, problems = validate_row(
            {"id": account_id, "name": name, "plan": plan, "tags": tag or [],
             "created_at": created_at or iso(now), "status": status, "admins": admin},
            0, "command line", store_timezone(store),
        )
        if row is None:
            raise InputError(problems, "invalid account")
        result = add_account(store, row, now=now, actor=actor or default_actor())
    emit_lines([f"{result} {account_id}"])


@accounts_app.command("list")
@handle_errors
def accounts_list(
    ctx: typer.Context,
    plan: Annotated[str | None, typer.Option("--plan", help="Only this plan.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active or closed.")] = None,
    admin: Annotated[str | None, typer.Option("--admin", help="Only accounts this email administers.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """List accounts (sorted by id, paged).

    Example: migctl accounts list --plan enterprise --limit 20
    """
    from migrate_cli.accounts import count_accounts, list_accounts

    store = env(ctx).store()
    rows = list_accounts(store, plan=plan, status=status, admin=admin, limit=limit, offset=offset)
    if json_out:
        emit_json({"accounts": rows, "counts": count_accounts(store)})
        return
    emit_table(
        "Accounts",
        ["Id", "Name", "Plan", "Status", "Created", "Admins"],
        [[r["id"], r["name"], r["plan"], r["status"], r["created_at"][:10], ";".join(r["admins"])] for r in rows],
    )


@accounts_app.command("show")
@handle_errors
def accounts_show(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account id.")],
    json_out: JsonOpt = False,
) -> None:
    """One account: its administrators and its state in every migration.

    Example: migctl accounts show acme-prod
    """
    from migrate_cli.accounts import get_account
    from migrate_cli.catalog import load_catalog, store_timezone
    from migrate_cli.enrollment import account_enrollments

    store = env(ctx).store()
    account = get_account(store, account_id)
    account["enrollments"] = account_enrollments(store, load_catalog(store), store_timezone(store), account_id)
    if json_out:
        emit_json(account)
        return
    emit_lines([
        f"account {account['id']} ({account['name']}) plan={account['plan']} status={account['status']} "
        f"created={account['created_at']}",
        f"administrators: {', '.join(account['admins']) or '(none)'}",
        f"tags: {', '.join(account['tags']) or '(none)'}",
    ])
    emit_table("Enrollments", ["Migration", "State", "Changed", "Actor"],
               [[x["migration"], x["state"], x["changed_at"], x["actor"]] for x in account["enrollments"]])


# --------------------------------------------------------------------------- enrollments


def _read_ids(from_file: Path | None) -> list[str]:
    if from_file is None:
        return []
    ids = []
    with (sys.stdin if str(from_file) == "-" else from_file.open(encoding="utf-8-sig")) as handle:
        for n, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if n == 1 and text.lower() in ("id", "account", "account_id"):
                continue  # a CSV header
            ids.append(text.split(",")[0].strip())
    return ids


def _switch(ctx: typer.Context, migration: str, account: list[str] | None, from_file: Path | None,
            actor: str | None, reason: str | None, json_out: bool, opt_in: bool) -> None:
    from migrate_cli.catalog import get_migration, store_timezone
    from migrate_cli.enrollment import switch
    from migrate_cli.locking import store_lock

    e = env(ctx)
    ids = list(account or [])
    try:
        ids += _read_ids(from_file)
    except UnicodeDecodeError:
        raise InputError([], f"{from_file}: not valid UTF-8") from None
    with store_lock(e.db_path):
        store = e.store()
        sm = get_migration(store, migration)
        report = switch(store, sm, store_timezone(store), ids, opt_in=opt_in, now=e.now(store),
                        actor=actor or default_actor(), reason=reason)
    if json_out:
        emit_json({"migration": migration, "action": "opt-in" if opt_in else "opt-out", **report.to_json()})
        return
    verb = "opted in" if opt_in else "opted out"
    emit_lines([f"{migration}: {verb} {len(report.changed)} account(s); "
                f"{len(report.already)} already {'enrolled' if opt_in else 'not opted in'}"])


AccountOpt = Annotated[list[str] | None, typer.Option("--account", "-a", help="Account id (repeatable).")]
FromFileOpt = Annotated[
    Path | None, typer.Option("--from-file", help="File with one account id per line ('-' = stdin).")
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")]


@app.command("opt-in")
@handle_errors
def opt_in(
    ctx: typer.Context,
    migration: Annotated[str, typer.Argument(help="Migration id.")],
    account: AccountOpt = None,
    from_file: FromFileOpt = None,
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Switch accounts to the new behaviour early (only during the grace period).

    Example: migctl opt-in email-delivery-changes --account acme-prod --reason "moved to SES"
    """
    _switch(ctx, migration, account, from_file, actor, reason, json_out, opt_in=True)


@app.command("opt-out")
@handle_errors
def opt_out(
    ctx: typer.Context,
    migration: Annotated[str, typer.Argument(help="Migration id.")],
    account: AccountOpt = None,
    from_file: FromFileOpt = None,
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Undo an early opt-in (only during the grace period; new accounts stay enrolled).

    Example: migctl opt-out email-delivery-changes --account acme-prod --reason "rollback"
    """
    _switch(ctx, migration, account, from_file, actor, reason, json_out, opt_in=False)


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
    from migrate_cli.status import status_report

    e = env(ctx)
    store = e.store()
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
            mandatory = ", ".join(f"{k}:{v}" for k, v in mandatory.items())
        rows.append([
            m["id"], m["severity"], m["phase"], m["grace_period_start"], mandatory or "TBD",
            m["days_left"] if m["days_left"] is not None else "-",
            a["pending"], a["opted_in"], a["auto_enrolled"], a["enforced"],
            progress_bar(m["migrated_share"]) if is_terminal() else
            (f"{m['migrated_share']:.0%}" if m["migrated_share"] is not None else "-"),
            m["admins_pending"],
        ])
    emit_table(
        f"Migrations at {report['now']} ({report['timezone']})",
        ["Migration", "Severity", "Phase", "Grace start", "Mandatory", "Days left", "Pending",
         "Opted in", "Auto", "Enforced", "Migrated", "Admins pending"],
        rows,
    )
    if migration is not None:
        m = report["migrations"][0]
        lines = [f"title: {m['title']}", f"total accounts in audience: {m['accounts']['total']}"]
        if m.get("applies_to"):
            lines.append(f"applies to: {m['applies_to']}")
        for p in m.get("plans", []):
            lines.append(f"plan {p['plan']}: {p['phase']}, mandatory {p['mandatory_opt_in'] or 'TBD'}, "
                         f"days left {p['days_left'] if p['days_left'] is not None else '-'}")
        emit_lines(lines)


@app.command("audit")
@handle_errors
def audit_cmd(
    ctx: typer.Context,
    migration: Annotated[str | None, typer.Option("--migration", "-m", help="Only this migration.")] = None,
    account: Annotated[str | None, typer.Option("--account", "-a", help="Only this account.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only actions starting with this.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest first).")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """The audit log: every change to definitions, accounts and enrollments.

    Example: migctl audit --migration email-delivery-changes --account acme-prod
    """
    from migrate_cli.audit_log import list_events

    events = list_events(env(ctx).store(), migration_id=migration, account_id=account,
                         action=action, limit=limit)
    if json_out:
        emit_json({"events": events})
        return
    emit_table("Audit log", ["Id", "At", "Actor", "Action", "Migration", "Account", "Detail"],
               [[ev["id"], ev["at"], ev["actor"], ev["action"], ev["migration_id"], ev["account_id"],
                 _short(ev["detail"])] for ev in events])


def _short(detail: Any) -> str:
    if not detail:
        return ""
    import json

    text = json.dumps(detail, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def main() -> None:
    """Console-script entry point."""
    app()
