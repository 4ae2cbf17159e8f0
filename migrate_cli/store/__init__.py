"""The SQLite store: connection, schema, run lock, audit log, synced definitions and the outbox table."""
