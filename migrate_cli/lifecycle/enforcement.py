"""Enforcement: switch every remaining pending account once its mandatory instant has passed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from migrate_cli.errors import InputError, MigctlError, RuleError, UsageError
from migrate_cli.lifecycle import status_figures
from migrate_cli.lifecycle.enrollment import ENFORCED, pending_accounts_sql
from migrate_cli.lifecycle.phases import ALL_SCOPE, mandatory_instant, scopes
from migrate_cli.progress import NO_PROGRESS, Progress
from migrate_cli.store import events
from migrate_cli.store.db import Store, audit, db_time
from migrate_cli.store.outbox import enqueue_enforced
from migrate_cli.store.stored_migrations import (
    Hold,
    StoredMigration,
    get_migration,
    load_catalog,
    store_timezone,
)
from migrate_cli.timeutil import iso


def enforcement_batch(scope: str, deadline: date | None, late: str | None = None) -> str:
    """The name of one enforcement batch, also the slot of its `enforced` notices (the date
    stays last)."""
    tail = deadline.isoformat() if deadline else "immediate"
    return f"enforced-{scope}-late{late}-{tail}" if late else f"enforced-{scope}-{tail}"


@dataclass(frozen=True)
class Enforcement:
    """One batch to switch: a migration's scope (all accounts or one plan) that is due."""

    migration_id: str
    scope: str
    deadline: date | None
    accounts: int | None  # None: not counted before switching (see due_enforcements)
    admins: int | None  # None: not counted (cron runs skip it)
    immediate: bool = False
    # Set for accounts switched after their scope was already enforced (imported late): their
    # administrators get an `enforced` notice of their own, even if they had the first one.
    late: str | None = None

    @property
    def batch(self) -> str:
        return enforcement_batch(self.scope, None if self.immediate else self.deadline, self.late)

    def to_json(self) -> dict[str, Any]:
        return {
            "migration": self.migration_id,
            "scope": self.scope,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "accounts": self.accounts,
            "admins": self.admins,
            "immediate": self.immediate,
        }


@dataclass
class EnforceReport:
    batches: list[Enforcement] = field(default_factory=list)
    notices: int = 0
    suppressed: int = 0  # `enforced` notices not queued because the address is suppressed

    def by_migration(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.batches:
            out[b.migration_id] = out.get(b.migration_id, 0) + (b.accounts or 0)
        return out


def _scope_sql(
    sm: StoredMigration, tz: tzinfo, scope: str, now: datetime | None
) -> tuple[str, list[Any]]:
    """The pending accounts of a scope that are due at `now` (None: immediately, everyone)."""
    sql, params = pending_accounts_sql(sm.migration, tz)
    if scope != ALL_SCOPE:
        sql += " AND a.plan = ?"
        params = [*params, scope]
    if now is not None:
        # An extended account waits for its own date (rule 3b); once that passes, the scope's
        # next run switches it as a late batch.
        sql += (
            " AND NOT EXISTS (SELECT 1 FROM extensions x WHERE x.migration_id = ? "
            "AND x.account_id = a.id AND x.until > ?)"
        )
        params = [*params, sm.id, now.astimezone(tz).date().isoformat()]
    return sql, params


def _count(store: Store, sql: str, params: list[Any], with_admins: bool) -> tuple[int, int | None]:
    n = int(store.scalar(f"SELECT count(*) FROM ({sql})", params))
    if not with_admins or not n:
        return n, 0 if not n else None
    # Only for display (dry runs, the confirmation valve): a cron run does not pay for it.
    admins = store.scalar(
        f"SELECT count(*) FROM (SELECT x.email FROM ({sql}) q "
        "CROSS JOIN account_admins x ON x.account_id = q.id GROUP BY x.email)",
        params,
    )
    return n, int(admins or 0)


def due_enforcements(
    store: Store,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    only: str | None = None,
    *,
    with_admins: bool = True,
    counted: bool = True,
) -> list[Enforcement]:
    """What `enforce` would switch now (read-only). TBD scopes are never due.

    ``counted=False`` (a run that will not show or confirm the numbers before switching): a
    scope enforced for the first time is not counted (its `accounts` is None; the enforcement
    reports what it switched), and a scope enforced before is only checked for any pending
    account. Counting scans every account of the audience, 0.6 s at a million.
    """
    out: list[Enforcement] = []
    for sm in catalog:
        if sm.status != "active" or (only is not None and sm.id != only):
            continue
        # Enforced at once for everyone: an account that joins the audience later (imported,
        # re-opened, moved to another plan, TBD or not) is due at once, as a late batch.
        after_immediate = sm.enforced_immediately
        candidates = [(ALL_SCOPE, None)] if after_immediate else scopes(sm.migration)
        for scope, deadline in candidates:
            if not after_immediate and (deadline is None or now < mandatory_instant(deadline, tz)):
                continue  # never a second early
            immediate = after_immediate or sm.migration.immediate_by_definition
            sql, params = _scope_sql(sm, tz, scope, None if after_immediate else now)
            first_time = scope not in sm.enforced_scopes and ALL_SCOPE not in sm.enforced_scopes
            n: int | None = None
            admins: int | None = None
            if counted:
                n, admins = _count(store, sql, params, with_admins)
                pending = bool(n)
            else:
                pending = first_time or bool(store.scalar(f"SELECT EXISTS ({sql})", params))
            # Accounts imported after an enforcement are still pending: a later run catches them.
            if pending or first_time:
                late = None if first_time else now.strftime("%Y%m%dT%H%M%S")
                out.append(Enforcement(sm.id, scope, deadline, n, admins, immediate, late))
    return out


def immediate_enforcement(store: Store, sm: StoredMigration, tz: tzinfo) -> Enforcement:
    n, admins = _count(store, *_scope_sql(sm, tz, ALL_SCOPE, None), True)
    return Enforcement(sm.id, ALL_SCOPE, None, n, admins, immediate=True)


def apply_enforcements(
    store: Store,
    catalog: list[StoredMigration],
    tz: tzinfo,
    now: datetime,
    batches: list[Enforcement],
    *,
    actor: str,
    from_addr: str,
    reason: str | None = None,
) -> EnforceReport:
    """Switch each batch in one transaction per migration; enqueue the `enforced` notices."""
    report = EnforceReport()
    by_id = {sm.id: sm for sm in catalog}
    stamp = db_time(now)
    for migration_id in dict.fromkeys(b.migration_id for b in batches):
        sm = by_id[migration_id]
        # counts=False: the status figures' Carry bumps the data version once and keeps them
        # current (pending -> enforced), so the next `status` does not recount them.
        with store.transaction(counts=False) as conn:
            carry = status_figures.Carry(store, conn)
            wrote = False
            for b in (x for x in batches if x.migration_id == migration_id):
                if not b.immediate and (
                    b.deadline is None or now < mandatory_instant(b.deadline, tz)
                ):
                    raise RuleError(f"internal check: {b.migration_id}/{b.scope} is not due")
                sql, params = _scope_sql(sm, tz, b.scope, None if b.immediate else now)
                # One audit event per account switched, written from the same pending set as the
                # switch itself (same transaction). Selecting the audit rows back from
                # `enrollments` by (batch, changed_at) would re-audit the accounts of an earlier
                # run of the same batch at the same instant (a repeated `--now` rehearsal).
                detail = {"batch": b.batch, "immediate": b.immediate}
                if reason:
                    detail["reason"] = reason
                # The pending set is computed once (a scan of every account) for both inserts and
                # the notices, kept in account order (the order of the indexes they go into).
                conn.execute("DROP TABLE IF EXISTS temp.enforce_ids")
                conn.execute("CREATE TEMP TABLE enforce_ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
                conn.execute(f"INSERT INTO temp.enforce_ids SELECT p.id FROM ({sql}) p", params)
                # A batch name used before (a late batch run again at the same instant, a
                # repeated `--immediately`) has accounts of the earlier run: its notices then
                # read the whole batch back from `enrollments`. Otherwise the batch is exactly
                # the accounts switched here, all active, and the notices are built from them.
                reused = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM enrollments WHERE migration_id = ? AND batch = ?)",
                    (migration_id, b.batch),
                ).fetchone()[0]
                known = None if reused else "temp.enforce_ids"
                conn.execute(
                    "INSERT INTO audit(at, actor, action, migration_id, account_id, detail) "
                    "SELECT ?, ?, 'enrollment.enforced', ?, id, ? FROM temp.enforce_ids",
                    [stamp, actor, migration_id, json.dumps(detail, sort_keys=True)],
                )
                cur = conn.execute(
                    "INSERT INTO enrollments(migration_id, account_id, state, changed_at, actor, reason, batch) "
                    "SELECT ?, id, 'enforced', ?, ?, ?, ? FROM temp.enforce_ids",
                    [migration_id, stamp, actor, reason, b.batch],
                )
                switched = cur.rowcount
                events.record(
                    conn,
                    migration_id,
                    "SELECT id AS account_id, 'enforced' AS state, 'pending' AS previous_state "
                    "FROM temp.enforce_ids",
                    now=now,
                    actor=actor,
                    reason=reason or f"enforcement {b.batch}",
                )
                if switched:
                    wrote = True
                    carry.left_pending(sm.migration, tz, "temp.enforce_ids", ENFORCED, switched)
                already = b.scope in sm.enforced_scopes or ALL_SCOPE in sm.enforced_scopes
                if switched == 0 and already:
                    # Nothing left to switch in a scope already enforced (e.g. a repeated
                    # `--immediately`): a second enforcement changes nothing, not even the log.
                    conn.execute("DROP TABLE temp.enforce_ids")
                    continue
                wrote = True
                conn.execute(
                    "INSERT INTO enforcements(migration_id, scope, deadline, at, accounts, actor, reason, immediate) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(migration_id, scope) DO UPDATE SET "
                    "accounts = accounts + excluded.accounts",
                    [
                        migration_id,
                        b.scope,
                        b.deadline.isoformat() if b.deadline else None,
                        stamp,
                        switched,
                        actor,
                        reason,
                        int(b.immediate),
                    ],
                )
                if b.immediate and reason:
                    conn.execute(
                        "UPDATE migrations SET immediate_at = ?, immediate_reason = ? WHERE id = ?",
                        (stamp, reason, migration_id),
                    )
                audit(
                    conn,
                    at=now,
                    actor=actor,
                    action="migration.enforced",
                    migration_id=migration_id,
                    detail={
                        "scope": b.scope,
                        "accounts": switched,
                        "immediate": b.immediate,
                        "reason": reason,
                        "deadline": b.deadline.isoformat() if b.deadline else None,
                    },
                )
                # Same transaction: an enforcement is never recorded without its notices.
                queued, suppressed = enqueue_enforced(
                    conn,
                    migration_id=migration_id,
                    batch=b.batch,
                    schedule_version=sm.schedule_version,
                    deadline=None if b.immediate else b.deadline,
                    why=(
                        "emergency change enforced immediately"
                        if b.immediate
                        else "the mandatory date passed"
                    ),
                    now=now,
                    from_addr=from_addr,
                    accounts=known,
                )
                conn.execute("DROP TABLE temp.enforce_ids")
                # One `enforced` notice per administrator: what was queued counts them.
                admins = queued + suppressed
                report.batches.append(
                    Enforcement(
                        b.migration_id, b.scope, b.deadline, switched, admins, b.immediate, b.late
                    )
                )
                report.notices += queued
                report.suppressed += suppressed
            if wrote:
                carry.commit()
    return report


class NotConfirmed(MigctlError):
    """The operator did not confirm a large enforcement: nothing was switched."""


@dataclass(frozen=True)
class ConfirmPolicy:
    """The confirmation valve: a person at a terminal confirms a batch above `limit` accounts.

    With nobody to answer (cron, CI, a pipe) or with --yes, enforcement proceeds: a large
    enforcement is never stuck on a prompt. Only when a question may be asked are the accounts
    counted before switching (a scan of every account); otherwise the report gives what the
    enforcement switched.
    """

    limit: int
    yes: bool = False
    interactive: bool = False  # stdin and stdout are terminals: someone can answer

    @property
    def may_ask(self) -> bool:
        return self.interactive and not self.yes

    def must_ask(self, accounts: int) -> bool:
        return self.may_ask and accounts > self.limit

    @staticmethod
    def question(accounts: int) -> str:
        return f"Switch {accounts} account(s) now? [y/N]"

    @staticmethod
    def accepts(answer: str) -> bool:
        """Only a yes switches; anything else (nothing, no, a typo, end of input) does not."""
        return answer.strip().lower() in ("y", "yes")


# Shows the batches about to be switched and the question; returns the operator's answer.
Ask = Callable[[list[Enforcement], str], str]


@dataclass
class EnforceOutcome:
    """What `enforce` found due and, unless a dry run, what it switched."""

    now: datetime
    dry_run: bool
    batches: list[Enforcement]  # switched (counted), or due when nothing was switched
    report: EnforceReport | None = None  # None: nothing was switched (dry run, nothing due)
    held: list[tuple[str, Hold]] = field(default_factory=list)  # (migration, hold) not yet due

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "now": iso(self.now),
            "dry_run": self.dry_run,
            "batches": [b.to_json() for b in self.batches],
            "enforced": {},
            "held": [{"migration": mid, **h.to_json()} for mid, h in self.held],
        }
        if self.dry_run:
            doc["enforced"] = EnforceReport(batches=self.batches).by_migration()
        if self.report is not None:
            doc["enforced"] = self.report.by_migration()
            doc["notices_queued"] = self.report.notices
        return doc


def enforce(
    store: Store,
    now: datetime,
    *,
    only: str | None = None,
    immediately: bool = False,
    reason: str | None = None,
    dry_run: bool = False,
    actor: str,
    from_addr: str,
    policy: ConfirmPolicy,
    ask: Ask | None = None,
    progress: Progress = NO_PROGRESS,
) -> EnforceOutcome:
    """Switch what is due (or, `immediately`, one migration before its date, with a reason);
    a dry run counts and writes nothing. The caller holds the store lock."""
    reason = reason.strip() if reason else None
    if immediately and (not only or not reason):
        raise UsageError("--immediately needs a MIGRATION and a --reason (it is recorded)")
    tz = store_timezone(store)
    catalog = load_catalog(store)
    if only is not None and get_migration(store, only).status != "active":
        raise InputError([], f"{only} is retired; nothing to enforce")
    if immediately:
        assert only is not None
        batches = [immediate_enforcement(store, get_migration(store, only), tz)]
    else:
        counted = dry_run or policy.may_ask
        batches = due_enforcements(
            store, catalog, tz, now, only, with_admins=dry_run, counted=counted
        )
    held = [
        (sm.id, h)
        for sm in catalog
        if (only is None or sm.id == only) and not immediately
        for h in sm.active_holds(now)
    ]
    if dry_run or not batches:
        return EnforceOutcome(now, dry_run, batches, held=held)
    total = sum(b.accounts or 0 for b in batches)
    if policy.must_ask(total):
        assert ask is not None, "a policy that may ask needs someone to ask"
        if not policy.accepts(ask(batches, policy.question(total))):
            raise NotConfirmed("not confirmed: nothing was switched")
    progress.phase("enforcing", total or None)  # one transaction: the bar shows it is at work
    report = apply_enforcements(
        store, catalog, tz, now, batches, actor=actor, from_addr=from_addr, reason=reason
    )
    return EnforceOutcome(now, dry_run, report.batches, report, held=held)
