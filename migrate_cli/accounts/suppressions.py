"""The suppression list: addresses that get no notices (operator-added or after a hard bounce)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from migrate_cli.accounts.reading import normalise_email
from migrate_cli.errors import InputError, NotFoundError, Problem
from migrate_cli.store.db import Store, audit, db_time


def _address(email: str) -> str:
    try:
        return normalise_email(email)
    except ValueError as exc:
        raise InputError([Problem("email", None, None, str(exc))], "invalid address") from None


def add(store: Store, email: str, *, reason: str, source: str, now: datetime, actor: str) -> str:
    address = _address(email)
    with store.transaction() as conn:
        if not add_in(conn, address, reason=reason, source=source, now=now, actor=actor):
            return "already suppressed"
    return "suppressed"


def add_in(
    conn: sqlite3.Connection,
    address: str,
    *,
    reason: str,
    source: str,
    now: datetime,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Suppress a normalised address inside the caller's transaction, with its audit entry
    (``detail``: more to record, e.g. the delivery event). False if it already was."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO suppressions(email, reason, source, created_at) VALUES (?, ?, ?, ?)",
        (address, reason, source, db_time(now)),
    )
    if not cur.rowcount:
        return False
    audit(
        conn,
        at=now,
        actor=actor,
        action="suppression.added",
        detail={**(detail or {}), "email": address, "reason": reason, "source": source},
    )
    return True


def remove(store: Store, email: str, *, now: datetime, actor: str) -> None:
    address = _address(email)
    with store.transaction() as conn:
        if not conn.execute("DELETE FROM suppressions WHERE email = ?", (address,)).rowcount:
            raise NotFoundError(f"{address} is not suppressed")
        audit(conn, at=now, actor=actor, action="suppression.removed", detail={"email": address})


def list_all(store: Store) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in store.query(
            "SELECT email, reason, source, created_at FROM suppressions ORDER BY email"
        )
    ]
