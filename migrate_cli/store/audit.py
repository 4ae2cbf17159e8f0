"""Reading the audit log (writing happens in store.audit, inside each change's transaction)."""

from __future__ import annotations

import json
from typing import Any

from migrate_cli.store.db import Store


def list_events(
    store: Store,
    *,
    migration_id: str | None = None,
    account_id: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first, filtered by migration, account and action prefix."""
    where: list[str] = []
    params: list[Any] = []
    if migration_id:
        where.append("migration_id = ?")
        params.append(migration_id)
    if account_id:
        where.append("account_id = ?")
        params.append(account_id)
    if action:
        where.append("action LIKE ? ESCAPE '\\'")
        params.append(action.replace("%", "\\%").replace("_", "\\_") + "%")
    sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [
        {
            "id": r["id"],
            "at": r["at"],
            "actor": r["actor"],
            "action": r["action"],
            "migration_id": r["migration_id"],
            "account_id": r["account_id"],
            "detail": json.loads(r["detail"]) if r["detail"] else None,
        }
        for r in store.query(sql, params)
    ]
