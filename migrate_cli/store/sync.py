"""Sync: upsert the definitions into the store, recording every change in the audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from migrate_cli.definitions.model import Definitions, canonical_hash
from migrate_cli.store.db import Store, audit, db_time
from migrate_cli.store.stored_migrations import (
    Hold,
    holds_of,
    recorded_dates,
    stored_definition,
)


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # id -> changed fields
    rescheduled: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def nothing_changed(self) -> bool:
        return not (self.added or self.changed or self.retired or self.revived)

    def to_json(self) -> dict[str, object]:
        return {
            "added": self.added,
            "changed": self.changed,
            "rescheduled": self.rescheduled,
            "retired": self.retired,
            "revived": self.revived,
            "unchanged": self.unchanged,
            "changed_anything": not self.nothing_changed,
        }


def sync(store: Store, defs: Definitions, *, now: datetime, actor: str) -> SyncReport:
    """Upsert every migration; retire the ones no longer defined. Idempotent."""
    report = SyncReport()
    existing = {r["id"]: r for r in store.query("SELECT * FROM migrations")}
    with store.transaction() as conn:
        if store.meta("timezone") != defs.timezone_name:
            if store.meta("timezone") is not None:
                audit(
                    conn,
                    at=now,
                    actor=actor,
                    action="timezone.changed",
                    detail={"from": store.meta("timezone"), "to": defs.timezone_name},
                )
                report.changed.setdefault("(defaults)", []).append("timezone")
            store.set_meta(conn, "timezone", defs.timezone_name)
        for m in defs.migrations:
            body = m.to_json()
            digest = canonical_hash(m)
            mandatory = json.dumps(body["mandatory_opt_in"])
            old = existing.get(m.id)
            if old is None:
                conn.execute(
                    "INSERT INTO migrations(id, title, severity, grace_period_start, "
                    "mandatory_opt_in, definition, definition_hash, status, synced_at, "
                    "dates_recorded) VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
                    (
                        m.id,
                        m.title,
                        m.severity,
                        body["grace_period_start"],
                        mandatory,
                        json.dumps(body, sort_keys=True),
                        digest,
                        db_time(now),
                        json.dumps(recorded_dates(m, None, None, now, defs.timezone)),
                    ),
                )
                audit(
                    conn,
                    at=now,
                    actor=actor,
                    action="migration.added",
                    migration_id=m.id,
                    detail={"definition": body},
                )
                report.added.append(m.id)
                continue
            if old["definition_hash"] == digest and old["status"] == "active":
                report.unchanged.append(m.id)
                continue
            before = json.loads(old["definition"])
            fields = sorted(k for k in body if before.get(k) != body[k])
            if old["status"] == "retired":
                report.revived.append(m.id)
                audit(conn, at=now, actor=actor, action="migration.revived", migration_id=m.id)
            schedule_moved = before.get("mandatory_opt_in") != body["mandatory_opt_in"]
            recorded = recorded_dates(
                m, stored_definition(old["definition"]), old["dates_recorded"], now, defs.timezone
            )
            conn.execute(
                "UPDATE migrations SET title = ?, severity = ?, grace_period_start = ?, "
                "mandatory_opt_in = ?, definition = ?, definition_hash = ?, status = 'active', "
                "retired_at = NULL, synced_at = ?, dates_recorded = ?, "
                "schedule_version = schedule_version + ?, "
                "schedule_changed_at = CASE WHEN ? THEN ? ELSE schedule_changed_at END, "
                "previous_mandatory_opt_in = CASE WHEN ? THEN ? ELSE previous_mandatory_opt_in END "
                "WHERE id = ?",
                (
                    m.title,
                    m.severity,
                    body["grace_period_start"],
                    mandatory,
                    json.dumps(body, sort_keys=True),
                    digest,
                    db_time(now),
                    json.dumps(recorded),
                    1 if schedule_moved else 0,
                    schedule_moved,
                    db_time(now),
                    schedule_moved,
                    old["mandatory_opt_in"],
                    m.id,
                ),
            )
            if fields:
                audit(
                    conn,
                    at=now,
                    actor=actor,
                    action="migration.changed",
                    migration_id=m.id,
                    detail={k: {"from": before.get(k), "to": body[k]} for k in fields},
                )
                report.changed[m.id] = fields
            if schedule_moved:
                audit(
                    conn,
                    at=now,
                    actor=actor,
                    action="migration.rescheduled",
                    migration_id=m.id,
                    detail={"from": before.get("mandatory_opt_in"), "to": body["mandatory_opt_in"]},
                )
                report.rescheduled.append(m.id)
        defined = set(defs.ids)
        for mid, old in existing.items():
            if mid not in defined and old["status"] == "active":
                conn.execute(
                    "UPDATE migrations SET status = 'retired', retired_at = ? WHERE id = ?",
                    (db_time(now), mid),
                )
                audit(conn, at=now, actor=actor, action="migration.retired", migration_id=mid)
                report.retired.append(mid)
        if store.meta("definitions_hash") != defs.source_hash:
            # Remembered so that `run` can skip re-reading an unchanged file.
            store.set_meta(conn, "definitions_hash", defs.source_hash)
    return report


def holds_after_sync(store: Store, defs: Definitions, now: datetime) -> list[tuple[str, Hold]]:
    """The dates a sync at ``now`` would leave held by min_notice (rule 3a); reads only.

    `validate` warns with it before a sync; `sync` after, from the same rule.
    """
    existing = {
        r["id"]: r for r in store.query("SELECT id, definition, dates_recorded FROM migrations")
    }
    enforced = {
        (r["migration_id"], r["scope"])
        for r in store.query("SELECT migration_id, scope FROM enforcements")
    }
    out: list[tuple[str, Hold]] = []
    for m in defs.migrations:
        old = existing.get(m.id)
        recorded = recorded_dates(
            m,
            stored_definition(old["definition"]) if old else None,
            old["dates_recorded"] if old else None,
            now,
            defs.timezone,
        )
        for scope, hold in holds_of(m, recorded, defs.timezone).items():
            if hold.active(now) and not {(m.id, scope), (m.id, "*")} & enforced:
                out.append((m.id, hold))
    return out
