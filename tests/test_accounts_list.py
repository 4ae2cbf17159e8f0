"""`accounts list --migration M --state S`: the pending accounts an account manager works through."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.helpers_enforce import (
    ACCOUNTS_CSV,
    MAIL,
    migctl,
    ok,
    setup_store,
)

PENDING = ["dev-1", "ent-1", "ent-2", "free-1", "free-2"]  # optin-1 opted in, new-1 auto, closed-1


def _store(tmp_path: Path) -> Path:
    return setup_store(tmp_path, MAIL, opt_in=[("mail", "optin-1", "2016-04-10")])


def test_pending_accounts_as_csv_carry_state_and_date(tmp_path: Path) -> None:
    _store(tmp_path)
    args = ("accounts", "list", "--migration", "mail", "--state", "pending", "--format", "csv")
    out = ok(migctl(tmp_path, *args)).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == PENDING
    assert {r["state"] for r in rows} == {"pending"}
    assert {r["deadline"] for r in rows} == {"2016-05-11"}
    assert rows[1]["admins"] == "a@x.test;shared@x.test"


def test_each_state_lists_its_own_accounts_as_json_lines(tmp_path: Path) -> None:
    _store(tmp_path)
    seen = {}
    for state in ("pending", "opted_in", "auto_enrolled", "enforced"):
        out = ok(
            migctl(
                tmp_path, "accounts", "list", "-m", "mail", "--state", state, "--format", "jsonl"
            )
        ).stdout
        seen[state] = [json.loads(line)["id"] for line in out.splitlines()]
    assert seen == {
        "pending": PENDING,
        "opted_in": ["optin-1"],
        "auto_enrolled": ["new-1"],
        "enforced": [],
    }


def test_plan_and_admin_narrow_the_list_and_out_writes_a_file(tmp_path: Path) -> None:
    _store(tmp_path)
    target = tmp_path / "pending.csv"
    r = ok(
        migctl(
            tmp_path,
            *("accounts", "list", "-m", "mail", "--state", "pending", "--plan", "free"),
            *("--admin", "SHARED@x.test", "--format", "csv", "--out", str(target)),
        )
    )
    assert r.stdout == ""
    assert "wrote 1 account(s)" in r.stderr
    rows = list(csv.DictReader(target.open()))
    assert [row["id"] for row in rows] == ["free-1"]
    assert target.stat().st_mode & 0o077 == 0  # administrators' addresses: private


def test_without_a_migration_every_account_is_listed_in_full(tmp_path: Path) -> None:
    _store(tmp_path)
    out = ok(migctl(tmp_path, "accounts", "list", "--format", "jsonl")).stdout
    assert len(out.splitlines()) == ACCOUNTS_CSV.count("\n") - 1
    assert "state" not in json.loads(out.splitlines()[0])


def test_usage_mistakes_exit_2_and_write_nothing(tmp_path: Path) -> None:
    _store(tmp_path)
    target = tmp_path / "x.csv"
    for args in (
        ("--state", "pending"),
        ("-m", "mail", "--state", "pendin"),
        ("--format", "xlsx"),
    ):
        r = migctl(tmp_path, "accounts", "list", *args, "--out", str(target))
        assert r.returncode == 2, (args, r.stderr)
    assert not target.exists()
    r = migctl(tmp_path, "accounts", "list", "-m", "nope", "--format", "csv")
    assert r.returncode == 1 and "no migration 'nope'" in r.stderr


def test_status_warnings_name_the_accounts_they_count(tmp_path: Path) -> None:
    accounts = ACCOUNTS_CSV + "lonely-1,Lonely,free,,2015-01-01,active,\n"
    setup_store(tmp_path, MAIL, accounts=accounts)
    ok(migctl(tmp_path, "--now", "2016-04-20", "suppress", "add", "d@x.test"))  # by then
    out = ok(migctl(tmp_path, "--now", "2016-04-20", "status")).stdout
    assert (
        "1 active account(s) have no administrator: lonely-1 — see `migctl accounts list --no-admin`"
        in out
    )
    assert "every administrator suppressed, nobody is being told about them: free-2" in out
    listed = ok(migctl(tmp_path, "accounts", "list", "--unreachable", "--format", "jsonl")).stdout
    assert [json.loads(x)["id"] for x in listed.splitlines()] == ["free-2"]
    listed = ok(migctl(tmp_path, "accounts", "list", "--no-admin", "--format", "jsonl")).stdout
    assert [json.loads(x)["id"] for x in listed.splitlines()] == ["lonely-1"]
