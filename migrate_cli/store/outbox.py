"""The outbox: one row per notice, keyed for idempotency; every change of a notice's state."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from migrate_cli.errors import NotFoundError, RuleError
from migrate_cli.store import deliveries
from migrate_cli.store.db import Store, audit, db_time, parse_db_time
from migrate_cli.vocabulary import NoticeState, choices

STATES = choices(NoticeState)
BATCH = 2_000  # rows per executemany while queuing


@dataclass(frozen=True)
class PlannedNotice:
    """One notice due now, with the reason an operator can read."""

    migration_id: str
    email: str
    kind: str
    slot: str
    account_ids: tuple[str, ...]
    deadline: date | None
    days_left: int | None
    why: str
    schedule_version: int
    suppressed: bool = False
    # JSON of the accounts, in any order (dispatch sorts and cuts it): [[id, name, plan, own
    # date, [own dates under earlier schedules]], ...]; a schedule change's holds the one own
    # date its administrator was told of instead of the list (planning.told_before).
    listed: str | None = None

    @property
    def key(self) -> str:
        return notice_key(self.migration_id, self.email, self.kind, self.slot)


def notice_key(migration_id: str, email: str, kind: str, slot: str) -> str:
    """The idempotency key: one notice per (migration, administrator, kind, slot), ever."""
    return f"{migration_id}|{email}|{kind}|{slot}"


def message_id(key: str, from_addr: str) -> str:
    """A Message-ID derived from the key, so a resend (never intended) would be recognisable."""
    return f"<migctl.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{_id_domain(from_addr)}>"


@lru_cache(maxsize=64)  # one sender per run: parsed once, not once per notice
def _id_domain(from_addr: str) -> str:
    return from_addr.rsplit("@", 1)[-1].strip(" >") or "migctl.invalid"


# --------------------------------------------------------------------------- queue


@dataclass
class EnqueueReport:
    enqueued: int = 0
    suppressed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


_INSERT = (
    "INSERT INTO outbox(key, migration_id, email, kind, slot, state, "
    "schedule_version, accounts, accounts_count, deadline, why, message_id, "
    "created_at, updated_at, listed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET state = excluded.state, "
    "schedule_version = excluded.schedule_version, accounts = excluded.accounts, "
    "accounts_count = excluded.accounts_count, deadline = excluded.deadline, "
    "why = excluded.why, created_at = excluded.created_at, "
    "updated_at = excluded.updated_at, listed = excluded.listed "
    "WHERE outbox.state = 'suppressed' AND excluded.state = 'pending'"
)


def enqueue(
    conn: sqlite3.Connection,
    notices: Iterable[PlannedNotice],
    *,
    now: datetime,
    from_addr: str,
) -> EnqueueReport:
    """Insert planned notices; an existing key is never duplicated. Counts what was written.

    An existing key is left alone, except a `suppressed` row whose address is no longer
    suppressed: that notice was never sent, so it becomes pending (a new notice, dated now).
    Without this, the planner proposes it forever (the administrator's only row is suppressed,
    so they "never had a notice") and nothing is ever sent to them again.
    """
    report = EnqueueReport()
    stamp = db_time(now)
    # One batch per (kind, suppressed): total_changes then counts exactly the rows written of
    # each, leaving out keys that already existed.
    batches: dict[tuple[str, bool], list[tuple[Any, ...]]] = {}

    def flush(group: tuple[str, bool]) -> None:
        rows = batches.pop(group, [])
        if not rows:
            return
        before = conn.total_changes
        conn.executemany(_INSERT, rows)
        written = conn.total_changes - before
        if group[1]:
            report.suppressed += written
        elif written:
            report.enqueued += written
            report.by_kind[group[0]] = report.by_kind.get(group[0], 0) + written

    for n in notices:
        group = (n.kind, n.suppressed)
        rows = batches.setdefault(group, [])
        rows.append(
            (
                n.key,
                n.migration_id,
                n.email,
                n.kind,
                n.slot,
                NoticeState.SUPPRESSED if n.suppressed else NoticeState.PENDING,
                n.schedule_version,
                json.dumps(list(n.account_ids), separators=(",", ":")),
                len(n.account_ids),
                n.deadline.isoformat() if n.deadline else None,
                n.why,
                message_id(n.key, from_addr),
                stamp,
                stamp,
                n.listed,
            )
        )
        if len(rows) >= BATCH:
            flush(group)
    for group in list(batches):
        flush(group)
    return report


def enqueue_enforced(
    conn: sqlite3.Connection,
    *,
    migration_id: str,
    batch: str,
    schedule_version: int,
    deadline: date | None,
    why: str,
    now: datetime,
    from_addr: str,
    accounts: str | None = None,
) -> tuple[int, int]:
    """Queue one `enforced` notice per administrator of an enforcement batch, in SQL.

    Called in the enforcement's own transaction, so a batch is never recorded without its
    notices. ``accounts``: a table (column `id`, in account order) holding exactly the batch's
    accounts, all active, when the caller has it (the enforcement that just switched them);
    otherwise they are read back from `enrollments`. Returns (queued to send, suppressed).
    """
    stamp = db_time(now)
    conn.create_function(
        "migctl_message_id", 1, lambda key: message_id(key, from_addr), deterministic=True
    )
    # ON CONFLICT(key) only: a row already queued for this key stays as it is, while any other
    # constraint failure is an error (OR IGNORE would silently drop rows).
    cur = conn.execute(
        "INSERT INTO outbox(key, migration_id, email, kind, slot, state, schedule_version, "
        "accounts, accounts_count, deadline, why, message_id, created_at, updated_at) "
        "SELECT g.key, ?, g.email, 'enforced', ?, "
        "CASE WHEN s.email IS NULL THEN 'pending' ELSE 'suppressed' END, ?, g.ids, g.n, ?, "
        "? || '; ' || g.n || ' account(s) switched', migctl_message_id(g.key), ?, ? FROM ("
        "  SELECT ? || '|' || x.email || '|enforced|' || ? AS key, x.email AS email, "
        "  json_group_array(e.account_id) AS ids, count(*) AS n FROM "
        + (
            f"  (SELECT id AS account_id FROM {accounts}) e "
            "  CROSS JOIN account_admins x ON x.account_id = e.account_id "
            if accounts
            else "  (SELECT account_id FROM enrollments WHERE migration_id = ? "
            "   AND state = 'enforced' AND batch = ? ORDER BY account_id) e "
            "  CROSS JOIN account_admins x ON x.account_id = e.account_id "
            "  JOIN accounts a ON a.id = e.account_id AND a.status = 'active' "
        )
        + "  GROUP BY x.email"
        ") g LEFT JOIN suppressions s ON s.email = g.email WHERE true "
        "ON CONFLICT(key) DO NOTHING",
        (
            migration_id,
            batch,
            schedule_version,
            deadline.isoformat() if deadline else None,
            why,
            stamp,
            stamp,
            migration_id,
            batch,
            *(() if accounts else (migration_id, batch)),
        ),
    )
    queued = cur.rowcount
    suppressed = conn.execute(
        "SELECT count(*) FROM outbox WHERE migration_id = ? AND kind = 'enforced' AND slot = ? "
        "AND state = 'suppressed' AND created_at = ?",
        (migration_id, batch, stamp),
    ).fetchone()[0]
    return queued - suppressed, suppressed


# --------------------------------------------------------------------------- send


def sweep(store: Store, *, now: datetime, run_at: datetime) -> int:
    """Before sending, drop what must no longer go out, without losing track of it.

    Rows waiting from an earlier run (quota reached, retry later, `outbox retry`) may be
    addressed to someone suppressed since, or be about accounts that have all migrated
    since (SPEC rule 5: no more mail then). They become `suppressed` with the reason in
    `last_error`; `enforced` notices always go out. Rows queued by this run (``run_at``) were
    planned from the current state and are left alone. Returns how many were dropped.
    """
    stamp = db_time(now)
    with store.transaction(counts=False) as conn:
        muted = conn.execute(
            "UPDATE outbox SET state = 'suppressed', error_code = 'suppressed', "
            "last_error = 'not sent: the address is suppressed', updated_at = ? "
            "WHERE state = 'pending' AND email IN (SELECT email FROM suppressions)",
            (stamp,),
        ).rowcount
        stale = conn.execute(
            "UPDATE outbox SET state = 'suppressed', error_code = 'superseded', "
            "last_error = 'not sent: every account it was about has migrated', "
            "updated_at = ? WHERE state = 'pending' AND kind != 'enforced' "
            "AND created_at != ? AND NOT EXISTS (SELECT 1 FROM json_each(outbox.accounts) j "
            "JOIN accounts a ON a.id = j.value AND a.status = 'active' WHERE NOT EXISTS "
            "(SELECT 1 FROM enrollments e WHERE e.migration_id = outbox.migration_id "
            "AND e.account_id = j.value))",
            (stamp, db_time(run_at)),
        ).rowcount
    return int(muted + stale)


def sends_since(store: Store, since: datetime) -> int:
    """Recipients sent to since ``since`` (the daily quota's rolling window)."""
    return int(
        store.scalar(
            "SELECT coalesce(sum(recipients), 0) FROM sends WHERE at > ?", (db_time(since),)
        )
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed notice; ``settle`` records it.

    ``state`` is where the row goes: SENT; FAILED (``suppress``: also suppress the address,
    with that source); IN_DOUBT; PENDING, either for a retry at ``retry_at`` after a transient
    failure (``transient``: the row's `failing_since` starts now unless it already runs) or
    handed back untried (``untried``: the attempt the claim counted is taken back).
    """

    row: sqlite3.Row
    state: NoticeState
    provider_message_id: str | None = None
    error: str | None = None
    code: str | None = None
    retry_at: datetime | None = None
    untried: bool = False
    suppress: str | None = None
    transient: bool = False  # PENDING after a transient failure: starts its `failing_since`


def claim(
    store: Store,
    *,
    only: str | None,
    limit: int,
    provider: str,
    now: datetime,
    settle_first: list[Outcome] | None = None,
    count_sends: bool = False,
    exclude: set[int] | frozenset[int] = frozenset(),
) -> list[tuple[sqlite3.Row, int]]:
    """Mark the next due pending rows `sending`, before any of them is handed to a provider.

    Returns each claimed row with its attempt number. A kill after this commit leaves the rows
    in `sending`, which the next run marks in doubt: a notice is never sent twice.
    ``settle_first``: outcomes of the previous batch, recorded in the same transaction (one
    commit per batch instead of two). ``exclude``: row ids this run no longer tries.
    """
    stamp = db_time(now)
    sql = (
        "UPDATE outbox SET state = 'sending', attempts = attempts + 1, provider = ?, "
        "updated_at = ? WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' "
        "AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
    )
    params: list[Any] = [provider, stamp, stamp]
    if only:
        sql += " AND migration_id = ?"
        params.append(only)
    sql += _excluding(exclude, params)
    sql += " ORDER BY id LIMIT ?) RETURNING *"
    params.append(limit)
    with store.transaction(counts=_suppresses(settle_first)) as conn:
        if settle_first:
            _settle_in(conn, settle_first, now, count_sends)
        if limit <= 0:
            return []
        cur = conn.execute(sql, params)
        cur.row_factory = sqlite3.Row
        rows = sorted(cur.fetchall(), key=lambda r: r["id"])  # RETURNING has no order
    return [(r, r["attempts"]) for r in rows]


def settle(store: Store, outcomes: list[Outcome], *, now: datetime, count_sends: bool) -> None:
    """Record a group of outcomes in one transaction."""
    if outcomes:
        with store.transaction(counts=_suppresses(outcomes)) as conn:
            _settle_in(conn, outcomes, now, count_sends)


def _suppresses(outcomes: list[Outcome] | None) -> bool:
    """Whether recording these outcomes adds a suppression, which `status` counts."""
    return any(o.suppress for o in outcomes or ())


def _settle_in(
    conn: sqlite3.Connection, outcomes: list[Outcome], now: datetime, count_sends: bool
) -> None:
    stamp = db_time(now)
    sent: list[tuple[Any, ...]] = []
    for o in outcomes:
        row_id = o.row["id"]
        if o.state is NoticeState.SENT:
            sent.append((o.provider_message_id, stamp, stamp, row_id))
            if count_sends:  # the daily quota's rolling window only matters then
                conn.execute("INSERT INTO sends(at, recipients) VALUES (?, 1)", (stamp,))
        elif o.state is NoticeState.PENDING:
            conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?, "
                "attempts = attempts - ?, last_error = coalesce(?, last_error), "
                "error_code = coalesce(?, error_code), updated_at = ?, "
                "failing_since = CASE WHEN ? THEN coalesce(failing_since, ?) "
                "ELSE failing_since END WHERE id = ?",
                (
                    db_time(o.retry_at) if o.retry_at else None,
                    1 if o.untried else 0,
                    o.error,
                    o.code,
                    stamp,
                    o.transient,
                    stamp,
                    row_id,
                ),
            )
        elif o.state in (NoticeState.FAILED, NoticeState.IN_DOUBT):
            conn.execute(
                "UPDATE outbox SET state = ?, last_error = ?, error_code = ?, updated_at = ? "
                "WHERE id = ?",
                (o.state.value, o.error, o.code, stamp, row_id),
            )
            if o.suppress:
                _suppress(conn, o, now, stamp)
        else:
            raise ValueError(f"internal error: a send cannot leave a notice {o.state}")
    conn.executemany(
        "UPDATE outbox SET state = 'sent', provider_message_id = ?, sent_at = ?, "
        "updated_at = ?, last_error = NULL, error_code = NULL, next_attempt_at = NULL, "
        "failing_since = NULL WHERE id = ?",
        sent,
    )


def _suppress(conn: sqlite3.Connection, o: Outcome, now: datetime, stamp: str) -> None:
    """A permanent rejection of the recipient: no more notices to that address."""
    conn.execute(
        "INSERT OR IGNORE INTO suppressions(email, reason, source, created_at) VALUES (?, ?, ?, ?)",
        (o.row["email"], o.error or "permanent failure", o.suppress, stamp),
    )
    audit(
        conn,
        at=now,
        actor="migctl",
        action="suppression.added",
        detail={"email": o.row["email"], "code": o.code, "key": o.row["key"]},
    )


def _excluding(ids: set[int] | frozenset[int], params: list[Any]) -> str:
    if not ids:
        return ""
    params.append(json.dumps(sorted(ids)))
    return " AND id NOT IN (SELECT value FROM json_each(?))"


def next_retry_at(
    store: Store, only: str | None, *, exclude: set[int] | frozenset[int] = frozenset()
) -> datetime | None:
    """The earliest next attempt of a pending notice waiting for one (not in ``exclude``)."""
    sql = (
        "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending' "
        "AND next_attempt_at IS NOT NULL"
    )
    params: list[Any] = []
    if only:
        sql += " AND migration_id = ?"
        params.append(only)
    sql += _excluding(exclude, params)
    nxt = store.scalar(sql, params)
    return parse_db_time(nxt) if nxt else None


def pending_count(store: Store, only: str | None = None) -> int:
    sql = "SELECT count(*) FROM outbox WHERE state = 'pending'"
    return int(store.scalar(sql + " AND migration_id = ?", (only,)) if only else store.scalar(sql))


# --------------------------------------------------------------------------- inspect, settle by hand


def recover_in_doubt(store: Store, *, now: datetime) -> int:
    """Rows left in `sending` by a killed run: their fate is unknown, so never resend them."""
    with store.transaction(counts=False) as conn:
        cur = conn.execute(
            "UPDATE outbox SET state = 'in_doubt', updated_at = ?, "
            "last_error = 'the run was interrupted while sending; the provider may or may not "
            "have accepted it' WHERE state = 'sending'",
            (db_time(now),),
        )
        if cur.rowcount:
            audit(
                conn,
                at=now,
                actor="migctl",
                action="outbox.in_doubt",
                detail={"rows": cur.rowcount},
            )
        return cur.rowcount


def counts(store: Store) -> dict[str, int]:
    out = dict.fromkeys(STATES, 0)
    for r in store.query("SELECT state, count(*) AS n FROM outbox GROUP BY state"):
        out[r["state"]] = r["n"]
    return out


def list_rows(
    store: Store,
    *,
    state: str | None = None,
    migration_id: str | None = None,
    email: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if state:
        if state not in STATES:
            raise RuleError(f"unknown state {state!r}; choose one of {', '.join(STATES)}")
        where.append("state = ?")
        params.append(state)
    if migration_id:
        where.append("migration_id = ?")
        params.append(migration_id)
    if email:
        where.append("email = ?")
        params.append(email.strip().lower())
    sql = "SELECT * FROM outbox" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY id DESC LIMIT ?"
    rows = [row_json(r) for r in store.query(sql, [*params, limit])]
    # What the provider reported after accepting each (`feedback`): derived from its events.
    delivery = deliveries.outcomes(store, [r["key"] for r in rows])
    for r in rows:
        r["delivery"] = delivery.get(r["key"])
    return rows


def get_row(store: Store, row_id: int) -> sqlite3.Row:
    rows = store.query("SELECT * FROM outbox WHERE id = ?", (row_id,))
    if not rows:
        raise NotFoundError(f"no notice {row_id} in the outbox (see `migctl outbox list`)")
    return rows[0]


def row_json(r: sqlite3.Row) -> dict[str, Any]:
    keys = (
        "id",
        "key",
        "migration_id",
        "email",
        "kind",
        "slot",
        "state",
        "attempts",
        "provider",
        "provider_message_id",
        "last_error",
        "error_code",
        "created_at",
        "updated_at",
        "sent_at",
        "next_attempt_at",
        "failing_since",
        "accounts_count",
        "deadline",
        "why",
    )
    return {k: r[k] for k in keys}


def retry_failed(store: Store, *, now: datetime, actor: str, ids: list[int] | None = None) -> int:
    """failed → pending (after the operator fixed the cause); attempts start again."""
    with store.transaction(counts=False) as conn:
        sql = (
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = NULL, "
            "failing_since = NULL, updated_at = ? WHERE state = 'failed'"
        )
        params: list[Any] = [db_time(now)]
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        n = conn.execute(sql, params).rowcount
        audit(conn, at=now, actor=actor, action="outbox.retry", detail={"rows": n, "ids": ids})
        return n


def resolve(store: Store, row_id: int, *, sent: bool, now: datetime, actor: str) -> dict[str, Any]:
    """Settle an in_doubt row: --sent marks it sent; --not-sent puts it back to pending."""
    with store.transaction(counts=False) as conn:
        row = conn.execute("SELECT state, key FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no outbox row {row_id}")
        if row[0] != NoticeState.IN_DOUBT:
            raise RuleError(
                f"outbox row {row_id} is {row[0]}, not in_doubt; only in_doubt rows are resolved"
            )
        if sent:
            conn.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, updated_at = ? WHERE id = ?",
                (db_time(now), db_time(now), row_id),
            )
        else:
            conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = NULL, "
                "failing_since = NULL, updated_at = ? WHERE id = ?",
                (db_time(now), row_id),
            )
        audit(
            conn,
            at=now,
            actor=actor,
            action="outbox.resolved",
            detail={"id": row_id, "key": row[1], "as": "sent" if sent else "not_sent"},
        )
    return {"id": row_id, "state": str(NoticeState.SENT if sent else NoticeState.PENDING)}
