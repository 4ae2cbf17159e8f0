"""notify: plan due notices, enqueue them in the outbox, dispatch them; or just show the plan."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from migrate_cli.config import Config
from migrate_cli.definitions.model import Migration
from migrate_cli.delivery.registry import Provider, provider_class
from migrate_cli.errors import InputError
from migrate_cli.lifecycle.planning import PlannedNotice, plan_all, tally_all
from migrate_cli.notices import parallel
from migrate_cli.notices.dispatch import Dispatcher, DispatchSummary
from migrate_cli.notices.parallel import Helper, HelperJob
from migrate_cli.notices.render import Renderer
from migrate_cli.notices.templates import templates_dir
from migrate_cli.store.db import Store
from migrate_cli.store.outbox import EnqueueReport, counts, enqueue, recover_in_doubt
from migrate_cli.store.stored_migrations import StoredMigration
from migrate_cli.timeutil import iso

SHOWN_IN_DRY_RUN = 500  # rows kept for the dry-run table; the counts cover everything
ENQUEUE_CHUNK = 1_000  # rows per commit while a helper process may already be sending


@dataclass
class NotifySummary:
    now: datetime
    dry_run: bool
    planned: int = 0
    suppressed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    sample: list[PlannedNotice] = field(default_factory=list)
    dispatch: DispatchSummary = field(default_factory=DispatchSummary)
    in_doubt_total: int = 0
    recovered_in_doubt: int = 0

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
        }

    def to_json(self) -> dict[str, Any]:
        return {"now": iso(self.now), "dry_run": self.dry_run, "notices": self.notices_json()}

    @property
    def partial(self) -> bool:
        return bool(self.dispatch.failed or self.in_doubt_total)


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
    """The dry run: count the plan, keep its first notices for display; writes nothing."""
    summary = NotifySummary(now=now, dry_run=True)
    tally, summary.sample = tally_all(store, catalog, tz, now, only, SHOWN_IN_DRY_RUN)
    summary.planned, summary.suppressed, summary.by_kind = (
        tally.planned,
        tally.suppressed,
        tally.by_kind,
    )
    summary.in_doubt_total = counts(store)["in_doubt"]
    return summary


def enqueue_due(
    store: Store,
    config: Config,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    only: str | None,
    summary: NotifySummary,
    *,
    committed: Callable[[int], bool] | None = None,
) -> None:
    """Plan and queue, in one transaction; or, with ``committed``, in chunks.

    Chunked, each ENQUEUE_CHUNK notices are written in a transaction of their own and
    ``committed`` is told the total so far (and answers False to stop queuing: a signal): a
    helper process can send them while the rest is planned, and it is never kept waiting while
    this one plans (outside any transaction). The plan is then read through a second
    connection and spooled to a temporary file per migration: a cursor left open would pin
    its snapshot, and the write-ahead log could not be checkpointed meanwhile. An
    interrupted or failed run keeps what it queued; every notice has its own key, so the next
    run plans only the rest.
    """
    if committed is None:
        with store.transaction(counts=False) as conn:
            report = enqueue(
                conn,
                plan_all(store, catalog, tz, now, only),
                now=now,
                from_addr=config.email.from_addr,
            )
        _add(summary, report)
        return
    with Store(store.path, create=False) as reader:
        planned = plan_all(reader, catalog, tz, now, only, spool=True)
        while chunk := list(itertools.islice(planned, ENQUEUE_CHUNK)):
            with store.transaction(counts=False) as conn:
                report = enqueue(conn, chunk, now=now, from_addr=config.email.from_addr)
            _add(summary, report)
            if not committed(summary.planned):
                return


def _add(summary: NotifySummary, report: EnqueueReport) -> None:
    summary.planned += report.enqueued
    summary.suppressed += report.suppressed
    for kind, n in (report.by_kind or {}).items():
        summary.by_kind[kind] = summary.by_kind.get(kind, 0) + n


def notify(
    store: Store,
    config: Config,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    *,
    only: str | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    summary: NotifySummary | None = None,
    templates_checked: bool = False,
) -> NotifySummary:
    """Plan, enqueue and dispatch. Raises ProviderConfigError after recording what was sent.

    ``templates_checked``: the caller (run's preflight) already rendered every template.
    """
    factory, network = provider_factory(config)
    renderer = make_renderer(config)
    if not templates_checked:
        check_renderer(renderer, [sm.migration for sm in catalog])
    summary = summary or NotifySummary(now=now, dry_run=False)
    summary.recovered_in_doubt = recover_in_doubt(store, now=now)
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
    # Waiting rows that must no longer go out are dropped before anything is queued or sent
    # (a helper process may start sending while this one is still queuing).
    dispatcher.sweep()
    helper: Helper | None = None
    failed = True
    try:
        if parallel.wanted(config, network, store.path):
            helper = Helper(
                HelperJob(str(store.path), config, now, only), progress or (lambda n: None)
            )

            def committed(total: int) -> bool:
                """After each chunk: start the helper once the run is large; False: stop."""
                if helper is not None and not helper.started and total >= parallel.PARALLEL_MIN:
                    helper.start()
                return not dispatcher.stop.is_set()

            enqueue_due(store, config, catalog, tz, now, only, summary, committed=committed)
            if (
                not dispatcher.stop.is_set()
                and not helper.started
                and pending_count(store, only) >= parallel.PARALLEL_MIN
            ):
                helper.start()  # a large backlog from earlier runs
            helper.queuing_done()
        else:
            enqueue_due(store, config, catalog, tz, now, only, summary)
        dispatcher.run(only, sweep=False)
        failed = False
    finally:
        # The helper never outlives this call: on an error or a stop it is stopped (it
        # finishes its send in flight and records it), otherwise its share is waited for.
        try:
            if helper is not None:
                # After an error here, that error is the one reported, not the helper's.
                with contextlib.suppress(Exception) if failed else contextlib.nullcontext():
                    helper.join(
                        dispatcher.summary,
                        stopping=failed or dispatcher.stop.is_set(),
                        stop=dispatcher.stop,
                    )
        finally:
            summary.in_doubt_total = counts(store)["in_doubt"]
    return summary


def pending_count(store: Store, only: str | None = None) -> int:
    if only:
        return int(
            store.scalar(
                "SELECT count(*) FROM outbox WHERE state = 'pending' AND migration_id = ?", (only,)
            )
        )
    return int(store.scalar("SELECT count(*) FROM outbox WHERE state = 'pending'"))
