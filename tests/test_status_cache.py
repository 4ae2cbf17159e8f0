"""Status figures are cached per data version: reused while nothing changes, never stale."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import migrate_cli.status as status_module
from migrate_cli.catalog import get_migration, store_timezone
from migrate_cli.enrollment import switch
from migrate_cli.status import status_report
from migrate_cli.store import Store
from migrate_cli.suppressions import add as suppress
from tests.conftest import RunCli

NOW = datetime(2016, 4, 20, tzinfo=UTC)
MIG = "email-delivery-changes"


def _figures(store: Store) -> dict[str, object]:
    doc = status_report(store, NOW)
    (m,) = [x for x in doc["migrations"] if x["id"] == MIG]
    return {
        **m["accounts"],
        "admins_pending": m["admins_pending"],
        "unreachable": doc["accounts_all_admins_suppressed"],
    }


def test_second_status_uses_the_cache(synced_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(synced_store) as store:
        first = _figures(store)
        assert store.scalar("SELECT count(*) FROM status_cache") >= 3

        def boom(*args: object, **kwargs: object) -> None:
            raise AssertionError("recounted although nothing changed")

        monkeypatch.setattr(status_module, "state_counts", boom)
        monkeypatch.setattr(status_module, "admins_pending", boom)
        assert _figures(store) == first


def test_every_kind_of_change_refreshes_the_figures(synced_store: Path) -> None:
    with Store(synced_store) as store:
        tz = store_timezone(store)
        before = _figures(store)
        switch(
            store,
            get_migration(store, MIG),
            tz,
            ["globex"],
            opt_in=True,
            now=NOW,
            actor="t",
            reason=None,
        )
        after_opt_in = _figures(store)
        assert after_opt_in["pending"] == before["pending"] - 1
        assert after_opt_in["opted_in"] == before["opted_in"] + 1
        suppress(store, "lucius@wayne.test", reason="t", source="t", now=NOW, actor="t")
        assert _figures(store)["unreachable"] == before["unreachable"] + 1


def test_cli_status_after_import_and_enforce_is_fresh(
    synced_store: Path, runner: RunCli, tmp_path: Path
) -> None:
    def pending() -> int:
        out = runner("--db", synced_store, "--now", "2016-05-12", "status", MIG, "--json")
        return json.loads(out.stdout)["migrations"][0]["accounts"]["pending"]

    start = pending()
    (tmp_path / "more.csv").write_text(
        "id,name,plan,tags,created_at,status,admins\nzz-1,Z,free,,2015-01-01,active,z@z.test\n"
    )
    assert runner("--db", synced_store, "accounts", "import", tmp_path / "more.csv").exit_code == 0
    assert pending() == start + 1
    assert runner("--db", synced_store, "--now", "2016-05-12", "enforce").exit_code == 0
    assert pending() == 0
