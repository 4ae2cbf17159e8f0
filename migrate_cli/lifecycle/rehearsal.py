"""plan --until: rehearse day by day what cron would do, on an in-memory copy of the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from migrate_cli.lifecycle.enforcement import apply_enforcements, due_enforcements
from migrate_cli.lifecycle.planning import plan_all
from migrate_cli.store.db import Store, db_time
from migrate_cli.store.outbox import enqueue
from migrate_cli.store.stored_migrations import load_catalog, store_timezone
from migrate_cli.timeutil import local_date

MAX_DAYS = 3_660


@dataclass
class Day:
    day: date
    notices: dict[str, dict[str, int]] = field(default_factory=dict)  # migration -> kind -> n
    enforced: dict[str, int] = field(default_factory=dict)  # migration -> accounts

    def to_json(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "notices": self.notices, "enforced": self.enforced}

    @property
    def empty(self) -> bool:
        return not self.notices and not self.enforced


def simulate(store: Store, now: datetime, until: date, *, from_addr: str) -> list[Day]:
    """Every day from now to ``until`` at the same time of day; nobody opts in; sends succeed."""
    tz = store_timezone(store)
    start = local_date(now, tz)
    if until < start:
        raise ValueError(f"--until {until.isoformat()} is before now ({start.isoformat()})")
    if (until - start).days > MAX_DAYS:
        raise ValueError(f"--until is more than {MAX_DAYS} days ahead")
    work = Store.in_memory_copy(store)
    days: list[Day] = []
    try:
        wall = now.astimezone(tz).time()  # naive local time of day, kept on every day
        for offset in range((until - start).days + 1):
            # Step calendar days in the store's timezone, not 24-hour blocks: across a DST change
            # `now + 24h` lands on another local hour, so a day would repeat and --until's day
            # would be skipped (or an enforcement simulated an hour off).
            t = (
                now
                if offset == 0
                else datetime.combine(start + timedelta(days=offset), wall, tzinfo=tz).astimezone(
                    UTC
                )
            )
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
                # Assume every send succeeds, as cron's provider would report.
                conn.execute(
                    "UPDATE outbox SET state = 'sent', sent_at = ? WHERE state = 'pending'",
                    (db_time(t),),
                )
            days.append(day)
    finally:
        work.close()
    return days
