"""Extensions: one account's own, later deadline in one migration (SPEC rule 3b)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from migrate_cli.errors import NotFoundError, RuleError, UsageError
from migrate_cli.lifecycle.enrollment import (
    PENDING,
    account_state,
    deadline_sql,
)
from migrate_cli.store import events
from migrate_cli.store.db import Store, audit, db_time
from migrate_cli.store.stored_migrations import StoredMigration


@dataclass(frozen=True)
class Extension:
    """An extension granted: the account's date before and after."""

    migration_id: str
    account_id: str
    previous: date
    until: date

    def to_json(self) -> dict[str, Any]:
        return {
            "migration": self.migration_id,
            "account": self.account_id,
            "previous_date": self.previous.isoformat(),
            "until": self.until.isoformat(),
        }


def extend(
    store: Store,
    sm: StoredMigration,
    tz: tzinfo,
    account_id: str,
    *,
    until: date,
    reason: str,
    now: datetime,
    actor: str,
) -> Extension:
    """Give one pending account a later date, with its audit and platform events, in one
    transaction; any refusal raises and nothing is written."""
    m = sm.migration
    reason = reason.strip()
    if not reason:
        raise UsageError("--reason must say why the account gets more time (it is recorded)")
    if sm.status == "retired":
        raise RuleError(f"{m.id} is retired; nothing to extend")
    deadline, dparams = deadline_sql(m)
    # counts=False: a date moves, no figure `status` caches does (extensions are read live).
    with store.transaction(counts=False) as conn:
        row = conn.execute(
            f"SELECT a.status, {deadline} FROM accounts a WHERE a.id = ?",
            [*dparams, account_id],
        ).fetchone()
        if row is None:
            raise NotFoundError(f"unknown account: {account_id}; nothing was changed")
        if row[0] == "closed":
            raise RuleError(f"{account_id} is closed; nothing was changed")
        state = account_state(store, m, tz, account_id)
        if state is None:
            raise RuleError(f"{account_id} is outside the audience of {m.id}; nothing was changed")
        if state != PENDING:
            raise RuleError(
                f"{account_id} is already switched in {m.id} ({state}); "
                "an extension only moves a pending account's date; nothing was changed"
            )
        if row[1] is None:
            raise RuleError(
                f"{m.id} has no date yet for {account_id} (TBD): there is nothing to extend; "
                "nothing was changed"
            )
        current = date.fromisoformat(row[1])
        if until <= current:
            raise RuleError(
                f"{account_id}'s date in {m.id} is already {current.isoformat()}; an extension "
                f"must be later than that, not {until.isoformat()}; nothing was changed"
            )
        conn.execute(
            "INSERT INTO extensions(migration_id, account_id, until, reason, actor, at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(migration_id, account_id) DO UPDATE SET "
            "until = excluded.until, reason = excluded.reason, actor = excluded.actor, "
            "at = excluded.at",
            (m.id, account_id, until.isoformat(), reason, actor, db_time(now)),
        )
        audit(
            conn,
            at=now,
            actor=actor,
            action="enrollment.extended",
            migration_id=m.id,
            account_id=account_id,
            detail={"from": current.isoformat(), "until": until.isoformat(), "reason": reason},
        )
        events.record_extension(
            conn, m.id, account_id, until=until, state=state, now=now, actor=actor, reason=reason
        )
    return Extension(m.id, account_id, current, until)
