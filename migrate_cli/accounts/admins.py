"""One administrator's history: their accounts per migration, every notice, their suppression."""

from __future__ import annotations

from typing import Any

from migrate_cli.accounts.reading import normalise_email
from migrate_cli.accounts.records import AccountFilter, iter_accounts
from migrate_cli.errors import NotFoundError
from migrate_cli.store.db import Store
from migrate_cli.store.outbox import list_rows
from migrate_cli.store.stored_migrations import load_catalog


def admin_history(store: Store, email: str) -> dict[str, Any]:
    """What `admins show` prints: accounts (each with its state and date in every migration of
    its audience), every notice sent or queued to the address, and its suppression if any."""
    try:
        address = normalise_email(email)
    except ValueError:
        address = email.strip().lower()
    accounts = {a["id"]: a for a in iter_accounts(store, AccountFilter(admin=address))}
    for account in accounts.values():
        account["migrations"] = []
    for sm in load_catalog(store):
        for row in iter_accounts(store, AccountFilter(migration=sm, admin=address)):
            accounts[row["id"]]["migrations"].append(
                {"migration": sm.id, "state": row["state"], "deadline": row["deadline"]}
            )
    notices = list_rows(store, email=address, limit=-1)
    suppressed = store.query(
        "SELECT reason, source, created_at FROM suppressions WHERE email = ?", (address,)
    )
    if not accounts and not notices and not suppressed:
        raise NotFoundError(f"no administrator {address!r} in the store (no account, no notice)")
    return {
        "email": address,
        "suppressed": dict(suppressed[0]) if suppressed else None,
        "accounts": list(accounts.values()),
        "notices": notices,
    }
