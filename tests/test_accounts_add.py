"""accounts add: a new account needs a plan and an administrator; an update keeps what is not given."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrate_cli.accounts.records import AccountChanges, add_account, get_account
from migrate_cli.errors import InputError
from migrate_cli.store.db import Store
from tests.test_accounts_import import dump

NOW = datetime(2016, 4, 20, 12, tzinfo=UTC)


def test_only_the_fields_given_change(synced_store: Path) -> None:
    with Store(synced_store) as store:
        before = get_account(store, "wayne")
        result = add_account(store, "wayne", AccountChanges(status="closed"), now=NOW, actor="t")
        assert result == "updated"
        after = get_account(store, "wayne")
    assert after == {**before, "status": "closed"}


def test_tags_and_administrators_given_replace_the_stored_ones(synced_store: Path) -> None:
    with Store(synced_store) as store:
        add_account(
            store,
            "wayne",
            AccountChanges(tags=["eu"], admins=["New@Wayne.test"]),
            now=NOW,
            actor="t",
        )
        after = get_account(store, "wayne")
    assert after["tags"] == ["eu"] and after["admins"] == ["new@wayne.test"]
    assert after["name"] == "Wayne Enterprises" and after["plan"] == "enterprise"


def test_an_empty_tag_list_clears_the_tags_but_no_admins_keeps_them(synced_store: Path) -> None:
    with Store(synced_store) as store:
        add_account(store, "wayne", AccountChanges(tags=[], admins=()), now=NOW, actor="t")
        after = get_account(store, "wayne")
    assert after["tags"] == [] and after["admins"] == ["lucius@wayne.test"]


def test_repeating_an_update_is_unchanged(synced_store: Path) -> None:
    changes = AccountChanges(name="Wayne Corp")
    with Store(synced_store) as store:
        assert add_account(store, "wayne", changes, now=NOW, actor="t") == "updated"
        assert add_account(store, "wayne", changes, now=NOW, actor="t") == "unchanged"


def test_a_new_account_defaults_to_active_created_now(synced_store: Path) -> None:
    changes = AccountChanges(plan="free", admins=["boss@newco.test"])
    with Store(synced_store) as store:
        assert add_account(store, "newco", changes, now=NOW, actor="t") == "added"
        new = get_account(store, "newco")
    assert new["status"] == "active" and new["created_at"] == "2016-04-20T12:00:00.000000Z"
    assert new["name"] == "newco"  # the id stands in for a missing name, as on import


@pytest.mark.parametrize(
    "changes",
    [AccountChanges(plan="free"), AccountChanges(admins=["a@b.test"]), AccountChanges()],
)
def test_a_new_account_needs_a_plan_and_an_administrator(
    synced_store: Path, changes: AccountChanges
) -> None:
    before = dump(synced_store)
    with Store(synced_store) as store, pytest.raises(InputError, match="give --plan and at least"):
        add_account(store, "newco", changes, now=NOW, actor="t")
    assert dump(synced_store) == before


def test_a_bad_field_is_located_and_nothing_is_written(synced_store: Path) -> None:
    before = dump(synced_store)
    with Store(synced_store) as store, pytest.raises(InputError) as info:
        add_account(
            store, "wayne", AccountChanges(status="gone", admins=["x@"]), now=NOW, actor="t"
        )
    assert {(p.file, p.field) for p in info.value.problems} == {
        ("command line", "status"),
        ("command line", "admins"),
    }
    assert dump(synced_store) == before
