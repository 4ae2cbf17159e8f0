"""run: the cron entry point — sync when the file changed, enforce, then notify."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from migrate_cli.config import Config
from migrate_cli.definitions.model import Definitions, load_definitions
from migrate_cli.delivery.base import ProviderConfigError
from migrate_cli.errors import MigctlError, SendingStoppedError
from migrate_cli.lifecycle import status_figures
from migrate_cli.lifecycle.enforcement import EnforceReport, apply_enforcements, due_enforcements
from migrate_cli.notices.notify import (
    NotifySummary,
    check_renderer,
    make_renderer,
    notify,
    plan_only,
    provider_factory,
)
from migrate_cli.platform.push import PushReport, endpoint, push
from migrate_cli.progress import NO_PROGRESS, Progress
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import load_catalog, store_timezone
from migrate_cli.store.sync import SyncReport, sync
from migrate_cli.timeutil import iso, start_of_day


@dataclass
class RunSummary:
    now: datetime
    dry_run: bool
    synced: SyncReport | None = None
    enforce: EnforceReport = field(default_factory=EnforceReport)
    notify: NotifySummary | None = None
    platform: PushReport | None = None  # None: no [platform] configured, or a dry run
    held: list[dict[str, Any]] = field(default_factory=list)  # due, but min_notice holds it
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"now": iso(self.now), "dry_run": self.dry_run}
        doc["synced"] = self.synced.to_json() if self.synced else None
        doc["enforced"] = self.enforce.by_migration()
        doc["notices"] = (
            self.notify or NotifySummary(now=self.now, dry_run=self.dry_run)
        ).notices_json()
        doc["platform"] = self.platform.to_json() if self.platform else None
        doc["held"] = self.held
        if self.error:
            doc["error"] = self.error
        return doc

    @property
    def partial(self) -> bool:
        return bool(self.notify and self.notify.partial) or bool(
            self.platform and self.platform.partial
        )


def preflight(store: Store, config: Config, defs: Definitions, *, dry_run: bool) -> None:
    """Templates and provider checked before sync and enforcement write anything.

    `notify` checks them too, but only after enforcement has committed: a broken template or a
    development provider under `environment = "production"` would otherwise leave accounts
    switched with their `enforced` notices stuck, against "bad input: nothing is written".
    """
    migrations = {sm.id: sm.migration for sm in load_catalog(store)}  # retired ones too
    migrations.update({m.id: m for m in defs.migrations})
    check_renderer(make_renderer(config), list(migrations.values()))
    if not dry_run:
        provider_factory(config)  # raises ProviderConfigError (exit 1)
        if config.platform is not None:
            endpoint(config)  # the endpoint's environment variables are set


def run(
    store: Store,
    config: Config,
    now_for: Callable[[Store], datetime],
    *,
    actor: str,
    dry_run: bool,
    definitions_file: Path | None = None,
    stop: threading.Event | None = None,
    progress: Progress = NO_PROGRESS,
) -> RunSummary:
    """One cron run. The caller holds the lock. Dry runs work on an in-memory copy."""
    path = definitions_file or config.migrations_file
    defs = load_definitions(path)  # bad YAML: InputError before anything is written
    preflight(store, config, defs, dry_run=dry_run)
    work = Store.in_memory_copy(store) if dry_run else store
    now = now_for(work)
    summary = RunSummary(now=now, dry_run=dry_run)
    if (
        work.meta("definitions_hash") != defs.source_hash
        or work.meta("timezone") != defs.timezone_name
    ):
        summary.synced = sync(work, defs, now=now, actor=actor)
        now = now_for(work)  # the timezone may just have been set
        summary.now = now
    tz = store_timezone(work)
    catalog = load_catalog(work)
    batches = due_enforcements(work, catalog, tz, now, with_admins=False)
    if batches:
        progress.phase("enforcing", sum(b.accounts or 0 for b in batches) or None)
        summary.enforce = apply_enforcements(
            work, catalog, tz, now, batches, actor=actor, from_addr=config.email.from_addr
        )
        catalog = load_catalog(work)
    # Dates whose day has come but that min_notice holds back (rule 3a): this run did not
    # enforce them, and says so (an operator alert may be listening for it).
    summary.held = [
        {"migration": sm.id, **h.to_json()}
        for sm in catalog
        for h in sm.active_holds(now)
        if now >= start_of_day(h.written, tz)
    ]
    if dry_run:
        summary.notify = plan_only(work, catalog, tz, now, None)
        # Enforced notices queued on the copy are part of what the run would send. Counted from
        # the enforcement report, not from outbox rows stamped `now`: rows left pending by an
        # earlier real run at the same --now are not news of this run.
        summary.notify.planned += summary.enforce.notices
        summary.notify.suppressed += summary.enforce.suppressed
        if summary.enforce.notices:
            summary.notify.by_kind["enforced"] = (
                summary.notify.by_kind.get("enforced", 0) + summary.enforce.notices
            )
        summary.notify.dry_run = True
        work.close()
        return summary
    summary.notify = NotifySummary(now=now, dry_run=False)
    # Enforced notices were queued by enforcement: this run planned them, whether they go out
    # now or wait for the platform.
    summary.notify.planned += summary.enforce.notices
    summary.notify.suppressed += summary.enforce.suppressed
    if summary.enforce.notices:
        summary.notify.by_kind["enforced"] = summary.enforce.notices
    if config.platform is not None:
        # Rule 4a: the platform hears of every switch before any administrator is told.
        summary.platform = push(store, config, now, honour_backoff=True, stop=stop)
        if summary.platform.partial:
            return summary  # the notices wait for the next run (exit 3)
    try:
        notify(
            store,
            config,
            catalog,
            tz,
            now,
            stop=stop,
            progress=progress,
            summary=summary.notify,
            templates_checked=True,
            report_due_enforcement=False,
        )
    except (ProviderConfigError, SendingStoppedError) as exc:
        summary.error = str(exc)
        exc.run_summary = summary  # type: ignore[union-attr]  # the CLI still reports it
        raise
    if not (stop and stop.is_set()):
        # Count once per cron run, so a `status` between runs reads cached figures. Only an
        # optimisation: a failure here must not turn a good run into an error.
        try:
            status_figures.refresh(store)
        except (sqlite3.Error, MigctlError) as exc:
            sys.stderr.write(f"warning: status figures not refreshed: {exc}\n")
    return summary
