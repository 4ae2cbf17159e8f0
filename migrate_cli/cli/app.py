"""The migctl command line: parse options, call one library function, render, map errors."""

from __future__ import annotations

import functools
import json
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from migrate_cli import __version__
from migrate_cli.cli.context import Env, default_actor
from migrate_cli.cli.output import (
    console,
    emit_json,
    emit_lines,
    emit_table,
    is_terminal,
    progress_bar,
)
from migrate_cli.errors import (
    EXIT_ERROR,
    EXIT_PARTIAL,
    InputError,
    MigctlError,
    StoreError,
    UsageError,
)

app = typer.Typer(
    name="migctl",
    help="Run breaking-change migrations across customer accounts: announce, remind, enforce.\n\n"
    "Example: migctl --now 2016-04-20 status",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
accounts_app = typer.Typer(
    help="Customer accounts and their administrators.\n\nExample: migctl accounts import accounts.csv",
    no_args_is_help=True,
)
app.add_typer(
    accounts_app,
    name="accounts",
    help="Customer accounts and their administrators.\n\nExample: migctl accounts import accounts.csv",
)

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
            if env(ctx).config_explicit and fn.__name__ != "validate":  # validate lists all
                env(ctx).config  # noqa: B018 - a --config given by name must exist and be valid
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
    # Plain write: a console would hard-wrap long lines, which splits messages in cron logs.
    sys.stderr.write(f"error: {exc}\n")
    sys.stderr.flush()
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
        typer.Option(
            "--config",
            envvar="MIGCTL_CONFIG",
            help="migctl.toml (default: ./migctl.toml if present).",
        ),
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
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="migrations.yaml to check.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check migrations.yaml, the configuration and the templates; errors name file, line and field.

    Example: migctl validate --file migrations.yaml
    """
    from migrate_cli.definitions.model import load_definitions

    e = env(ctx)
    problems = []
    defs = None
    config_ok = True
    try:
        e.config  # noqa: B018 - loading validates it
    except InputError as exc:
        problems.extend(exc.problems)
        config_ok = False
    try:
        # With a broken config, still check the definitions at their default place.
        defs = (
            e.definitions(file) if config_ok else load_definitions(file or Path("migrations.yaml"))
        )
    except InputError as exc:
        problems.extend(exc.problems)
    if defs is not None and not problems:
        from migrate_cli.notices.templates import check_templates

        problems.extend(check_templates(e.config, defs))
    if json_out:
        emit_json(
            {
                "valid": not problems,
                "problems": [p.__dict__ for p in problems],
                "migrations": defs.ids if defs else [],
            }
        )
        if problems:
            raise typer.Exit(EXIT_ERROR)
        return
    if problems:
        raise InputError(problems, f"{len(problems)} problem(s) found")
    assert defs is not None
    emit_lines(
        [
            f"ok: {defs.path}: {len(defs.migrations)} migration(s) ({', '.join(defs.ids)}); "
            "configuration and templates are valid"
        ]
    )


@app.command()
@handle_errors
def sync(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="migrations.yaml to load.")
    ] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Load migrations.yaml into the store (idempotent; changes go to the audit log).

    Example: migctl sync --file migrations.yaml
    """
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.sync import sync as do_sync

    e = env(ctx)
    defs = e.definitions(file)
    with store_lock(e.db_path, command="sync"):
        report = do_sync(
            e.store(), defs, now=e.now_in(defs.timezone), actor=actor or default_actor()
        )
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
    from migrate_cli.accounts.records import import_accounts
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    if fmt is not None and fmt not in ("csv", "jsonl"):
        raise UsageError(f"--format must be csv or jsonl, not {fmt!r}")
    with store_lock(e.db_path, command="accounts import"):
        store = e.store()
        report = import_accounts(
            store, file, now=e.now(store), actor=actor or default_actor(), fmt=fmt
        )
    if json_out:
        emit_json(report.to_json())
        return
    emit_lines(
        [
            f"imported {report.rows} account(s) from {file}: {report.added} added, "
            f"{report.updated} updated, {report.unchanged} unchanged"
            + (f", {report.closed} closed" if report.closed else "")
        ]
    )
    if report.without_admins:
        console(stderr=True).print(
            f"warning: {report.without_admins} active account(s) have no administrator and "
            "cannot be notified (see `migctl status`)",
            markup=False,
        )


@accounts_app.command("add")
@handle_errors
def accounts_add(
    ctx: typer.Context,
    account_id: Annotated[str, typer.Argument(help="Account id.")],
    plan: Annotated[
        str | None, typer.Option("--plan", help="Plan name (required for a new account).")
    ] = None,
    admin: Annotated[
        list[str] | None,
        typer.Option("--admin", help="Administrator email (repeatable; replaces the list)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag (repeatable; replaces the tags).")
    ] = None,
    created_at: Annotated[
        str | None, typer.Option("--created-at", help="Creation date/instant (default: now).")
    ] = None,
    status: Annotated[str | None, typer.Option("--status", help="active or closed.")] = None,
    actor: ActorOpt = None,
) -> None:
    """Add one account, or update the fields given for an existing one (others are kept).

    Example: migctl accounts add acme-dev --plan developer --admin ops@acme.test
    """
    from migrate_cli.accounts.reading import validate_row
    from migrate_cli.accounts.records import add_account, get_account
    from migrate_cli.errors import NotFoundError
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import store_timezone
    from migrate_cli.timeutil import iso

    e = env(ctx)
    with store_lock(e.db_path, command="accounts add"):
        store = e.store()
        now = e.now(store)
        try:
            current: dict[str, Any] = get_account(store, account_id)
        except NotFoundError:
            current = {
                "name": None,
                "plan": None,
                "tags": [],
                "created_at": iso(now),
                "status": "active",
                "admins": [],
            }
            if plan is None or not admin:
                raise InputError(
                    [], f"{account_id} is a new account: give --plan and at least one --admin"
                ) from None
        row, problems = validate_row(
            {
                "id": account_id,
                "name": name if name is not None else current["name"],
                "plan": plan if plan is not None else current["plan"],
                "tags": tag if tag is not None else current["tags"],
                # Stored instants are UTC with a Z suffix, which parse_instant reads back exactly.
                "created_at": created_at or current["created_at"],
                "status": status or current["status"],
                "admins": admin if admin else current["admins"],
            },
            0,
            "command line",
            store_timezone(store),
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
    admin: Annotated[
        str | None, typer.Option("--admin", help="Only accounts this email administers.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """List accounts (sorted by id, paged).

    Example: migctl accounts list --plan enterprise --limit 20
    """
    from migrate_cli.accounts.records import count_accounts, list_accounts

    store = env(ctx).store(create=False)
    rows = list_accounts(store, plan=plan, status=status, admin=admin, limit=limit, offset=offset)
    if json_out:
        emit_json({"accounts": rows, "counts": count_accounts(store)})
        return
    emit_table(
        "Accounts",
        ["Id", "Name", "Plan", "Status", "Created", "Admins"],
        [
            [
                r["id"],
                r["name"],
                r["plan"],
                r["status"],
                r["created_at"][:10],
                ";".join(r["admins"]),
            ]
            for r in rows
        ],
    )


@accounts_app.command("export")
@handle_errors
def accounts_export(
    ctx: typer.Context,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (round-trips) or csv (spreadsheet-safe).")
    ] = "jsonl",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Every account with its administrators, in the import format.

    CSV cells that a spreadsheet would run as formulas (=, +, -, @) get a leading apostrophe;
    JSON Lines keeps values exactly and can be imported again unchanged.
    Example: migctl accounts export --format jsonl --out accounts.jsonl
    """
    import os
    import tempfile

    from migrate_cli.accounts.records import export_accounts

    if fmt not in ("csv", "jsonl"):
        raise UsageError(f"--format must be csv or jsonl, not {fmt!r}")
    store = env(ctx).store(create=False)
    if out is None:
        export_accounts(store, sys.stdout, fmt)
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".accounts-", dir=out.parent)  # 0600: it holds emails
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            count = export_accounts(store, handle, fmt)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sys.stderr.write(f"wrote {count} account(s) to {out}\n")


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
    from migrate_cli.accounts.records import get_account
    from migrate_cli.lifecycle.enrollment import account_enrollments
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    store = env(ctx).store(create=False)
    account = get_account(store, account_id)
    account["enrollments"] = account_enrollments(
        store, load_catalog(store), store_timezone(store), account_id
    )
    if json_out:
        emit_json(account)
        return
    emit_lines(
        [
            f"account {account['id']} ({account['name']}) plan={account['plan']} status={account['status']} "
            f"created={account['created_at']}",
            f"administrators: {', '.join(account['admins']) or '(none)'}",
            f"tags: {', '.join(account['tags']) or '(none)'}",
        ]
    )
    emit_table(
        "Enrollments",
        ["Migration", "State", "Changed", "Actor"],
        [[x["migration"], x["state"], x["changed_at"], x["actor"]] for x in account["enrollments"]],
    )


# --------------------------------------------------------------------------- enrollments


def _read_ids(from_file: Path | None) -> list[str]:
    if from_file is None:
        return []
    ids = []
    with sys.stdin if str(from_file) == "-" else from_file.open(encoding="utf-8-sig") as handle:
        for n, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if n == 1 and text.lower() in ("id", "account", "account_id"):
                continue  # a CSV header
            ids.append(text.split(",")[0].strip())
    return ids


def _switch(
    ctx: typer.Context,
    migration: str,
    account: list[str] | None,
    from_file: Path | None,
    actor: str | None,
    reason: str | None,
    json_out: bool,
    opt_in: bool,
) -> None:
    from migrate_cli.lifecycle.enrollment import switch
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import get_migration, store_timezone

    e = env(ctx)
    ids = list(account or [])
    try:
        ids += _read_ids(from_file)
    except UnicodeDecodeError:
        raise InputError([], f"{from_file}: not valid UTF-8") from None
    with store_lock(e.db_path, command="opt-in/opt-out"):
        store = e.store()
        sm = get_migration(store, migration)
        report = switch(
            store,
            sm,
            store_timezone(store),
            ids,
            opt_in=opt_in,
            now=e.now(store),
            actor=actor or default_actor(),
            reason=reason,
        )
    if json_out:
        emit_json(
            {
                "migration": migration,
                "action": "opt-in" if opt_in else "opt-out",
                **report.to_json(),
            }
        )
        return
    verb = "opted in" if opt_in else "opted out"
    emit_lines(
        [
            f"{migration}: {verb} {len(report.changed)} account(s); "
            f"{len(report.already)} already {'enrolled' if opt_in else 'not opted in'}"
        ]
    )


AccountOpt = Annotated[
    list[str] | None, typer.Option("--account", "-a", help="Account id (repeatable).")
]
FromFileOpt = Annotated[
    Path | None,
    typer.Option("--from-file", help="File with one account id per line ('-' = stdin)."),
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
            mandatory = ", ".join(f"{k}:{v}" for k, v in mandatory.items())
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
    if report["accounts_all_admins_suppressed"]:
        warnings.append(
            f"{report['accounts_all_admins_suppressed']} active account(s) have every administrator "
            "suppressed: nobody is being told about them (`migctl suppress list`)"
        )
    if report["accounts_without_admins"]:
        warnings.append(
            f"{report['accounts_without_admins']} active account(s) have no administrator"
        )
    emit_lines([f"warning: {w}" for w in warnings])
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

    events = list_events(
        env(ctx).store(create=False),
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


def _short(detail: Any) -> str:
    if not detail:
        return ""
    text = json.dumps(detail, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


# --------------------------------------------------------------------------- notices


dashboard_app = typer.Typer(
    help="Dashboard notices for the platform's banner.", no_args_is_help=True
)
outbox_app = typer.Typer(help="Inspect and settle the outbox of notices.", no_args_is_help=True)
suppress_app = typer.Typer(help="Addresses that must not receive notices.", no_args_is_help=True)
app.add_typer(
    dashboard_app,
    name="dashboard",
    help="Dashboard notices for the platform's banner.\n\nExample: migctl dashboard export --out dashboard.json",
)
app.add_typer(
    outbox_app,
    name="outbox",
    help="Inspect and settle the outbox of notices.\n\nExample: migctl outbox list --state in_doubt",
)
app.add_typer(
    suppress_app,
    name="suppress",
    help="Addresses that must not receive notices.\n\nExample: migctl suppress add gone@example.com",
)


@contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    """SIGTERM/SIGINT finish the send in flight, record it and stop (no half-recorded send)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def progress_reporter(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on a terminal for long runs; nothing (summary lines later) otherwise."""
    if not is_terminal() or total < 50:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _notices_lines(doc: dict[str, Any]) -> list[str]:
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
    return [line]


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
        str, typer.Option("--kind", help="With --test-to: the kind of notice.")
    ] = "reminder",
    json_out: JsonOpt = False,
) -> None:
    """Plan the notices due now, queue them in the outbox and send them.

    Example: migctl --now 2016-04-20 notify --dry-run
    """
    from migrate_cli.delivery.base import ProviderConfigError
    from migrate_cli.notices.notify import notify as do_notify
    from migrate_cli.notices.notify import pending_count, plan_only
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
        emit_lines(["dry run: nothing was written or sent", *_notices_lines(summary.to_json())])
        return
    with store_lock(e.db_path, command="notify"), graceful_stop() as stop:
        store = e.store()
        catalog = load_catalog(store)
        if migration:
            from migrate_cli.store.stored_migrations import get_migration

            get_migration(store, migration)
        now = e.now(store)
        with progress_reporter(pending_count(store, migration) + 1000, "sending") as progress:
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
            except ProviderConfigError as exc:
                if json_out:  # what was sent before the stop still counts
                    emit_json({**summary.to_json(), "error": str(exc)})
                raise
    doc = summary.to_json()
    if json_out:
        emit_json(doc)
    else:
        emit_lines(_notices_lines(doc))
        if stop.is_set():
            emit_lines(["stopped by a signal after recording the send in flight"])
    if summary.partial:
        raise typer.Exit(EXIT_PARTIAL)


def _send_test(e: Env, migration: str | None, to: str, kind: str, json_out: bool) -> None:
    from migrate_cli.accounts.reading import normalise_email
    from migrate_cli.delivery.registry import SendStatus
    from migrate_cli.notices.notify import make_renderer, provider_factory
    from migrate_cli.notices.preview import build_preview
    from migrate_cli.store.stored_migrations import get_migration, store_timezone

    if migration is None:
        raise UsageError("--test-to needs a MIGRATION argument")
    try:
        address = normalise_email(to)
    except ValueError as exc:
        raise InputError([], f"--test-to: {exc}") from None
    store = e.store(create=False)
    sm = get_migration(store, migration)
    factory, _ = provider_factory(e.config)
    preview = build_preview(
        store,
        sm,
        e.config,
        make_renderer(e.config),
        store_timezone(store),
        e.now(store),
        kind=kind,
        admin=None,
        test=True,
        to=address,
    )
    with factory() as provider:
        result = provider.send(preview.email)
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
    kind: Annotated[
        str, typer.Option("--kind", help="announcement, reminder, schedule_change or enforced.")
    ] = "reminder",
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
    header = f"To: {p.email.to}" + (" (sample data)" if p.sample else "")
    emit_lines([header, f"Subject: {p.rendered.subject}", "", p.rendered.text.rstrip("\n")])


@dashboard_app.command("export")
@handle_errors
def dashboard_export(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Per account, the active migrations it must act on, as JSON for the dashboard banner.

    Example: migctl dashboard export --out dashboard.json
    """
    import os
    import tempfile

    from migrate_cli.lifecycle.dashboard import write_export
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    e = env(ctx)
    store = e.store(create=False)
    catalog = load_catalog(store)
    tz = store_timezone(store)
    now = e.now(store)
    if out is None:
        write_export(sys.stdout, store, catalog, tz, now, e.config.dashboard_url)
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dashboard-", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            count = write_export(handle, store, catalog, tz, now, e.config.dashboard_url)
        os.replace(tmp, out)  # readers never see a half-written file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    console(stderr=True).print(f"wrote {count} account(s) to {out}", markup=False)


@outbox_app.command("list")
@handle_errors
def outbox_list(
    ctx: typer.Context,
    state: Annotated[
        str | None,
        typer.Option("--state", help="pending, sending, sent, failed, in_doubt, suppressed."),
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

    store = env(ctx).store(create=False)
    rows = list_rows(store, state=state, migration_id=migration, email=email, limit=limit)
    if json_out:
        emit_json({"counts": counts(store), "rows": rows})
        return
    emit_table(
        "Outbox",
        ["Id", "State", "Kind", "Migration", "Administrator", "Attempts", "Error"],
        [
            [
                r["id"],
                r["state"],
                r["kind"],
                r["migration_id"],
                r["email"],
                r["attempts"],
                r["last_error"] or "",
            ]
            for r in rows
        ],
    )
    c = counts(store)
    emit_lines([", ".join(f"{k} {v}" for k, v in c.items())])


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
        limit = e.config.max_accounts_without_confirm
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


@app.command("run")
@handle_errors
def run_cmd(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Rehearse on a copy of the store; write nothing.")
    ] = False,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="migrations.yaml (default from config).")
    ] = None,
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The cron entry point: sync when migrations.yaml changed, enforce, then send notices.

    Exit codes: 0 ok, 1 error, 3 some notices failed or are in doubt, 75 another run holds the lock.
    Example (crontab): */15 * * * * cd /srv/migctl && migctl run --json >> run.log
    """
    from migrate_cli.delivery.base import ProviderConfigError
    from migrate_cli.notices.run import RunSummary
    from migrate_cli.notices.run import run as do_run
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    summary: RunSummary | None = None
    with store_lock(e.db_path, command="run"), graceful_stop() as stop:
        store = e.store()
        with progress_reporter(0, "sending") as progress:
            try:
                summary = do_run(
                    store,
                    e.config,
                    e.now,
                    actor=actor or default_actor(),
                    dry_run=dry_run,
                    definitions_file=file,
                    stop=stop,
                    progress=progress,
                )
            except ProviderConfigError as exc:
                if json_out:  # enforcement and the sends before the stop still count
                    partial = getattr(exc, "run_summary", None)
                    doc = partial.to_json() if partial else {"dry_run": dry_run}
                    sys.stdout.write(
                        json.dumps({**doc, "error": str(exc)}, separators=(",", ":")) + "\n"
                    )
                raise
    doc = summary.to_json()
    if json_out:
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")  # one line for log files
    else:
        lines = [
            f"run at {doc['now']}" + (" (dry run: nothing written or sent)" if dry_run else "")
        ]
        if summary.synced is not None:
            lines.append(
                "synced migrations.yaml: "
                + (
                    "no change"
                    if summary.synced.nothing_changed
                    else json.dumps(
                        {
                            k: v
                            for k, v in summary.synced.to_json().items()
                            if v and k != "unchanged"
                        }
                    )
                )
            )
        lines.append(
            "enforced: "
            + (
                ", ".join(f"{k} {v} account(s)" for k, v in doc["enforced"].items())
                or "nothing due"
            )
        )
        lines += _notices_lines(doc)
        emit_lines(lines)
    if summary.partial:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("plan")
@handle_errors
def plan_cmd(
    ctx: typer.Context,
    until: Annotated[str, typer.Option("--until", help="Last day to simulate (YYYY-MM-DD).")],
    all_days: Annotated[
        bool, typer.Option("--all-days", help="Also list days when nothing happens.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Rehearse day by day what cron would do until a date (nobody else opts in); writes nothing.

    Example: migctl --now 2016-04-01 plan --until 2016-06-01
    """
    from migrate_cli.lifecycle.rehearsal import simulate
    from migrate_cli.timeutil import iso, parse_date

    e = env(ctx)
    try:
        last = parse_date(until)
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None
    store = e.store(create=False)
    try:
        days = simulate(store, e.now(store), last, from_addr=e.config.email.from_addr)
    except ValueError as exc:
        raise InputError([], str(exc)) from None
    if json_out:
        emit_json(
            {
                "now": iso(e.now(store)),
                "until": last.isoformat(),
                "days": [d.to_json() for d in days if all_days or not d.empty],
            }
        )
        return
    rows = []
    for d in days:
        if d.empty and not all_days:
            continue
        notices = "; ".join(
            f"{mid}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            for mid, kinds in d.notices.items()
        )
        enforced = "; ".join(f"{mid}: {n}" for mid, n in d.enforced.items())
        rows.append([d.day.isoformat(), notices or "-", enforced or "-"])
    emit_table(
        f"Rehearsal until {last.isoformat()} (nothing written)",
        ["Day", "Notices", "Enforced accounts"],
        rows,
    )


def main() -> None:
    """Console-script entry point."""
    app()
