"""The synced definitions as the store knows them (what every command other than sync reads)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import tzinfo

from migrate_cli.definitions.model import Migration, parse_definitions
from migrate_cli.definitions.yamlsafe import Located
from migrate_cli.errors import NotFoundError, did_you_mean
from migrate_cli.store.db import Store
from migrate_cli.timeutil import get_timezone


@dataclass(frozen=True)
class StoredMigration:
    """A migration plus its store-side state (retired, schedule version, enforcements)."""

    migration: Migration
    status: str
    schedule_version: int
    previous_mandatory: str | None
    enforced_scopes: frozenset[str]
    immediate_reason: str | None

    @property
    def id(self) -> str:
        return self.migration.id


def store_timezone(store: Store) -> tzinfo:
    return get_timezone(store.meta("timezone") or "UTC")


def load_catalog(store: Store, *, include_retired: bool = True) -> list[StoredMigration]:
    rows = store.query("SELECT * FROM migrations ORDER BY grace_period_start, id")
    enforced: dict[str, set[str]] = {}
    for r in store.query("SELECT migration_id, scope FROM enforcements"):
        enforced.setdefault(r["migration_id"], set()).add(r["scope"])
    out: list[StoredMigration] = []
    for r in rows:
        if r["status"] == "retired" and not include_retired:
            continue
        doc = Located(data={"migrations": [json.loads(r["definition"])]}, file="<store>")
        (migration,) = parse_definitions(doc, from_store=True).migrations
        out.append(
            StoredMigration(
                migration=migration,
                status=r["status"],
                schedule_version=r["schedule_version"],
                previous_mandatory=r["previous_mandatory_opt_in"],
                enforced_scopes=frozenset(enforced.get(r["id"], set())),
                immediate_reason=r["immediate_reason"],
            )
        )
    return out


def get_migration(store: Store, migration_id: str) -> StoredMigration:
    catalog = load_catalog(store)
    for sm in catalog:
        if sm.id == migration_id:
            return sm
    ids = [sm.id for sm in catalog]
    known = ", ".join(ids) or "none — run `migctl sync` first"
    hint = did_you_mean(migration_id, ids)
    raise NotFoundError(f"no migration {migration_id!r} in the store{hint} (known: {known})")
