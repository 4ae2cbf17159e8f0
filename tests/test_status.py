"""status: the SPEC's JSON keys, counts checked against the CSV independently, plain lines for cron."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest

from migrate_cli.store.db import Store

EDC = "email-delivery-changes"
VPF = "vulnerable-password-flow"
GRACE = {VPF: date(2016, 3, 22), EDC: date(2016, 4, 4)}
MIGRATION_KEYS = {
    "id",
    "title",
    "severity",
    "phase",
    "grace_period_start",
    "mandatory_opt_in",
    "days_left",
    "accounts",
    "admins_pending",
}
COUNT_KEYS = {"total", "pending", "opted_in", "auto_enrolled", "enforced"}


def flat(text: str) -> str:
    return " ".join(text.split())


def expected_counts(csv_path: Path, migration: str, opted_in: set[str] = frozenset()) -> dict:  # type: ignore[assignment]
    """Counts computed from the CSV alone (the tool's code is not used)."""
    with csv_path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "active"]
    start = GRACE[migration]
    auto = {r["id"] for r in rows if date.fromisoformat(r["created_at"][:10]) >= start}
    opted = {r["id"] for r in rows if r["id"] in opted_in and r["id"] not in auto}
    pending = [r for r in rows if r["id"] not in auto and r["id"] not in opted]
    admins = {a.strip().lower() for r in pending for a in r["admins"].split(";") if a.strip()}
    return {
        "accounts": {
            "total": len(rows),
            "pending": len(pending),
            "opted_in": len(opted),
            "auto_enrolled": len(auto),
            "enforced": 0,
        },
        "admins_pending": len(admins),
    }


def status_json(runner, db: Path, now: str, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = runner("--db", db, "--now", now, "status", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_has_the_spec_keys(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    doc = status_json(runner, synced_store, "2016-04-20")
    assert {"now", "migrations"} <= set(doc)
    assert doc["now"] == "2016-04-20T00:00:00Z"
    assert [m["id"] for m in doc["migrations"]] == [VPF, EDC]
    for m in doc["migrations"]:
        assert set(m) >= MIGRATION_KEYS
        assert set(m["accounts"]) >= COUNT_KEYS
        assert all(isinstance(v, int) for v in m["accounts"].values())
        assert isinstance(m["admins_pending"], int)
    vpf, edc = doc["migrations"]
    assert (vpf["title"], vpf["severity"], vpf["phase"]) == (
        "Vulnerable Password Flow",
        "medium",
        "grace",
    )
    assert (vpf["grace_period_start"], vpf["mandatory_opt_in"], vpf["days_left"]) == (
        "2016-03-22",
        None,
        None,
    )
    assert (edc["grace_period_start"], edc["mandatory_opt_in"], edc["days_left"]) == (
        "2016-04-04",
        "2016-05-11",
        21,
    )


def test_counts_match_the_csv(synced_store: Path, runner, repo_root: Path) -> None:  # type: ignore[no-untyped-def]
    source = repo_root / "examples" / "accounts.csv"
    doc = status_json(runner, synced_store, "2016-04-20")
    for m in doc["migrations"]:
        exp = expected_counts(source, m["id"])
        assert m["accounts"] == exp["accounts"], m["id"]
        assert m["admins_pending"] == exp["admins_pending"], m["id"]
    # After opting some accounts in (including an auto-enrolled one, which stays auto-enrolled).
    assert (
        runner(
            "--db",
            synced_store,
            "--now",
            "2016-04-20",
            "opt-in",
            EDC,
            "-a",
            "acme-prod",
            "-a",
            "acme-staging",
            "-a",
            "piedpiper",
            "-a",
            "umbrella",
        ).exit_code
        == 0
    )
    doc = status_json(runner, synced_store, "2016-04-21", EDC)
    (edc,) = doc["migrations"]
    exp = expected_counts(source, EDC, {"acme-prod", "acme-staging", "piedpiper", "umbrella"})
    assert edc["accounts"] == exp["accounts"]
    assert edc["admins_pending"] == exp["admins_pending"]
    # ops@acme.test administers acme-dev (auto), acme-prod, acme-staging, piedpiper: all migrated now.
    assert edc["accounts"]["opted_in"] == 3


def test_phases_before_inside_after(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    def phases(now: str) -> dict[str, str]:
        return {m["id"]: m["phase"] for m in status_json(runner, synced_store, now)["migrations"]}

    assert phases("2016-03-01") == {VPF: "scheduled", EDC: "scheduled"}
    assert phases("2016-03-22") == {VPF: "grace", EDC: "scheduled"}
    assert phases("2016-04-04") == {VPF: "grace", EDC: "grace"}
    assert phases("2016-05-11") == {VPF: "grace", EDC: "due"}
    assert phases("2017-01-01") == {VPF: "grace", EDC: "due"}
    edc = status_json(runner, synced_store, "2016-05-13", EDC)["migrations"][0]
    assert edc["days_left"] == -2


def test_per_plan_status(runner) -> None:  # type: ignore[no-untyped-def]
    Path("migrations.yaml").write_text(
        "migrations:\n  - id: pp\n    title: P\n    severity: high\n    grace_period_start: 2016-03-01\n"
        "    mandatory_opt_in: {free: 2016-04-01, enterprise: 2016-06-01}\n    summary: s\n"
        "    applies_to: {plans: [free, enterprise]}\n"
    )
    Path("a.csv").write_text(
        "id,plan,created_at,admins\nf1,free,2015-01-01,a@x.test\ne1,enterprise,2015-01-01,b@x.test\n"
        "d1,developer,2015-01-01,c@x.test\n"
    )
    assert runner("--db", "p.db", "sync").exit_code == 0
    assert runner("--db", "p.db", "accounts", "import", "a.csv").exit_code == 0
    (m,) = status_json(runner, Path("p.db"), "2016-05-01")["migrations"]
    assert m["mandatory_opt_in"] == {"enterprise": "2016-06-01", "free": "2016-04-01"}
    assert m["phase"] == "grace"
    assert {p["plan"]: p["phase"] for p in m["plans"]} == {"enterprise": "grace", "free": "due"}
    assert m["days_left"] == 31
    assert m["accounts"]["total"] == 2
    plain = runner("--db", "p.db", "--now", "2016-05-01", "status", "pp")
    assert "plan free: due, mandatory 2016-04-01" in plain.stdout


def test_plain_lines_when_not_a_terminal(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner("--db", synced_store, "--now", "2016-04-20", "status")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "# Migrations at 2016-04-20T00:00:00Z (UTC)"
    assert lines[1].startswith(
        f"migration={VPF} severity=medium phase=grace grace_start=2016-03-22 mandatory=TBD"
    )
    assert lines[2].startswith(f"migration={EDC} ")
    assert "mandatory=2016-05-11 days_left=21" in lines[2]
    assert "\x1b[" not in result.stdout
    assert not any(ch in result.stdout for ch in "┃│━█░")


def test_rich_table_on_a_terminal(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "status",
        env={"MIGCTL_FORCE_TERMINAL": "1", "MIGCTL_WIDTH": "200"},
    )
    assert result.exit_code == 0
    doc = json.loads(runner("--db", synced_store, "--now", "2016-04-20", "status", "--json").stdout)
    # One bar of the migrated share per migration: 20 cells, then the share in percent.
    for m in doc["migrations"]:
        share = m["migrated_share"]
        filled = round(share * 20)
        assert "█" * filled + "░" * (20 - filled) + f" {share:.0%}" in result.stdout, m["id"]
    assert VPF in result.stdout


def test_status_of_one_migration(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner("--db", synced_store, "--now", "2016-04-20", "status", EDC)
    assert result.exit_code == 0
    assert f"migration={EDC}" in result.stdout and VPF not in result.stdout
    assert "title: Email Delivery Changes" in result.stdout
    assert "total accounts in audience: 11" in result.stdout


def test_unknown_migration_exits_1(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    for args in (["status", "nope"], ["status", "nope", "--json"]):
        result = runner("--db", synced_store, "--now", "2016-04-20", *args)
        assert result.exit_code == 1
        assert "no migration 'nope'" in flat(result.stderr)
        assert VPF in flat(result.stderr)  # lists the known ones
        assert result.stdout == ""


def test_empty_store(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "empty.db"
    runner("--db", db, "accounts", "list")  # a reading command does not create a store
    assert not db.exists()
    missing = runner("--db", db, "status")
    assert missing.exit_code == 1 and "no store at" in missing.stderr
    with Store(db):  # an existing store with nothing synced yet
        pass
    result = runner("--db", db, "status")
    assert result.exit_code == 0
    assert "no migrations in the store" in result.stdout
    result = runner("--db", db, "status", "--json")
    assert json.loads(result.stdout)["migrations"] == []


def test_audit_filters(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    for acc in ("acme-prod", "globex"):
        for mid in (EDC, VPF):
            assert (
                runner(
                    "--db", synced_store, "--now", "2016-04-20", "opt-in", mid, "-a", acc
                ).exit_code
                == 0
            )
    result = runner(
        "--db", synced_store, "audit", "--migration", EDC, "--account", "globex", "--json"
    )
    assert result.exit_code == 0
    (ev,) = json.loads(result.stdout)["events"]
    assert (ev["migration_id"], ev["account_id"], ev["action"]) == (
        EDC,
        "globex",
        "enrollment.opted_in",
    )
    everything = json.loads(
        runner("--db", synced_store, "audit", "--json", "--limit", "1000").stdout
    )["events"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert {"migration.added", "accounts.imported", "enrollment.opted_in"} <= {
        e["action"] for e in everything
    }
    by_migration = json.loads(runner("--db", synced_store, "audit", "-m", VPF, "--json").stdout)[
        "events"
    ]
    assert {e["migration_id"] for e in by_migration} == {VPF}
    assert len([e for e in by_migration if e["action"] == "enrollment.opted_in"]) == 2
    limited = json.loads(runner("--db", synced_store, "audit", "--limit", "2", "--json").stdout)[
        "events"
    ]
    assert len(limited) == 2
    plain = runner("--db", synced_store, "audit", "--account", "globex")
    assert plain.exit_code == 0 and plain.stdout.startswith("# Audit log")


@pytest.mark.parametrize("action", ["enrollment", "enrollment.opted_in", "migration."])
def test_audit_action_prefix(synced_store: Path, runner, action: str) -> None:  # type: ignore[no-untyped-def]
    runner("--db", synced_store, "--now", "2016-04-20", "opt-in", EDC, "-a", "wayne")
    events = json.loads(runner("--db", synced_store, "audit", "--action", action, "--json").stdout)[
        "events"
    ]
    assert events and all(e["action"].startswith(action) for e in events)
