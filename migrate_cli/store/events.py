"""Enrollment-change events: recorded with the change, and every delivery state they go through."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from migrate_cli.store.db import Store, db_time, parse_db_time
from migrate_cli.timeutil import iso

EVENT_TYPE = "enrollment.changed"
PENDING = "pending"
DELIVERED = "delivered"

_COLUMNS = (
    "seq, id_prefix || '-' || seq, migration_id, account_id, sequence, state, previous_state, effective_at, "
    "recorded_at, reason, actor, attempts, failing_since, next_attempt_at"
)


def record(
    conn: sqlite3.Connection,
    migration_id: str,
    changes_sql: str,
    params: Any = (),
    *,
    now: datetime,
    actor: str,
    reason: str | None,
    effective_at: str | None = None,
) -> int:
    """Append one event per row of `changes_sql` (columns: account id, state, previous state),
    inside the caller's transaction, so a change is never recorded without its event.

    `effective_at` is an SQL expression over the row (alias ``c``) when the change took effect
    before it was recorded (an auto-enrolment takes effect when the account was created).
    """
    stamp = db_time(now)
    effective = effective_at or "?"
    effective_params = [] if effective_at else [stamp]
    # seq follows account order within one change, so a replay of the same store is identical.
    prefix = secrets.token_hex(8)
    return conn.execute(
        "INSERT INTO events(id_prefix, migration_id, account_id, sequence, state, previous_state, "
        "effective_at, recorded_at, reason, actor) "
        "SELECT ?, ?, c.account_id, "
        "COALESCE((SELECT max(x.sequence) FROM events x WHERE x.migration_id = ? "
        "AND x.account_id = c.account_id), 0) + 1, "
        f"c.state, c.previous_state, {effective}, ?, ?, ? "
        f"FROM ({changes_sql}) c ORDER BY c.account_id",
        [prefix, migration_id, migration_id, *effective_params, stamp, reason, actor, *params],
    ).rowcount


def record_extension(
    conn: sqlite3.Connection,
    migration_id: str,
    account_id: str,
    *,
    until: date,
    state: str,
    now: datetime,
    actor: str,
    reason: str,
) -> int:
    """The hook for `migctl extend` (issue 13): an extension keeps the account's state but
    moves its date, and the platform hears of it like of any other enrollment change."""
    return record(
        conn,
        migration_id,
        "SELECT ? AS account_id, ? AS state, ? AS previous_state",
        [account_id, state, state],
        now=now,
        actor=actor,
        reason=f"extended until {until.isoformat()}: {reason}",
    )


@dataclass(frozen=True)
class Event:
    """One stored event and where its delivery stands."""

    seq: int
    id: str
    migration_id: str
    account_id: str
    sequence: int
    state: str
    previous_state: str | None
    effective_at: str
    recorded_at: str
    reason: str | None
    actor: str
    attempts: int
    failing_since: str | None
    next_attempt_at: str | None

    def to_json(self) -> dict[str, Any]:
        """The event as the platform receives it (docs/platform.md)."""
        return {
            "id": self.id,
            "type": EVENT_TYPE,
            "migration": self.migration_id,
            "account": self.account_id,
            "sequence": self.sequence,
            "state": self.state,
            "previous_state": self.previous_state,
            "effective_at": iso(parse_db_time(self.effective_at)),
            "recorded_at": iso(parse_db_time(self.recorded_at)),
            "reason": self.reason,
            "actor": self.actor,
        }


def head(store: Store, limit: int) -> list[Event]:
    """The oldest undelivered events, in recording order: the next batch to send."""
    cur = store.conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE delivery = 'pending' ORDER BY seq LIMIT ?",
        (limit,),
    )
    return [Event(*row) for row in cur]


def delivered(store: Store, seqs: list[int], now: datetime) -> None:
    """The receiver answered 2xx for these events."""
    with store.transaction(counts=False) as conn:
        conn.executemany(
            "UPDATE events SET delivery = 'delivered', delivered_at = ?, attempts = attempts + 1, "
            "failing_since = NULL, next_attempt_at = NULL, last_error = NULL WHERE seq = ?",
            ((db_time(now), s) for s in seqs),
        )


def failed(
    store: Store, seqs: list[int], now: datetime, error: str, retry_at: datetime | None
) -> datetime:
    """A delivery attempt failed; the events stay pending. Returns when this failure streak
    began (the first failure of the head event)."""
    with store.transaction(counts=False) as conn:
        conn.executemany(
            "UPDATE events SET attempts = attempts + 1, failing_since = COALESCE(failing_since, ?), "
            "next_attempt_at = ?, last_error = ? WHERE seq = ?",
            ((db_time(now), db_time(retry_at) if retry_at else None, error[:500], s) for s in seqs),
        )
        since = conn.execute("SELECT failing_since FROM events WHERE seq = ?", (seqs[0],))
        return parse_db_time(since.fetchone()[0])


def replay(store: Store, since: datetime) -> int:
    """Mark the delivered events recorded at or after `since` for delivery again (a receiver
    that lost its data); they keep their ids, sequences and place in the order."""
    with store.transaction(counts=False) as conn:
        return conn.execute(
            "UPDATE events SET delivery = 'pending', delivered_at = NULL "
            "WHERE delivery = 'delivered' AND recorded_at >= ?",
            (db_time(since),),
        ).rowcount


def summary(store: Store, now: datetime) -> dict[str, Any]:
    """Pending, delivered and failing events, and the oldest undelivered one."""
    pending, failing, oldest = store.conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE attempts > 0), min(recorded_at) "
        "FROM events WHERE delivery = 'pending'"
    ).fetchone()
    total = store.scalar("SELECT count(*) FROM events")
    last_error = store.scalar(
        "SELECT last_error FROM events WHERE delivery = 'pending' ORDER BY seq LIMIT 1"
    )
    oldest_at = parse_db_time(oldest) if oldest else None
    return {
        "pending": pending,
        "delivered": int(total) - pending,
        "failing": failing,
        "oldest": iso(oldest_at) if oldest_at else None,
        "oldest_age_seconds": (
            max(0, int((now - oldest_at).total_seconds())) if oldest_at else None
        ),
        "last_error": last_error,
    }


def last_sequences(store: Store, migration_id: str) -> Iterator[tuple[str, int]]:
    """(account, last event sequence) for one migration, in account order."""
    yield from store.conn.execute(
        "SELECT account_id, max(sequence) FROM events WHERE migration_id = ? "
        "GROUP BY account_id ORDER BY account_id",
        (migration_id,),
    )


def all_events(store: Store) -> Iterator[dict[str, Any]]:
    """Every event in recording order, as the platform receives them."""
    cur = store.conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq")
    for row in cur:
        yield Event(*row).to_json()
