"""Helpers for the notice tests: build a store from YAML and account rows, run notify, read rows.

Every helper works relative to the current folder (conftest chdirs into tmp_path), so the
default `./migctl.toml`, `./migrations.yaml` and `./migctl.db` are the test's own.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, ClassVar

from migrate_cli.accounts.records import import_accounts
from migrate_cli.config import Config, load_config
from migrate_cli.definitions.model import load_definitions
from migrate_cli.delivery.registry import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    SendResult,
    SendStatus,
)
from migrate_cli.lifecycle.planning import plan_all
from migrate_cli.notices.notify import NotifySummary, notify, plan_only
from migrate_cli.store.db import Store
from migrate_cli.store.outbox import PlannedNotice, enqueue
from migrate_cli.store.stored_migrations import load_catalog, store_timezone
from migrate_cli.store.sync import sync

DB = Path("migctl.db")
MIG = "email-delivery-changes"
T_SETUP = datetime(2016, 3, 1, tzinfo=UTC)

# One migration, dates chosen so the default cadence is easy to follow.
#   grace start 2016-04-04, mandatory 2016-05-11 (37 days), reminder every 14d,
#   escalations 30d, 14d, 7d, 3d, 1d, min_gap 2d.
ONE_MIGRATION = """\
defaults:
  timezone: UTC
  notices:
    reminder_every: 14d
    escalate_before: [30d, 14d, 7d, 3d, 1d]
    min_gap: 2d
migrations:
  - id: email-delivery-changes
    title: Email Delivery Changes
    severity: medium
    grace_period_start: 2016-04-04
    mandatory_opt_in: {mandatory}
    summary: The built-in provider becomes testing-only.
    description: "**Configure** a real provider."
    docs_url: https://docs.example.com/email
"""

FILE_CONFIG = """\
environment = "{environment}"
{extra}
[email]
provider = "{provider}"
from = "Platform Notices <notices@platform.example>"
reply_to = "support@platform.example"

[email.file]
directory = "outbox"

[dashboard]
url = "https://dashboard.platform.example/migrations"
"""

HEADER = ("id", "name", "plan", "tags", "created_at", "status", "admins")


def at(text: str) -> datetime:
    """'2016-04-20' or '2016-04-20T09:30:00' as a UTC instant."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def account(
    acc_id: str,
    admins: str | Sequence[str],
    *,
    name: str | None = None,
    plan: str = "enterprise",
    tags: str = "",
    created_at: str = "2015-01-01",
    status: str = "active",
) -> dict[str, str]:
    return {
        "id": acc_id,
        "name": name if name is not None else acc_id.upper(),
        "plan": plan,
        "tags": tags,
        "created_at": created_at,
        "status": status,
        "admins": admins if isinstance(admins, str) else ";".join(admins),
    }


def write_csv(path: Path, rows: Iterable[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_yaml(text: str = ONE_MIGRATION, *, mandatory: str = "2016-05-11") -> Path:
    path = Path("migrations.yaml")
    path.write_text(text.replace("{mandatory}", mandatory), encoding="utf-8")
    return path


def write_config(
    *, provider: str = "file", environment: str = "development", extra: str = ""
) -> Path:
    path = Path("migctl.toml")
    path.write_text(
        FILE_CONFIG.format(provider=provider, environment=environment, extra=extra),
        encoding="utf-8",
    )
    return path


def config() -> Config:
    return load_config(Path("migctl.toml"), explicit=True)


def build_store(
    rows: Iterable[dict[str, str]],
    *,
    yaml_text: str = ONE_MIGRATION,
    mandatory: str = "2016-05-11",
    provider: str = "file",
) -> Path:
    """migrations.yaml + migctl.toml + a synced store with `rows` imported (at 2016-03-01)."""
    write_yaml(yaml_text, mandatory=mandatory)
    write_config(provider=provider)
    with Store(DB) as store:
        sync(store, load_definitions(Path("migrations.yaml")), now=T_SETUP, actor="test")
        import_accounts(store, write_csv(Path("accounts.csv"), rows), now=T_SETUP, actor="test")
    return DB


def resync(yaml_text: str = ONE_MIGRATION, *, mandatory: str, now: datetime) -> None:
    write_yaml(yaml_text, mandatory=mandatory)
    with Store(DB) as store:
        sync(store, load_definitions(Path("migrations.yaml")), now=now, actor="test")


def import_rows(rows: Iterable[dict[str, str]], *, now: datetime) -> None:
    with Store(DB) as store:
        import_accounts(store, write_csv(Path("more.csv"), rows), now=now, actor="test")


def plan(now: datetime, only: str | None = None) -> list[PlannedNotice]:
    with Store(DB) as store:
        return list(plan_all(store, load_catalog(store), store_timezone(store), now, only))


def dry_run(now: datetime, only: str | None = None) -> NotifySummary:
    with Store(DB) as store:
        return plan_only(store, load_catalog(store), store_timezone(store), now, only)


def run_notify(now: datetime, cfg: Config | None = None, only: str | None = None) -> NotifySummary:
    with Store(DB) as store:
        return notify(
            store, cfg or config(), load_catalog(store), store_timezone(store), now, only=only
        )


def tick(now: datetime) -> int:
    """One cron run without a provider: plan, enqueue, mark every pending row sent.

    Cadence tests use it to walk through weeks of runs quickly; notify itself is covered
    end to end elsewhere. Returns the number of new rows.
    """
    with Store(DB) as store:
        catalog = load_catalog(store)
        tz = store_timezone(store)
        with store.transaction() as conn:
            report = enqueue(conn, plan_all(store, catalog, tz, now), now=now, from_addr="n@x.test")
            conn.execute("UPDATE outbox SET state = 'sent' WHERE state = 'pending'")
    return report.enqueued


def outbox(where: str = "1", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(DB)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(f"SELECT * FROM outbox WHERE {where} ORDER BY id", params).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]


def sql(statement: str, params: Sequence[Any] = ()) -> None:
    conn = sqlite3.connect(DB)
    try:
        with conn:
            conn.execute(statement, params)
    finally:
        conn.close()


def emls(folder: Path = Path("outbox")) -> list[Path]:
    return sorted(folder.glob("*.eml")) if folder.is_dir() else []


def parse_eml(path: Path) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> dict[str, str]:
    """{'plain': text, 'html': html} of a multipart/alternative notice (newlines as \\n)."""
    out: dict[str, str] = {}
    for part in msg.iter_parts():
        out[part.get_content_subtype()] = part.get_content().replace("\r\n", "\n")
    return out


def files_digest(db: Path) -> dict[str, str | None]:
    """sha256 of the db file and its WAL/SHM companions (None when absent)."""
    out: dict[str, str | None] = {}
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db) + suffix)
        out[suffix or "db"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
    return out


def flat(text: str) -> str:
    """Rich may wrap long error lines; compare on single spaces."""
    return " ".join(text.split())


def enqueue_only(now: datetime) -> int:
    """Plan and enqueue (no dispatch): the state a run killed right after enqueueing leaves."""
    with Store(DB) as store:
        catalog = load_catalog(store)
        tz = store_timezone(store)
        with store.transaction() as conn:
            report = enqueue(conn, plan_all(store, catalog, tz, now), now=now, from_addr="n@x.test")
    return report.enqueued


class MailboxUnavailable(Exception):
    """What RecordingProvider's deliver raises for a recipient in ``permanent_for``."""


class RecordingProvider(Provider[OutgoingEmail]):
    """A test provider registered over `console`: records keys; can fail on demand.

    Class attributes (reset by the `recording` fixture) steer it:
    ``config_error_after`` raises ProviderConfigError once that many were sent;
    ``permanent_for`` returns a permanent failure for those recipients.
    """

    name = "console"
    development_only = True
    delivery_errors = (MailboxUnavailable,)
    sent: ClassVar[list[str]] = []
    config_error_after: ClassVar[int | None] = None
    interrupt_after: ClassVar[int | None] = None
    permanent_for: ClassVar[set[str]] = set()

    def build(self, email: OutgoingEmail) -> OutgoingEmail:
        return email

    def deliver(self, message: OutgoingEmail, email: OutgoingEmail) -> str:
        if self.interrupt_after is not None and len(self.sent) >= self.interrupt_after:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a send
        if self.config_error_after is not None and len(self.sent) >= self.config_error_after:
            raise ProviderConfigError(self.name, "invalid API key (test provider)", code="auth")
        if email.to in self.permanent_for:
            raise MailboxUnavailable("550 5.1.1 mailbox does not exist")
        type(self).sent.append(email.key)
        return f"rec-{len(self.sent)}"

    def classify(self, exc: Exception, message: OutgoingEmail) -> SendResult:
        return SendResult(SendStatus.PERMANENT, error=str(exc), code="550")

    @classmethod
    def reset(cls) -> None:
        cls.sent = []
        cls.config_error_after = None
        cls.interrupt_after = None
        cls.permanent_for = set()
