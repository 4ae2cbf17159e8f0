"""Versioned schema migrations for the store (sqlite-utils Migrations)."""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("migctl")


def known_migrations() -> set[str]:
    """The names of the schema migrations this version of migctl knows (all of them are
    pending on an empty database)."""
    return {m.name for m in migrations.pending(Database(memory=True))}


@migrations()
def m001_core(db: Database) -> None:
    """Definitions, accounts, administrators, enrollments and the audit log."""
    db.executescript(
        """
        CREATE TABLE migrations (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            severity TEXT NOT NULL,
            grace_period_start TEXT NOT NULL,
            mandatory_opt_in TEXT,          -- JSON: null (TBD), "YYYY-MM-DD" or {plan: date}
            definition TEXT NOT NULL,        -- canonical JSON of the whole definition
            definition_hash TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
            schedule_version INTEGER NOT NULL DEFAULT 0,
            schedule_changed_at TEXT,
            previous_mandatory_opt_in TEXT,
            synced_at TEXT NOT NULL,
            retired_at TEXT,
            immediate_at TEXT,               -- set by enforce --immediately
            immediate_reason TEXT
        );
        CREATE TABLE accounts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            plan TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,        -- ISO UTC instant
            status TEXT NOT NULL CHECK (status IN ('active', 'closed')),
            updated_at TEXT NOT NULL
        );
        CREATE INDEX accounts_plan ON accounts(plan, status);
        CREATE TABLE account_tags (
            account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (account_id, tag)
        ) WITHOUT ROWID;
        CREATE INDEX account_tags_tag ON account_tags(tag, account_id);
        CREATE TABLE account_admins (
            account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            email TEXT NOT NULL,
            PRIMARY KEY (account_id, email)
        ) WITHOUT ROWID;
        CREATE INDEX account_admins_email ON account_admins(email, account_id);
        CREATE TABLE enrollments (
            migration_id TEXT NOT NULL REFERENCES migrations(id),
            account_id TEXT NOT NULL REFERENCES accounts(id),
            state TEXT NOT NULL CHECK (state IN ('opted_in', 'enforced')),
            changed_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT,
            batch TEXT,                      -- enforcement batch (slot of the enforced notice)
            PRIMARY KEY (migration_id, account_id)
        ) WITHOUT ROWID;
        CREATE INDEX enrollments_state ON enrollments(migration_id, state, account_id);
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            migration_id TEXT,
            account_id TEXT,
            detail TEXT
        );
        CREATE INDEX audit_migration ON audit(migration_id, id);
        CREATE INDEX audit_account ON audit(account_id, id);
        CREATE TABLE enforcements (
            migration_id TEXT NOT NULL REFERENCES migrations(id),
            scope TEXT NOT NULL,             -- '*' or a plan name (per-plan dates)
            deadline TEXT,                   -- the mandatory date enforced (null: immediate)
            at TEXT NOT NULL,
            accounts INTEGER NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT,
            immediate INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (migration_id, scope)
        ) WITHOUT ROWID;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        """
    )


@migrations()
def m002_outbox(db: Database) -> None:
    """The outbox of notices and the suppression list."""
    db.executescript(
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,        -- migration|administrator|kind|slot
            migration_id TEXT NOT NULL REFERENCES migrations(id),
            email TEXT NOT NULL,
            kind TEXT NOT NULL,
            slot TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('pending', 'sending', 'sent', 'failed', 'in_doubt', 'suppressed')),
            schedule_version INTEGER NOT NULL DEFAULT 0,
            accounts TEXT NOT NULL,          -- JSON list of the account ids the notice covers
            accounts_count INTEGER NOT NULL,
            deadline TEXT,
            why TEXT,
            message_id TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            provider TEXT,
            provider_message_id TEXT,
            last_error TEXT,
            error_code TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            next_attempt_at TEXT,
            sent_at TEXT
        );
        CREATE INDEX outbox_admin ON outbox(migration_id, email, created_at);
        CREATE INDEX outbox_state ON outbox(state, id);  -- claims walk pending rows in id order
        CREATE TABLE suppressions (
            email TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE sends (                 -- one row per accepted send: the rolling daily quota
            at TEXT NOT NULL,
            recipients INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX sends_at ON sends(at);
        """
    )


@migrations()
def m003_status_cache(db: Database) -> None:
    """Status figures cached per data version (recounting 1M accounts takes seconds)."""
    db.executescript(
        """
        CREATE TABLE status_cache (
            key TEXT PRIMARY KEY,            -- migration id + definition hash, or '*'
            version INTEGER NOT NULL,        -- meta.data_version the figures were counted at
            body TEXT NOT NULL,              -- JSON figures
            computed_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m004_outbox_listed(db: Database) -> None:
    """The accounts a notice lists (id, name, plan), captured when it is queued.

    Dispatch then renders without looking each account up again (two B-tree searches per
    account, most of the cost of a local send), and the row records what the notice said.
    Rows queued before this column existed keep NULL and are looked up as before.
    """
    db.execute("ALTER TABLE outbox ADD COLUMN listed TEXT")


@migrations()
def m005_events(db: Database) -> None:
    """Enrollment-change events for the platform, written with the change they record.

    `seq` is the order of recording and of delivery; `sequence` counts the events of one
    account in one migration (the receiver ignores an older one arriving after a newer one).
    Enrollments that exist before this upgrade get no events: `flags export` shows them.
    """
    db.executescript(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            -- The event's id is "<id_prefix>-<seq>": stable, and unique across stores (a random
            -- prefix per recording transaction) without a random-key index to maintain.
            id_prefix TEXT NOT NULL,
            migration_id TEXT NOT NULL,
            account_id TEXT NOT NULL,
            sequence INTEGER NOT NULL,
            state TEXT NOT NULL,
            previous_state TEXT,             -- null: the account was first seen
            effective_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            reason TEXT,
            actor TEXT NOT NULL,
            delivery TEXT NOT NULL DEFAULT 'pending' CHECK (delivery IN ('pending', 'delivered')),
            attempts INTEGER NOT NULL DEFAULT 0,
            failing_since TEXT,              -- first transient failure of the current streak
            next_attempt_at TEXT,            -- a run waits until then (backoff across runs)
            last_error TEXT,
            delivered_at TEXT
        );
        CREATE UNIQUE INDEX events_account ON events(migration_id, account_id, sequence);
        CREATE INDEX events_pending ON events(seq) WHERE delivery = 'pending';
        """
    )


@migrations()
def m006_dates_recorded(db: Database) -> None:
    """When sync recorded each scope's current mandatory date (rule 3a, minimum notice).

    JSON {scope: instant}; NULL (stores synced before) means every date counts from the grace
    period start, as at a migration's first sync.
    """
    db.execute("ALTER TABLE migrations ADD COLUMN dates_recorded TEXT")


@migrations()
def m007_outbox_failing_since(db: Database) -> None:
    """When a notice's current run of transient failures began (retries by time, across runs).

    A notice is failed only once it has kept failing for `retry_for` since then; a send, an
    `outbox retry` or a `resolve --not-sent` clears it.
    """
    db.execute("ALTER TABLE outbox ADD COLUMN failing_since TEXT")


@migrations()
def m008_extensions(db: Database) -> None:
    """One account's own deadline in one migration (rule 3b): the latest extension granted.

    Earlier extensions of the same account stay in the audit log; this row is what counts.
    """
    db.executescript(
        """
        CREATE TABLE extensions (
            migration_id TEXT NOT NULL,
            account_id TEXT NOT NULL,
            until TEXT NOT NULL,             -- ISO date; enforced from its local midnight
            reason TEXT NOT NULL,
            actor TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (migration_id, account_id)
        ) WITHOUT ROWID;
        """
    )


@migrations()
def m009_delivery_events(db: Database) -> None:
    """Delivery events reported by the providers after they accepted a notice (`feedback`).

    One row per event and recipient, keyed for idempotency (`event_key`); `notice_key` is NULL
    for an orphan (no notice of this store matched). A notice's delivery outcome is derived
    from its events, never stored on the outbox row: see `store/deliveries.py`. Two outbox
    indexes match events to notices by the provider's message id and by our Message-ID, a third
    counts the sent notices per migration; all are partial, so queuing a million pending
    notices does not maintain them.
    """
    db.executescript(
        """
        CREATE TABLE delivery_events (
            id INTEGER PRIMARY KEY,
            event_key TEXT NOT NULL UNIQUE,  -- provider:event id (or a hash):recipient
            provider TEXT NOT NULL,          -- 'ses' or 'sendgrid'
            notice_key TEXT,                 -- outbox.key, NULL for an orphan
            migration_id TEXT,               -- the notice's (the rates count without a join)
            email TEXT NOT NULL,             -- the recipient the event is about
            outcome TEXT NOT NULL CHECK (outcome IN
                ('delivered', 'deferred', 'bounced', 'complained', 'rejected')),
            bounce_type TEXT CHECK (bounce_type IN ('hard', 'soft')),
            detail TEXT,                     -- the provider's diagnostic or reason, truncated
            event_at TEXT NOT NULL,          -- when the provider says it happened
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX delivery_events_notice ON delivery_events(notice_key, event_at)
            WHERE notice_key IS NOT NULL;
        CREATE INDEX delivery_events_email ON delivery_events(email, outcome, event_at);
        CREATE INDEX delivery_events_rates ON delivery_events(
            migration_id, outcome, bounce_type, notice_key, recorded_at)
            WHERE migration_id IS NOT NULL;
        -- The rates' denominator per migration (up to an instant: `status --now`): an index of
        -- the sent notices only.
        CREATE INDEX outbox_sent ON outbox(migration_id, sent_at) WHERE state = 'sent';
        CREATE INDEX outbox_provider_message ON outbox(provider_message_id)
            WHERE provider_message_id IS NOT NULL;
        CREATE INDEX outbox_message_id ON outbox(message_id) WHERE state != 'pending';
        """
    )
