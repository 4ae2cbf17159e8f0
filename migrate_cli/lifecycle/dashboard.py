"""Dashboard notices: per account, the active migrations it must still act on (streamed JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, tzinfo
from typing import IO, Any
from urllib.parse import quote

from migrate_cli.lifecycle.enrollment import pending_accounts_sql
from migrate_cli.lifecycle.phases import mandatory_instant
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import StoredMigration
from migrate_cli.timeutil import days_until, iso


def _message(sm: StoredMigration, deadline: date | None, days: int | None) -> str:
    m = sm.migration
    if deadline is None:
        return f"{m.title}: action needed. {m.summary} The mandatory date is not set yet."
    if days is not None and days < 0:
        return f"{m.title}: the mandatory date ({deadline.isoformat()}) has passed; the change is being enabled."
    return f"{m.title}: action needed within {days} day(s), by {deadline.isoformat()}. {m.summary}"


def iter_notices(
    store: Store, catalog: list[StoredMigration], tz: tzinfo, now: datetime, dashboard_url: str
) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(account id, name, notices) for every account with at least one pending migration."""
    active = [
        sm
        for sm in catalog
        if sm.status == "active"
        and now >= sm.migration.grace_start_instant(tz)
        and not sm.enforced_immediately
    ]
    if not active:
        return
    parts, params = [], []
    for i, sm in enumerate(active):
        sql, p = pending_accounts_sql(sm.migration, tz)
        parts.append(f"SELECT {i} AS mi, q.id, q.name, q.deadline FROM ({sql}) q")
        params.extend(p)
    sql = " UNION ALL ".join(parts) + " ORDER BY 2, 1"
    current: str | None = None
    name = ""
    notices: list[dict[str, Any]] = []
    for row in store.iterate(sql, params):
        if row["id"] != current:
            if current is not None and notices:
                yield current, name, notices
            current, name, notices = row["id"], row["name"], []
        sm = active[row["mi"]]
        deadline = date.fromisoformat(row["deadline"]) if row["deadline"] else None
        if (
            deadline is not None
            and now >= mandatory_instant(deadline, tz)
            and sm.migration.per_plan
        ):
            continue
        days = days_until(deadline, now, tz) if deadline else None
        notices.append(
            {
                "id": sm.id,
                "migration": sm.id,  # the same as "id"; kept for readers of the first format
                "title": sm.migration.title,
                "severity": sm.migration.severity,
                "deadline": deadline.isoformat() if deadline else None,
                "days_left": days,
                "message": _message(sm, deadline, days),
                # Read-only page: following it changes nothing (SPEC rule 7).
                "link": f"{dashboard_url.rstrip('/')}/{quote(sm.id)}?account={quote(row['id'], safe='')}",
            }
        )
    if current is not None and notices:
        yield current, name, notices


def write_export(
    out: IO[str],
    store: Store,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    dashboard_url: str,
) -> int:
    """Stream the export as one JSON document; returns the number of accounts written."""
    out.write(f'{{"generated_at": {json.dumps(iso(now))}, "accounts": [')
    count = 0
    for account_id, name, notices in iter_notices(store, catalog, tz, now, dashboard_url):
        out.write(
            ("\n  " if count == 0 else ",\n  ")
            + json.dumps(
                {"account_id": account_id, "name": name, "notices": notices}, ensure_ascii=False
            )
        )
        count += 1
    out.write(f'\n], "count": {count}}}\n')
    return count
