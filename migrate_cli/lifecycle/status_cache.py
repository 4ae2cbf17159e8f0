"""Status figures kept current by the writers that can adjust them exactly.

`status` caches its figures in `status_cache`, one row per key (a migration's id and definition
hash, or '*' for the reachability figures), stamped with the `meta.data_version` they were
counted at; a row is used only while its version is the current one. Every write that may change
a figure bumps the version. Most writers stop there (the next `status` recounts, seconds at a
million accounts). The writers whose effect on the figures is known exactly — opt-in, opt-out and
enforcement — instead carry the current rows to the new version inside their own transaction,
with their deltas applied (`FiguresCarry`; a writer may also count one figure again inside its
transaction when that is cheaper than the delta). A row that cannot be adjusted is deleted
(recounted on the next `status`); rows of an older version are left alone (stale anyway).
`accounts import` recounts after its commit instead (`status.refresh_figures`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from migrate_cli.definitions.model import Migration, canonical_hash
from migrate_cli.store.db import bump_data_version

REACHABILITY_KEY = "*"
Figures = dict[str, Any]


def migration_key(m: Migration) -> str:
    """The status_cache key of a migration's figures (a changed definition is another key)."""
    return f"{m.id}:{canonical_hash(m)}"


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'data_version'").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class FiguresCarry:
    """Bump the data version once and carry the figures that were current, adjusted.

    Create it inside the writer's transaction, before the write; read a figure with
    ``current``, give its adjusted value with ``set`` (None: delete the row, `status` recounts
    it), and call ``commit`` once at the end of the transaction (still inside it). Rows not
    ``set`` are carried unchanged: the writer declares that it cannot change them. A writer
    using this must open its transaction with ``counts=False`` (one bump, by ``commit``).
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            raise RuntimeError("internal error: FiguresCarry outside a transaction")
        self.conn = conn
        self.before = _version(conn)
        self._adjusted: dict[str, Figures | None] = {}
        self._committed = False

    def current(self, key: str) -> Figures | None:
        """The figures of ``key`` as of now in this write (None: not cached at this version)."""
        if key in self._adjusted:
            body = self._adjusted[key]
            return dict(body) if body is not None else None
        row = self.conn.execute(
            "SELECT body FROM status_cache WHERE key = ? AND version = ?", (key, self.before)
        ).fetchone()
        if row is None:
            return None
        figures: Figures = json.loads(row[0])
        return figures

    def set(self, key: str, figures: Figures | None) -> None:
        self._adjusted[key] = None if figures is None else dict(figures)

    def commit(self) -> None:
        """Bump the data version and move the current rows to it (inside the transaction)."""
        if self._committed:
            raise RuntimeError("internal error: figures carried twice")
        self._committed = True
        conn = self.conn
        bump_data_version(conn)
        after = _version(conn)
        for key, figures in self._adjusted.items():
            if figures is None or any(
                isinstance(v, int) and v < 0 for v in figures.values()
            ):  # a negative count: the row was not what we thought; recount it
                conn.execute(
                    "DELETE FROM status_cache WHERE key = ? AND version = ?", (key, self.before)
                )
            else:
                conn.execute(
                    "UPDATE status_cache SET version = ?, body = ? WHERE key = ? AND version = ?",
                    (after, json.dumps(figures), key, self.before),
                )
        conn.execute("UPDATE status_cache SET version = ? WHERE version = ?", (after, self.before))
