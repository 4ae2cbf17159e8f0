"""Helpers for the enforcement, run, lock, crash and rehearsal tests.

Everything here drives the real CLI in a subprocess (``python -m migrate_cli`` or a small
wrapper script that swaps in a test provider) with the host timezone forced to
Pacific/Auckland, while the migrations are defined in America/New_York: a mandatory instant
must follow the configured timezone, never the host's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from migrate_cli.delivery.base import OutgoingEmail, Provider, SendResult, SendStatus

HOST_TZ = "Pacific/Auckland"
STORE_TZ = "America/New_York"
TESTS_DIR = Path(__file__).resolve().parent

NOTICES = """\
  notices:
    reminder_every: 14d
    escalate_before: [7d, 1d]
    min_gap: 1d
"""

# One migration per block; tests pick the ones they need.
MAIL = """\
  - id: mail
    title: Mail delivery change
    severity: medium
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    summary: The built-in mail provider becomes testing-only.
    description: Configure your own provider.
"""
TBD = """\
  - id: someday
    title: Someday change
    severity: low
    grace_period_start: 2016-03-22
    mandatory_opt_in: TBD
    summary: A change without a date yet.
    description: Nothing to do yet.
"""
PER_PLAN = """\
  - id: perplan
    title: Per plan change
    severity: high
    grace_period_start: 2016-04-01
    mandatory_opt_in: {free: 2016-05-01, enterprise: 2016-06-01}
    summary: Free plans first, enterprise later.
    description: Dates differ per plan.
"""
HOTFIX = """\
  - id: hotfix
    title: Security hotfix
    severity: critical
    grace_period_start: 2016-06-10
    grace_period: 0d
    summary: A vulnerability fix switched on at once.
    description: No grace period.
"""

# created_at dates are read in the store's timezone (America/New_York).
ACCOUNTS_CSV = """\
id,name,plan,tags,created_at,status,admins
ent-1,Ent One,enterprise,,2015-01-01,active,a@x.test;shared@x.test
ent-2,Ent Two,enterprise,,2015-01-02,active,b@x.test
free-1,Free One,free,,2015-02-01,active,c@x.test;shared@x.test
free-2,Free Two,free,,2015-02-02,active,d@x.test
dev-1,Dev One,developer,,2015-03-01,active,e@x.test
optin-1,Opted In,enterprise,,2015-01-03,active,f@x.test
new-1,New One,free,,2016-04-20,active,g@x.test
closed-1,Closed Co,free,,2015-01-01,closed,h@x.test
"""


def write_yaml(folder: Path, *blocks: str, tz: str = STORE_TZ) -> Path:
    path = folder / "migrations.yaml"
    path.write_text(f"defaults:\n  timezone: {tz}\n{NOTICES}migrations:\n" + "".join(blocks))
    return path


def write_config(
    folder: Path, *, provider: str = "file", max_confirm: int | None = None, extra: str = ""
) -> Path:
    # The shipped templates without their per-migration override folders (whose ids are
    # unknown to these tests' migrations).
    templates = folder / "templates"
    templates.mkdir(exist_ok=True)
    for src in (TESTS_DIR.parent / "email_templates").iterdir():
        if src.is_file():
            shutil.copy(src, templates / src.name)
    text = (
        'environment = "development"\nmigrations_file = "migrations.yaml"\n'
        'templates_dir = "templates"\n\n'
        f'[email]\nprovider = "{provider}"\nfrom = "Platform <notices@platform.example>"\n'
        '\n[email.file]\ndirectory = "outbox"\n'
    )
    if max_confirm is not None:
        text += f"\n[enforcement]\nmax_accounts_without_confirm = {max_confirm}\n"
    path = folder / "migctl.toml"
    path.write_text(text + extra)
    return path


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGCTL_", "ENFTEST_"))}
    env["TZ"] = HOST_TZ
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def command(folder: Path, *args: str, wrapper: bool = False) -> list[str]:
    """argv for migctl in ``folder`` (store migctl.db, config migctl.toml)."""
    head = (
        [sys.executable, str(write_wrapper(folder))]
        if wrapper
        else [sys.executable, "-m", "migrate_cli"]
    )
    return [
        *head,
        "--db",
        str(folder / "migctl.db"),
        "--config",
        str(folder / "migctl.toml"),
        *args,
    ]


def migctl(
    folder: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    wrapper: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run migctl to completion with no terminal (stdin /dev/null), as cron would."""
    return subprocess.run(
        command(folder, *args, wrapper=wrapper),
        cwd=folder,
        env=base_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str], *codes: int) -> subprocess.CompletedProcess[str]:
    allowed = codes or (0,)
    assert result.returncode in allowed, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def json_out(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def setup_store(
    folder: Path,
    *blocks: str,
    accounts: str = ACCOUNTS_CSV,
    provider: str = "file",
    max_confirm: int | None = None,
    opt_in: Iterable[tuple[str, str, str]] = (),
) -> Path:
    """Write YAML + config, sync and import at 2016-03-01; opt in (migration, account, when)."""
    write_yaml(folder, *blocks)
    write_config(folder, provider=provider, max_confirm=max_confirm)
    (folder / "accounts.csv").write_text(accounts)
    # Set-up runs in-process (a subprocess costs ~0.5 s of interpreter start-up each); the
    # commands under test run in subprocesses.
    in_process(folder, "--now", "2016-03-01", "sync")
    in_process(folder, "--now", "2016-03-01", "accounts", "import", str(folder / "accounts.csv"))
    for migration, account, when in opt_in:
        in_process(folder, "--now", when, "opt-in", migration, "--account", account)
    return folder / "migctl.db"


def in_process(folder: Path, *args: str) -> str:
    """Run one migctl command in this process (set-up only); return its stdout."""
    from typer.testing import CliRunner

    from migrate_cli.cli.app import app

    result = CliRunner().invoke(
        app,
        ["--db", str(folder / "migctl.db"), "--config", str(folder / "migctl.toml"), *args],
    )
    assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
    return result.stdout


# --------------------------------------------------------------------------- store inspection


def fingerprint(db: Path) -> dict[str, str | None]:
    """sha256 of the store and its -wal/-shm files (None when absent)."""
    out: dict[str, str | None] = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db) + suffix)
        out[suffix or "db"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
    return out


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def query(db: Path, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
    conn = connect(db)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def dump(db: Path) -> list[str]:
    """The store's logical content, for 'nothing changed' comparisons."""
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def states(db: Path, migration: str) -> dict[str, str]:
    """account -> enrollment row state (accounts without a row are absent)."""
    return {
        r["account_id"]: r["state"]
        for r in query(
            db, "SELECT account_id, state FROM enrollments WHERE migration_id = ?", (migration,)
        )
    }


def outbox_keys(db: Path, kind: str | None = None) -> dict[str, str]:
    sql = "SELECT key, state FROM outbox"
    params: tuple[Any, ...] = ()
    if kind:
        sql += " WHERE kind = ?"
        params = (kind,)
    return {r["key"]: r["state"] for r in query(db, sql, params)}


# --------------------------------------------------------------------------- a test provider


class MailboxUnavailable(Exception):
    """What LoggingProvider's deliver raises for an address in ``ENFTEST_FAIL``."""


class LoggingProvider(Provider[OutgoingEmail]):
    """Replaces the `null` provider in wrapper runs.

    Sleeps ``ENFTEST_SLEEP`` seconds per send, then appends the notice key to ``ENFTEST_LOG``
    with flush + fsync *before* returning SENT: whatever is in the log was delivered.
    Addresses listed in ``ENFTEST_FAIL`` (comma-separated) are rejected permanently.
    """

    name = "null"
    development_only = True
    delivery_errors = (MailboxUnavailable,)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.sleep = float(os.environ.get("ENFTEST_SLEEP", "0"))
        self.fail = {a for a in os.environ.get("ENFTEST_FAIL", "").split(",") if a}
        self.log_path = os.environ.get("ENFTEST_LOG")
        self._fd: int | None = None

    def open(self) -> None:
        if self.log_path:
            self._fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def build(self, email: OutgoingEmail) -> OutgoingEmail:
        return email

    def deliver(self, message: OutgoingEmail, email: OutgoingEmail) -> str:
        if self.sleep:
            time.sleep(self.sleep)
        if email.to in self.fail:
            raise MailboxUnavailable("mailbox does not exist")
        if self._fd is not None:
            os.write(self._fd, (email.key + "\n").encode())
            os.fsync(self._fd)
        return f"test:{email.message_id}"

    def classify(self, exc: Exception, message: OutgoingEmail) -> SendResult:
        return SendResult(SendStatus.PERMANENT, error=str(exc), code="550")


WRAPPER = """\
import sys
sys.path.insert(0, {tests!r})
from migrate_cli.delivery.registry import REGISTRY
REGISTRY["null"] = "helpers_enforce:LoggingProvider"
from migrate_cli.cli.app import main
main()
"""


def write_wrapper(folder: Path) -> Path:
    path = folder / "migctl_wrapper.py"
    if not path.exists():
        path.write_text(WRAPPER.format(tests=str(TESTS_DIR)))
    return path


def read_log(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line]


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def holder_pid(db: Path) -> int | None:
    try:
        return int(json.loads(Path(str(db) + ".lock.holder").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
