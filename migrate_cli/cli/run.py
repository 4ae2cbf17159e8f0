"""The cron entry point and its rehearsal: run, plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from migrate_cli.cli.common import (
    ActorOpt,
    JsonOpt,
    app,
    env,
    graceful_stop,
    handle_errors,
    progress_reporter,
)
from migrate_cli.cli.context import default_actor
from migrate_cli.cli.notices import notices_lines
from migrate_cli.cli.output import (
    emit_json,
    emit_lines,
    emit_table,
)
from migrate_cli.cli.status import held_line

if TYPE_CHECKING:
    from migrate_cli.config import Config

from migrate_cli.errors import (
    EXIT_PARTIAL,
    InputError,
    UsageError,
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
    from migrate_cli.errors import SendingStoppedError
    from migrate_cli.notices.run import RunSummary
    from migrate_cli.notices.run import run as do_run
    from migrate_cli.store.lock import store_lock

    e = env(ctx)
    summary: RunSummary | None = None
    with store_lock(e.db_path, command="run"), graceful_stop() as stop:
        store = e.store(create=True)
        with progress_reporter() as progress:  # run names its phases and real totals
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
            except (ProviderConfigError, SendingStoppedError) as exc:
                partial = getattr(exc, "run_summary", None)
                doc = partial.to_json() if partial else {"dry_run": dry_run}
                doc = {**doc, "error": str(exc)}
                if json_out:  # enforcement and the sends before the stop still count
                    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
                _alert(e.config, doc)
                raise
    doc = summary.to_json()
    _alert(e.config, doc)
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
                    else ", ".join(
                        f"{k.replace('_', ' ')} {', '.join(v) if isinstance(v, list) else v}"
                        for k, v in summary.synced.to_json().items()
                        if v and k not in ("unchanged", "changed_anything")
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
        lines += [f"held: {held_line(h['migration'], h)}" for h in doc["held"]]
        if summary.platform is not None:
            p = summary.platform
            lines.append(
                f"platform: delivered {p.delivered} event(s), {p.pending} pending"
                + (f" (last error: {p.error})" if p.error else "")
                + ("; notices wait until the platform has every change" if p.partial else "")
            )
        lines += notices_lines(doc)
        emit_lines(lines)
    if summary.partial:
        raise typer.Exit(EXIT_PARTIAL)


def _alert(config: Config, doc: dict[str, Any]) -> None:
    from migrate_cli.notices.alerts import alert_after_run

    warning = alert_after_run(config, doc)
    if warning:  # a warning only: the run's exit code does not change
        sys.stderr.write(f"warning: {warning}\n")


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
    from migrate_cli.store.stored_migrations import load_catalog
    from migrate_cli.timeutil import iso, parse_date

    e = env(ctx)
    try:
        last = parse_date(until)
    except ValueError as exc:
        raise UsageError(f"--until: {exc}") from None
    store = e.store(create=False)
    now = e.now(store)
    try:
        days = simulate(store, now, last, progress=progress_reporter)
    except ValueError as exc:
        raise InputError([], str(exc)) from None
    # The rehearsal already enforces held dates on their effective day; say why.
    held = [(sm.id, h) for sm in load_catalog(store) for h in sm.active_holds(now)]
    if json_out:
        emit_json(
            {
                "now": iso(now),
                "until": last.isoformat(),
                "days": [d.to_json() for d in days if all_days or not d.empty],
                "held": [{"migration": mid, **h.to_json()} for mid, h in held],
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
    emit_lines([f"held: {held_line(mid, h.to_json())}" for mid, h in held])
