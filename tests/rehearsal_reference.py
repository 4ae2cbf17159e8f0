"""The rehearsal as it was first written, kept as the reference the fast one is proven against.

It copies the store into memory and runs the real enforcement, planner and outbox for every
day: exact by construction, and far too slow at a million accounts (test_rehearsal_equivalence).
"""

from __future__ import annotations

from datetime import date, datetime

from migrate_cli.lifecycle.enforcement import apply_enforcements, due_enforcements
from migrate_cli.lifecycle.planning import plan_all
from migrate_cli.lifecycle.rehearsal import Day, days_of
from migrate_cli.store.db import Store, db_time
from migrate_cli.store.outbox import enqueue
from migrate_cli.store.stored_migrations import load_catalog, store_timezone
from migrate_cli.timeutil import local_date


def reference_simulate(store: Store, now: datetime, until: date, *, from_addr: str) -> list[Day]:
    """Every day from now to ``until`` at the same time of day; nobody opts in; sends succeed."""
    tz = store_timezone(store)
    work = Store.in_memory_copy(store)
    days: list[Day] = []
    try:
        for t in days_of(now, until, tz):
            day = Day(local_date(t, tz))
            catalog = load_catalog(work)
            batches = due_enforcements(work, catalog, tz, t, with_admins=False)
            if batches:
                report = apply_enforcements(
                    work, catalog, tz, t, batches, actor="rehearsal", from_addr=from_addr
                )
                for mid, n in report.by_migration().items():
                    if n:
                        day.enforced[mid] = n
                catalog = load_catalog(work)
            with work.transaction() as conn:
                enqueue(conn, plan_all(work, catalog, tz, t), now=t, from_addr=from_addr)
                for r in conn.execute(
                    "SELECT migration_id, kind, count(*) FROM outbox WHERE state = 'pending' "
                    "AND created_at = ? GROUP BY migration_id, kind",
                    (db_time(t),),
                ):
                    day.notices.setdefault(r[0], {})[r[1]] = r[2]
                conn.execute(
                    "UPDATE outbox SET state = 'sent', sent_at = ? WHERE state = 'pending'",
                    (db_time(t),),
                )
            days.append(day)
    finally:
        work.close()
    return days
