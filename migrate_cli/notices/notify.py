"""notify: plan the notices due now, queue them in the outbox, send them; or only show the plan."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from migrate_cli.config import Config
from migrate_cli.definitions.model import Migration
from migrate_cli.delivery.base import Provider
from migrate_cli.delivery.registry import provider_class
from migrate_cli.errors import InputError, SendingStoppedError
from migrate_cli.lifecycle.enforcement import due_enforcements
from migrate_cli.lifecycle.planning import plan_all
from migrate_cli.notices.dispatch import Dispatcher, DispatchSummary
from migrate_cli.notices.render import Renderer
from migrate_cli.notices.templates import templates_dir
from migrate_cli.progress import NO_PROGRESS, Progress, counted
from migrate_cli.store import outbox
from migrate_cli.store.db import Store
from migrate_cli.store.outbox import PlannedNotice
from migrate_cli.store.stored_migrations import StoredMigration
from migrate_cli.timeutil import iso

SHOWN_IN_DRY_RUN = 500  # rows kept for the dry-run table; the counts cover everything


@dataclass
class NotifySummary:
    now: datetime
    dry_run: bool
    planned: int = 0
    suppressed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    sample: list[PlannedNotice] = field(default_factory=list)
    dispatch: DispatchSummary = field(default_factory=DispatchSummary)
    in_doubt_total: int = 0  # in the whole outbox after the run (older ones included)
    # migration -> accounts whose date has passed but that `enforce` has not switched yet: a
    # hand-run notify plans no notice for them and must say what to run instead.
    enforcement_due: dict[str, int] = field(default_factory=dict)

    def notices_json(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "sent": self.dispatch.sent,
            "failed": self.dispatch.failed,
            "in_doubt": self.in_doubt_total,
            "suppressed": self.suppressed + self.dispatch.suppressed_at_send,
            "retry_later": self.dispatch.retry_later,
            "by_kind": dict(sorted(self.by_kind.items())),
            "quota_reached": self.dispatch.quota_reached,
            "paused": self.dispatch.paused,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "now": iso(self.now),
            "dry_run": self.dry_run,
            "notices": self.notices_json(),
            "enforcement_due": dict(sorted(self.enforcement_due.items())),
        }

    def note_enforcement_due(
        self, store: Store, catalog: list[StoredMigration], tz: tzinfo, only: str | None
    ) -> None:
        for b in due_enforcements(store, catalog, tz, self.now, only, with_admins=False):
            if b.accounts:
                self.enforcement_due[b.migration_id] = (
                    self.enforcement_due.get(b.migration_id, 0) + b.accounts
                )

    @property
    def partial(self) -> bool:
        return bool(self.dispatch.failed or self.in_doubt_total or self.dispatch.retry_later)

    def add(self, report: outbox.EnqueueReport) -> None:
        self.planned += report.enqueued
        self.suppressed += report.suppressed
        for kind, n in report.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n


def make_renderer(config: Config) -> Renderer:
    return Renderer(
        templates_dir(config), config.dashboard.url, product_name=config.dashboard.product_name
    )


def check_renderer(renderer: Renderer, migrations: list[Migration]) -> None:
    """Stop before anything is written or sent when a template does not render (file, line).

    Pass retired migrations too: their override folders are still known ids, not strays.
    """
    problems = renderer.check(migrations, strays=False)
    if problems:
        raise InputError(
            problems, "a template does not render; nothing was written and nothing was sent"
        )


def provider_factory(config: Config) -> tuple[Callable[[], Provider], bool]:
    cls = provider_class(config.email.provider)
    cls(config)  # constructing validates early (e.g. dev providers refuse production)
    return (lambda: cls(config)), cls.network


def plan_only(
    store: Store, catalog: list[StoredMigration], tz: tzinfo, now: datetime, only: str | None
) -> NotifySummary:
    """The dry run: the plan the real run would queue, counted, its first rows kept to show."""
    summary = NotifySummary(now=now, dry_run=True)
    for n in plan_all(store, catalog, tz, now, only, listed=False):
        if n.suppressed:
            summary.suppressed += 1
        else:
            summary.planned += 1
            summary.by_kind[n.kind] = summary.by_kind.get(n.kind, 0) + 1
        if len(summary.sample) < SHOWN_IN_DRY_RUN:
            summary.sample.append(n)
    summary.in_doubt_total = outbox.counts(store)["in_doubt"]
    summary.note_enforcement_due(store, catalog, tz, only)
    return summary


def notify(
    store: Store,
    config: Config,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    *,
    only: str | None = None,
    stop: threading.Event | None = None,
    progress: Progress = NO_PROGRESS,
    summary: NotifySummary | None = None,
    templates_checked: bool = False,
    report_due_enforcement: bool = True,
) -> NotifySummary:
    """Plan, queue, send. Raises ProviderConfigError after recording what was sent.

    ``templates_checked``: the caller (run's preflight) already rendered every template.
    ``report_due_enforcement=False``: the caller (run) has just enforced what was due.
    """
    factory, network = provider_factory(config)
    renderer = make_renderer(config)
    if not templates_checked:
        check_renderer(renderer, [sm.migration for sm in catalog])
    summary = summary or NotifySummary(now=now, dry_run=False)
    outbox.recover_in_doubt(store, now=now)  # a killed run's `sending` rows: counted below
    dispatcher = Dispatcher(
        store,
        config,
        factory,
        renderer,
        catalog,
        tz,
        now,
        stop=stop,
        progress=progress,
        network=network,
    )
    summary.dispatch = dispatcher.summary
    # Waiting rows that must no longer go out are dropped before this run queues its own.
    dispatcher.sweep()
    progress.phase("planning")  # the plan streams into the outbox: counted as it comes
    with store.transaction(counts=False) as conn:
        summary.add(
            outbox.enqueue(
                conn,
                counted(plan_all(store, catalog, tz, now, only), progress),
                now=now,
                from_addr=config.email.from_addr,
            )
        )
        progress.phase("queuing")  # the commit below
    progress.phase("sending", outbox.pending_count(store, only))
    try:
        dispatcher.run(only)
    except (sqlite3.DatabaseError, OSError) as exc:
        # The store failed mid-send (a full disk): the sends recorded before it stay
        # recorded; a notice claimed but not settled is marked in doubt by the next run.
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SendingStoppedError(
            f"sending stopped: the store failed ({cause}); {dispatcher.summary.sent} "
            "notice(s) sent before it are recorded, the rest stay pending (a notice in "
            "flight becomes in_doubt on the next run)"
        ) from None
    finally:
        with contextlib.suppress(sqlite3.DatabaseError):  # reading may fail as well
            summary.in_doubt_total = outbox.counts(store)["in_doubt"]
    if report_due_enforcement:
        summary.note_enforcement_due(store, catalog, tz, only)
    return summary
