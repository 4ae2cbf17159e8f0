"""What every command shares: the Typer apps, global options, error mapping, stop and progress."""

from __future__ import annotations

import functools
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
from migrate_cli.cli.context import Env
from migrate_cli.cli.output import (
    console,
    is_terminal,
    stderr_is_terminal,
)
from migrate_cli.errors import (
    EXIT_ERROR,
    MigctlError,
    StoreError,
)
from migrate_cli.progress import NO_PROGRESS, Progress

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
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the audit log).")]
# A folder is refused while parsing (exit 2); the file itself is written by files.open_private.
OutFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", dir_okay=False, readable=False, help="Write to this file (default: stdout)."
    ),
]
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
    message = f"error: {exc}"
    if stderr_is_terminal():
        message = f"\x1b[31m{message}\x1b[0m"  # red, for a person at a terminal only
    sys.stderr.write(message + "\n")
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


class _Bar(Progress):
    """Progress as one Rich bar on stderr: the phase as its label, the real total or a count.

    The bar appears at the first phase, so a question asked before (enforce's confirmation)
    is not drawn over."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None

    def phase(self, label: str, total: int | None = None) -> None:
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)
            return
        self.bar.reset(self.task, description=label, total=total, completed=0)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def progress_reporter(total: int | None = None, label: str = "") -> Iterator[Progress]:
    """A Rich progress bar on a terminal; with no terminal nothing at all (cron logs get the
    summary lines later, never an animation)."""
    if not is_terminal():
        yield NO_PROGRESS
        return
    bar = _Bar()
    if label:
        bar.phase(label, total)
    try:
        yield bar
    finally:
        bar.close()
