"""Commands for accounts and enrollments: accounts import/add/list/export/show, opt-in, opt-out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from migrate_cli.cli.common import (
    ActorOpt,
    JsonOpt,
    OutFileOpt,
    ReasonOpt,
    accounts_app,
    app,
    env,
    handle_errors,
    progress_reporter,
)
from migrate_cli.cli.context import default_actor
from migrate_cli.cli.output import (
    console,
    emit_json,
    emit_lines,
    emit_table,
)
from migrate_cli.errors import (
    InputError,
    UsageError,
)
from migrate_cli.vocabulary import Enrollment

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
        store = e.store(create=True)
        with progress_reporter() as progress:
            report = import_accounts(
                store,
                file,
                now=e.now(store),
                actor=actor or default_actor(),
                fmt=fmt,
                progress=progress,
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
    from migrate_cli.accounts.records import AccountChanges, add_account
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    changes = AccountChanges(
        name=name, plan=plan, tags=tag, created_at=created_at, status=status, admins=admin or ()
    )
    with store_lock(e.db_path, command="accounts add"):
        store = e.store()
        result = add_account(
            store, account_id, changes, now=e.now(store), actor=actor or default_actor()
        )
    emit_lines([f"{result} {account_id}"])


@accounts_app.command("list")
@handle_errors
def accounts_list(
    ctx: typer.Context,
    migration: Annotated[
        str | None,
        typer.Option("--migration", "-m", help="With each account's state in this migration."),
    ] = None,
    state: Annotated[
        Enrollment | None,
        typer.Option("--state", help="Only accounts in this state (needs --migration)."),
    ] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="Only this plan.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active or closed.")] = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="Only accounts this email administers.")
    ] = None,
    no_admin: Annotated[
        bool, typer.Option("--no-admin", help="Only active accounts with no administrator.")
    ] = False,
    unreachable: Annotated[
        bool,
        typer.Option(
            "--unreachable", help="Only active accounts whose administrators are all suppressed."
        ),
    ] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="table (paged by --limit), csv or jsonl (every match, streamed)."
        ),
    ] = "table",
    out: OutFileOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many (table: 100).")
    ] = None,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """List accounts (sorted by id); e.g. the pending accounts of a migration for account managers.

    Example: migctl accounts list --migration email-delivery-changes --state pending --format csv --out pending.csv
    """
    from migrate_cli.accounts.records import (
        AccountFilter,
        count_accounts,
        iter_accounts,
        write_accounts,
    )
    from migrate_cli.files import open_private
    from migrate_cli.store.stored_migrations import get_migration

    if fmt not in ("table", "csv", "jsonl"):
        raise UsageError(f"--format must be table, csv or jsonl, not {fmt!r}")
    if state is not None and migration is None:
        raise UsageError("--state needs --migration (a state is always in one migration)")
    store = env(ctx).store(create=False)
    which = AccountFilter(
        migration=get_migration(store, migration) if migration else None,
        state=state,
        plan=plan,
        status=status,
        admin=admin,
        no_admin=no_admin,
        unreachable=unreachable,
    )
    if json_out or fmt == "table":
        limit = limit or 100
    rows = iter_accounts(store, which, limit=limit, offset=offset)
    if json_out:
        emit_json({"accounts": list(rows), "counts": count_accounts(store)})
        return
    if fmt != "table":
        if out is None:
            write_accounts(rows, sys.stdout, fmt, states=migration is not None)
            return
        with open_private(out, newline="") as handle:  # it holds administrators' addresses
            count = write_accounts(rows, handle, fmt, states=migration is not None)
        sys.stderr.write(f"wrote {count} account(s) to {out}\n")
        return
    columns = ["Id", "Name", "Plan", "Status", "Created", "Admins"]
    if migration is not None:
        columns += ["State", "Mandatory"]
    emit_table(
        "Accounts" + (f" in {migration}" if migration else ""),
        columns,
        [
            [
                r["id"],
                r["name"],
                r["plan"],
                r["status"],
                r["created_at"][:10],
                ";".join(r["admins"]),
                *([r["state"], r["deadline"] or "TBD"] if migration is not None else []),
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
    out: OutFileOpt = None,
) -> None:
    """Every account with its administrators, in the import format.

    CSV cells that a spreadsheet would run as formulas (=, +, -, @) get a leading apostrophe;
    JSON Lines keeps values exactly and can be imported again unchanged.
    Example: migctl accounts export --format jsonl --out accounts.jsonl
    """
    from migrate_cli.accounts.records import export_accounts
    from migrate_cli.files import open_private

    if fmt not in ("csv", "jsonl"):
        raise UsageError(f"--format must be csv or jsonl, not {fmt!r}")
    store = env(ctx).store(create=False)
    if out is None:
        export_accounts(store, sys.stdout, fmt)  # stdout: no bar mixed into the terminal output
        return
    with (
        open_private(out, newline="") as handle,  # it holds administrators' addresses
        progress_reporter() as progress,
    ):
        count = export_accounts(store, handle, fmt, progress)
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
        ["Migration", "State", "Changed", "Actor", "Extended until"],
        [
            [
                x["migration"],
                x["state"],
                x["changed_at"],
                x["actor"],
                x["extension"]["until"] if x["extension"] else None,
            ]
            for x in account["enrollments"]
        ],
    )


# --------------------------------------------------------------------------- enrollments


def _read_ids(from_file: Path | None) -> list[str]:
    from migrate_cli.accounts.reading import read_account_ids

    if from_file is None:
        return []
    if str(from_file) == "-":
        return read_account_ids(sys.stdin)
    with from_file.open(encoding="utf-8-sig") as handle:
        return read_account_ids(handle)


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
    from migrate_cli.lifecycle.opting import switch
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import get_migration, store_timezone

    if not account and from_file is None:
        raise UsageError("give the accounts: --account ID (repeatable) or --from-file FILE")
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


@app.command("extend")
@handle_errors
def extend_cmd(
    ctx: typer.Context,
    migration: Annotated[str, typer.Argument(help="Migration id.")],
    account: Annotated[str, typer.Option("--account", "-a", help="Account id.")],
    until: Annotated[
        str, typer.Option("--until", help="The account's own date (YYYY-MM-DD), later.")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
    actor: ActorOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give one pending account a later mandatory date of its own (rule 3b).

    Example: migctl extend email-delivery-changes --account acme-prod --until 2016-07-01 --reason "SES move in June"
    """
    from migrate_cli.lifecycle.extensions import extend
    from migrate_cli.store.lock import store_lock
    from migrate_cli.store.stored_migrations import get_migration, store_timezone
    from migrate_cli.timeutil import parse_date

    try:
        day = parse_date(until)
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None
    e = env(ctx)
    with store_lock(e.db_path, command="extend"):
        store = e.store(create=False)
        done = extend(
            store,
            get_migration(store, migration),
            store_timezone(store),
            account,
            until=day,
            reason=reason,
            now=e.now(store),
            actor=actor or default_actor(),
        )
    if json_out:
        emit_json(done.to_json())
        return
    emit_lines(
        [
            f"{migration}: {account} extended from {done.previous.isoformat()} "
            f"until {done.until.isoformat()}"
        ]
    )
