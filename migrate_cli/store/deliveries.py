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
        "INSERT OR IGNORE INTO delivery_events(event_key, provider, notice_key, migration_id, "
        "email, outcome, bounce_type, detail, event_at, recorded_at) VALUES (?, ?, ?, "
        "(SELECT migration_id FROM outbox WHERE key = ?), ?, ?, ?, ?, ?, ?)",
        (
            event_key,
            provider,
            notice_key,
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


# Each lookup below also asks for the event's recipient: a notice goes to one address, so an
# event about another one (a forwarded or mistagged message, a stray id) is not about this
# notice, and must neither mark it nor suppress anybody through it: it is an orphan.


def known_key(conn: sqlite3.Connection, key: str, email: str) -> str | None:
    row = conn.execute(
        "SELECT key FROM outbox WHERE key = ? AND email = ?", (key, email)
    ).fetchone()
    return str(row[0]) if row else None


def key_by_provider_message_id(
    conn: sqlite3.Connection, candidates: Sequence[str], email: str
) -> str | None:
    """The notice to ``email`` whose provider message id is the first of ``candidates`` found."""
    for candidate in candidates:
        row = conn.execute(
            "SELECT key FROM outbox WHERE provider_message_id = ? "
            "AND provider_message_id IS NOT NULL AND email = ? ORDER BY id LIMIT 1",
            (candidate, email),
        ).fetchone()
        if row:
            return str(row[0])
    return None


def key_by_message_id(conn: sqlite3.Connection, message_id: str, email: str) -> str | None:
    """The notice to ``email`` whose Message-ID header this is (pending rows were never sent)."""
    row = conn.execute(
        "SELECT key FROM outbox WHERE message_id = ? AND state != 'pending' AND email = ? "
        "ORDER BY id LIMIT 1",
        (message_id, email),
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
_FIGURES = (
    "delivered",
    "deferred",
    "bounced",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "rejected",
)


def figures(store: Store, until: datetime) -> dict[str, dict[str, Any]]:
    """Per migration id: notices sent, and how many of them had each kind of event (a notice
    delivered and then complained about counts in both), with rates over the notices sent —
    as the store knew them at ``until`` (sent by then, events recorded by then: a `status`
    under `--now` in the past does not count later ones).

    Counted live (not cached: events arrive between runs) by grouped queries over partial
    covering indexes of their own (the sent notices; the matched events), with no join: ~60 ms
    at 100k sent notices with one event each."""
    at = db_time(until)
    out: dict[str, dict[str, Any]] = {}
    for mid, n in store.conn.execute(
        "SELECT migration_id, count(*) FROM outbox INDEXED BY outbox_sent "
        "WHERE state = 'sent' AND sent_at <= ? GROUP BY migration_id",
        (at,),
    ):
        out[mid] = empty_figures() | {"sent": n}
    for mid, outcome, bounce_type, n in store.conn.execute(
        "SELECT migration_id, outcome, bounce_type, count(DISTINCT notice_key) "
        "FROM delivery_events WHERE migration_id IS NOT NULL AND recorded_at <= ? "
        "GROUP BY migration_id, outcome, bounce_type",
        (at,),
    ):
        entry = out.setdefault(mid, empty_figures())
        entry[f"bounced_{bounce_type}" if bounce_type else outcome] = n
    # A notice may bounce soft, then hard: counted once among the bounced (bounces are few).
    for mid, n in store.conn.execute(
        "SELECT migration_id, count(DISTINCT notice_key) FROM delivery_events "
        "WHERE migration_id IS NOT NULL AND outcome = 'bounced' AND recorded_at <= ? "
        "GROUP BY migration_id",
        (at,),
    ):
        out[mid]["bounced"] = n
    for entry in out.values():
        sent = entry["sent"]
        entry["rates"] = {k: (round(entry[k] / sent, 4) if sent else None) for k in RATE_KEYS}
    return out


def empty_figures() -> dict[str, Any]:
    """The delivery figures of a migration with nothing sent."""
    return {"sent": 0, **dict.fromkeys(_FIGURES, 0), "rates": dict.fromkeys(RATE_KEYS)}


def orphans(store: Store) -> int:
    """Events kept for notices this store does not know."""
    return int(store.scalar("SELECT count(*) FROM delivery_events WHERE notice_key IS NULL") or 0)
