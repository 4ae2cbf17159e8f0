"""The synced definitions as the store knows them (what every command other than sync reads)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from migrate_cli.definitions.model import ALL_SCOPE, Migration, parse_definitions
from migrate_cli.definitions.yamlsafe import Located
from migrate_cli.errors import NotFoundError, did_you_mean
from migrate_cli.store.db import Store, db_time, parse_db_time
from migrate_cli.timeutil import format_duration, get_timezone, iso, local_date, start_of_day


@dataclass(frozen=True)
class Hold:
    """A date set or moved closer than min_notice (rule 3a): enforced no earlier than
    ``effective`` (the first local day starting at or after ``recorded_at + min_notice``)."""

    scope: str
    written: date  # the date in migrations.yaml
    effective: date  # the date notices and enforcement follow
    recorded_at: datetime
    min_notice: timedelta
    earliest: datetime  # start of the effective day

    @property
    def why(self) -> str:
        return (
            f"{self.written.isoformat()} is less than min_notice "
            f"({format_duration(self.min_notice)}) after the date was recorded "
            f"({iso(self.recorded_at)})"
        )

    def active(self, now: datetime) -> bool:
        return now < self.earliest

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "date": self.written.isoformat(),
            "held_until": self.effective.isoformat(),
            "earliest": iso(self.earliest),
            "recorded_at": iso(self.recorded_at),
            "why": self.why,
        }


def hold_for(
    m: Migration, scope: str, written: date, recorded_at: datetime, tz: tzinfo
) -> Hold | None:
    """The one rule of minimum notice: None when ``written`` gives enough notice."""
    if m.immediate_by_definition:
        return None  # rule 4: enforced at its start, administrators told afterwards
    earliest = recorded_at + m.notices.min_notice
    if start_of_day(written, tz) >= earliest:
        return None
    day = local_date(earliest, tz)
    if start_of_day(day, tz) < earliest:
        day += timedelta(days=1)
    return Hold(scope, written, day, recorded_at, m.notices.min_notice, start_of_day(day, tz))


def recorded_dates(
    m: Migration, old: Migration | None, old_recorded: str | None, now: datetime, tz: tzinfo
) -> dict[str, str]:
    """When each scope's date was recorded, after a sync at ``now``: kept while the date is
    unchanged; ``now`` for a new or moved date; the grace start at a migration's first sync."""
    first = db_time(m.grace_start_instant(tz))
    if old is None:
        return dict.fromkeys(m.dates_by_scope(), first)
    before = old.dates_by_scope()
    kept = json.loads(old_recorded) if old_recorded else {}
    out: dict[str, str] = {}
    for scope, day in m.dates_by_scope().items():
        if before.get(scope) == day:
            out[scope] = kept.get(scope, first)
        else:
            out[scope] = db_time(now)
    return out


def holds_of(m: Migration, recorded: dict[str, str], tz: tzinfo) -> dict[str, Hold]:
    out: dict[str, Hold] = {}
    for scope, day in m.dates_by_scope().items():
        raw = recorded.get(scope)
        at = parse_db_time(raw) if raw else m.grace_start_instant(tz)
        hold = hold_for(m, scope, day, at, tz)
        if hold is not None:
            out[scope] = hold
    return out


def _held(m: Migration, holds: dict[str, Hold]) -> Migration:
    """The migration with held dates replaced by their effective dates: what every rule
    (notices, enforcement, the rehearsal) follows."""
    if not holds:
        return m
    if isinstance(m.mandatory_opt_in, dict):
        dates = {p: holds[p].effective if p in holds else d for p, d in m.mandatory_opt_in.items()}
        return replace(m, mandatory_opt_in=dates)
    return replace(m, mandatory_opt_in=holds[ALL_SCOPE].effective)


@dataclass(frozen=True)
class StoredMigration:
    """A migration plus its store-side state (retired, schedule version, enforcements)."""

    migration: Migration
    status: str
    schedule_version: int
    previous_mandatory: str | None
    enforced_scopes: frozenset[str]
    immediate_reason: str | None
    # Dates held by min_notice (rule 3a); ``migration`` already carries their effective dates.
    holds: dict[str, Hold] = field(default_factory=dict)

    def active_holds(self, now: datetime) -> list[Hold]:
        """The dates min_notice holds back at ``now`` (rule 3a); none once retired or switched."""
        if self.status != "active":
            return []
        done = self.enforced_scopes
        return [
            h
            for h in self.holds.values()
            if h.active(now) and h.scope not in done and ALL_SCOPE not in done
        ]

    @property
    def id(self) -> str:
        return self.migration.id

    def as_of(self, mandatory: str | None) -> Migration:
        """The migration with the dates of an earlier schedule (``mandatory``: its
        `mandatory_opt_in` JSON). A scope whose written date is the one it has now keeps its
        current effective date, held or not: only a moved date counts as moved. The migration
        itself when the dates are the same as now."""
        try:
            raw = json.loads(mandatory) if mandatory else None
        except ValueError:
            raw = None

        def was(scope: str, text: object) -> date | None:
            if not isinstance(text, str) or not text:
                return None
            day = date.fromisoformat(text)
            hold = self.holds.get(scope)
            return hold.effective if hold is not None and hold.written == day else day

        before: date | dict[str, date] | None
        if isinstance(raw, dict):
            dates = {plan: was(plan, text) for plan, text in raw.items()}
            before = {plan: day for plan, day in dates.items() if day is not None} or None
        else:
            before = was(ALL_SCOPE, raw)
        if before == self.migration.mandatory_opt_in:
            return self.migration
        return replace(self.migration, mandatory_opt_in=before)

    @property
    def enforced_immediately(self) -> bool:
        """Switched for everyone by an operator's `--immediately`: no date is left to tell of.
        A dated enforcement for everyone leaves the extended accounts pending (rule 3b)."""
        return self.immediate_reason is not None and ALL_SCOPE in self.enforced_scopes


def schedule_history(store: Store, sm: StoredMigration) -> list[Migration]:
    """The migration as of each earlier schedule version, 0 to ``schedule_version - 1`` (see
    ``StoredMigration.as_of``), from the audit log: every version after the first was made by
    one `migration.rescheduled` entry, which holds the dates it replaced."""
    if sm.schedule_version == 0:
        return []
    # `+migration_id`: walk the few entries without an account (audit_account), not every
    # enrollment change of the migration.
    replaced = [
        json.dumps(json.loads(detail).get("from"))
        for (detail,) in store.conn.execute(
            "SELECT detail FROM audit WHERE account_id IS NULL AND +migration_id = ? "
            "AND action = 'migration.rescheduled' ORDER BY id",
            (sm.id,),
        )
    ][-sm.schedule_version :]
    if not replaced:
        replaced = [sm.previous_mandatory or "null"]
    # A store whose audit log misses early entries: those versions count as the earliest known.
    replaced = [replaced[0]] * (sm.schedule_version - len(replaced)) + replaced
    return [sm.as_of(text) for text in replaced]


def store_timezone(store: Store) -> tzinfo:
    return get_timezone(store.meta("timezone") or "UTC")


def load_catalog(store: Store, *, include_retired: bool = True) -> list[StoredMigration]:
    rows = store.query("SELECT * FROM migrations ORDER BY grace_period_start, id")
    enforced: dict[str, set[str]] = {}
    for r in store.query("SELECT migration_id, scope FROM enforcements"):
        enforced.setdefault(r["migration_id"], set()).add(r["scope"])
    out: list[StoredMigration] = []
    tz = store_timezone(store)
    for r in rows:
        if r["status"] == "retired" and not include_retired:
            continue
        migration = stored_definition(r["definition"])
        holds = holds_of(migration, json.loads(r["dates_recorded"] or "{}"), tz)
        out.append(
            StoredMigration(
                migration=_held(migration, holds),
                holds=holds,
                status=r["status"],
                schedule_version=r["schedule_version"],
                previous_mandatory=r["previous_mandatory_opt_in"],
                enforced_scopes=frozenset(enforced.get(r["id"], set())),
                immediate_reason=r["immediate_reason"],
            )
        )
    return out


def stored_definition(text: str) -> Migration:
    """A migration as synced (the canonical JSON in the store)."""
    doc = Located(data={"migrations": [json.loads(text)]}, file="<store>")
    (migration,) = parse_definitions(doc, from_store=True).migrations
    return migration


def get_migration(store: Store, migration_id: str) -> StoredMigration:
    catalog = load_catalog(store)
    for sm in catalog:
        if sm.id == migration_id:
            return sm
    ids = [sm.id for sm in catalog]
    known = ", ".join(ids) or "none — run `migctl sync` first"
    hint = did_you_mean(migration_id, ids)
    raise NotFoundError(f"no migration {migration_id!r} in the store{hint} (known: {known})")
