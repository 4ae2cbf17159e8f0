"""Delivery events: storing them once, matching them to notices, each notice's outcome, the rates.

A notice's delivery outcome is derived from its events (the latest by event time), never kept
as a column of the outbox row. Providers deliver events late, repeated and out of order (SQS
does not keep order; SendGrid retries a batch), so a column would need ordering rules at every
write and could drift from the events it summarises; derived, the outcome is the same whatever
order the events came in, and the outbox keeps owning only what migctl itself did with a notice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from migrate_cli.store.db import Store, db_time, parse_db_time
from migrate_cli.vocabulary import BounceType, DeliveryOutcome

# Among events of the same instant, the one that says most about the address wins.
_RANK = (
    "CASE outcome WHEN 'complained' THEN 5 WHEN 'bounced' THEN 4 WHEN 'rejected' THEN 3 "
    "WHEN 'delivered' THEN 2 ELSE 1 END"
)


def insert(
    conn: sqlite3.Connection,
    *,
    event_key: str,
    provider: str,
    notice_key: str | None,
    email: str,
    outcome: DeliveryOutcome,
    bounce_type: BounceType | None,
    detail: str | None,
    event_at: datetime,
    now: datetime,
) -> bool:
    """Store one event (inside the caller's transaction); False if the store already had it."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO delivery_events(event_key, provider, notice_key, email, outcome, "
        "bounce_type, detail, event_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event_key,
            provider,
            notice_key,
            email,
            str(outcome),
            str(bounce_type) if bounce_type else None,
            detail,
            db_time(event_at),
            db_time(now),
        ),
    )
    return bool(cur.rowcount)


# --------------------------------------------------------------------------- matching


def notice_keys_of(conn: sqlite3.Connection, email: str) -> list[str]:
    """Every notice key of one address (a handful), through the outbox's (migration, email)
    index: the IN over the migrations lets SQLite seek it without an index of its own."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT key FROM outbox WHERE migration_id IN (SELECT id FROM migrations) "
            "AND email = ?",
            (email,),
        )
    ]


def known_key(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT key FROM outbox WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def key_by_provider_message_id(conn: sqlite3.Connection, candidates: Sequence[str]) -> str | None:
    """The notice whose provider message id is the first of ``candidates`` found."""
    for candidate in candidates:
        row = conn.execute(
            "SELECT key FROM outbox WHERE provider_message_id = ? "
            "AND provider_message_id IS NOT NULL ORDER BY id LIMIT 1",
            (candidate,),
        ).fetchone()
        if row:
            return str(row[0])
    return None


def key_by_message_id(conn: sqlite3.Connection, message_id: str) -> str | None:
    """The notice whose Message-ID header this is (pending rows were never sent)."""
    row = conn.execute(
        "SELECT key FROM outbox WHERE message_id = ? AND state != 'pending' ORDER BY id LIMIT 1",
        (message_id,),
    ).fetchone()
    return str(row[0]) if row else None


def soft_bounce_times(conn: sqlite3.Connection, email: str) -> list[tuple[datetime, str]]:
    """The soft bounces of an address's notices (orphans excluded), by event time, each with
    its event key."""
    return [
        (parse_db_time(r[0]), r[1])
        for r in conn.execute(
            "SELECT event_at, event_key FROM delivery_events WHERE email = ? "
            "AND outcome = 'bounced' AND bounce_type = 'soft' AND notice_key IS NOT NULL "
            "ORDER BY event_at, event_key",
            (email,),
        )
    ]


def detail_of(conn: sqlite3.Connection, event_key: str) -> str | None:
    row = conn.execute(
        "SELECT detail FROM delivery_events WHERE event_key = ?", (event_key,)
    ).fetchone()
    return row[0] if row else None


# --------------------------------------------------------------------------- reading


def outcomes(store: Store, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each listed notice's delivery outcome: its latest event (outcome, bounce type, detail,
    time). Notices without events are absent."""
    wanted = list(dict.fromkeys(keys))
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = store.query(
            "SELECT notice_key, outcome, bounce_type, detail, event_at FROM ("
            "SELECT *, row_number() OVER (PARTITION BY notice_key ORDER BY event_at DESC, "
            f"{_RANK} DESC, event_key DESC) AS rn FROM delivery_events "
            f"WHERE notice_key IN ({','.join('?' * len(chunk))})) WHERE rn = 1",
            chunk,
        )
        for r in rows:
            out[r["notice_key"]] = {
                "outcome": r["outcome"],
                "bounce_type": r["bounce_type"],
                "detail": r["detail"],
                "at": r["event_at"],
            }
    return out


RATE_KEYS = ("delivered", "bounced", "complained", "rejected")
# Each figure: notices with at least one event matching the condition.
_COUNTED = {
    "delivered": "d.outcome = 'delivered'",
    "deferred": "d.outcome = 'deferred'",
    "bounced": "d.outcome = 'bounced'",
    "bounced_hard": "d.outcome = 'bounced' AND d.bounce_type = 'hard'",
    "bounced_soft": "d.outcome = 'bounced' AND d.bounce_type = 'soft'",
    "complained": "d.outcome = 'complained'",
    "rejected": "d.outcome = 'rejected'",
}


def figures(store: Store) -> dict[str, dict[str, Any]]:
    """Per migration id: notices sent, and how many of them had each kind of event (a notice
    delivered and then complained about counts in both), with rates over the notices sent.

    Counted live with two grouped queries (not cached: events arrive between runs)."""
    sent = {
        r[0]: r[1]
        for r in store.conn.execute(
            "SELECT migration_id, count(*) FROM outbox WHERE state = 'sent' GROUP BY migration_id"
        )
    }
    seen = {}
    for r in store.query(
        "SELECT o.migration_id AS m, "
        + ", ".join(
            f"count(DISTINCT CASE WHEN {when} THEN d.notice_key END) AS {name}"
            for name, when in _COUNTED.items()
        )
        + " FROM delivery_events d CROSS JOIN outbox o ON o.key = d.notice_key "
        "WHERE d.notice_key IS NOT NULL GROUP BY o.migration_id"
    ):
        seen[r["m"]] = {name: r[name] for name in _COUNTED}
    out: dict[str, dict[str, Any]] = {}
    for mid in set(sent) | set(seen):
        n = sent.get(mid, 0)
        counts = seen.get(mid, dict.fromkeys(_COUNTED, 0))
        out[mid] = {
            "sent": n,
            **counts,
            "rates": {k: (round(counts[k] / n, 4) if n else None) for k in RATE_KEYS},
        }
    return out


def empty_figures() -> dict[str, Any]:
    """The delivery figures of a migration with nothing sent."""
    return {"sent": 0, **dict.fromkeys(_COUNTED, 0), "rates": dict.fromkeys(RATE_KEYS)}


def orphans(store: Store) -> int:
    """Events kept for notices this store does not know."""
    return int(store.scalar("SELECT count(*) FROM delivery_events WHERE notice_key IS NULL") or 0)
