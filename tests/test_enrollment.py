"""Enrollments: auto-enrollment, audiences, opt-in/opt-out inside the grace period only, all audited."""

from __future__ import annotations

import getpass
import json
import sqlite3
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migrate_cli.accounts.records import import_accounts
from migrate_cli.definitions.model import load_definitions
from migrate_cli.lifecycle.enrollment import account_state
from migrate_cli.lifecycle.status_figures import state_counts
from migrate_cli.store.db import Store
from migrate_cli.store.stored_migrations import get_migration, store_timezone
from migrate_cli.store.sync import sync

EDC = "email-delivery-changes"
VPF = "vulnerable-password-flow"
T0 = datetime(2016, 1, 1, tzinfo=UTC)


def flat(text: str) -> str:
    """stderr with Rich line wrapping undone (see test_cli_core::test_error_lines_are_not_wrapped)."""
    return " ".join(text.split())


def make_store(yaml_text: str, csv_text: str, db: Path = Path("e.db")) -> Path:
    Path("m.yaml").write_text(textwrap.dedent(yaml_text))
    Path("a.csv").write_text(textwrap.dedent(csv_text))
    with Store(db) as store:
        sync(store, load_definitions(Path("m.yaml")), now=T0, actor="setup")
        import_accounts(store, Path("a.csv"), now=T0, actor="setup")
    return db


def state(db: Path, migration: str, account: str) -> str | None:
    with Store(db) as store:
        sm = get_migration(store, migration)
        return account_state(store, sm.migration, store_timezone(store), account)


def dump(db: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db)
    out = {
        t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
        for t in ("enrollments", "audit")
    }
    conn.close()
    return out


def audit_events(runner, db: Path, *args: str) -> list[dict]:  # type: ignore[no-untyped-def]
    result = runner("--db", db, "audit", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["events"]


ONE = """\
defaults:
  timezone: {tz}
migrations:
  - id: m
    title: M
    severity: low
    grace_period_start: 2016-03-22
    mandatory_opt_in: 2016-05-11
    summary: s
"""


# --------------------------------------------------------------------------- auto-enrollment


@pytest.mark.parametrize(
    ("tz", "before", "at"),
    [
        ("UTC", "2016-03-21T23:59:59Z", "2016-03-22T00:00:00Z"),
        ("America/New_York", "2016-03-22T03:59:59Z", "2016-03-22T04:00:00Z"),
        ("Asia/Tokyo", "2016-03-21T14:59:59Z", "2016-03-21T15:00:00Z"),
    ],
)
def test_auto_enrollment_starts_at_the_exact_grace_instant(tz: str, before: str, at: str) -> None:
    db = make_store(
        ONE.format(tz=tz),
        f"""\
        id,plan,created_at,admins
        early,free,{before},a@x.test
        exact,free,{at},a@x.test
        dateonly,free,2016-03-22,a@x.test
        old,free,2015-01-01,a@x.test
        """,
    )
    assert state(db, "m", "early") == "pending"
    assert state(db, "m", "exact") == "auto_enrolled"
    assert state(db, "m", "dateonly") == "auto_enrolled"  # midnight in the configured timezone
    assert state(db, "m", "old") == "pending"


def test_example_accounts_auto_enrollment(synced_store: Path) -> None:
    # Created on or after 2016-03-22: hooli (03-25), acme-dev (04-10), umbrella (04-20).
    assert state(synced_store, VPF, "hooli") == "auto_enrolled"
    assert state(synced_store, VPF, "acme-dev") == "auto_enrolled"
    assert state(synced_store, VPF, "acme-prod") == "pending"
    # email-delivery-changes starts 2016-04-04: hooli is pending there.
    assert state(synced_store, EDC, "hooli") == "pending"
    assert state(synced_store, EDC, "umbrella") == "auto_enrolled"
    assert state(synced_store, EDC, "oldco") is None  # closed: outside every audience


# --------------------------------------------------------------------------- audiences


AUDIENCE = """\
migrations:
  - id: plans-only
    title: P
    severity: low
    grace_period_start: 2016-03-22
    mandatory_opt_in: TBD
    summary: s
    applies_to: {plans: [enterprise]}
  - id: tags-only
    title: T
    severity: low
    grace_period_start: 2016-03-22
    mandatory_opt_in: TBD
    summary: s
    applies_to: {tags: [eu, sso]}
  - id: both
    title: B
    severity: low
    grace_period_start: 2016-03-22
    mandatory_opt_in: TBD
    summary: s
    applies_to: {plans: [enterprise, developer], tags: [eu]}
"""


def test_applies_to_plans_and_tags(repo_root: Path) -> None:
    db = make_store(AUDIENCE, (repo_root / "examples" / "accounts.csv").read_text())
    rows = list(__import__("csv").DictReader((repo_root / "examples" / "accounts.csv").open()))
    active = [r for r in rows if r["status"] == "active"]

    def expected(plans: set[str] | None, tags: set[str] | None) -> set[str]:
        return {
            r["id"]
            for r in active
            if (plans is None or r["plan"] in plans)
            and (tags is None or tags & set(filter(None, r["tags"].split(";"))))
        }

    with Store(db) as store:
        tz = store_timezone(store)
        for mid, plans, tags in (
            ("plans-only", {"enterprise"}, None),
            ("tags-only", None, {"eu", "sso"}),
            ("both", {"enterprise", "developer"}, {"eu"}),
        ):
            m = get_migration(store, mid).migration
            inside = {r["id"] for r in rows if account_state(store, m, tz, r["id"]) is not None}
            assert inside == expected(plans, tags), mid
            assert state_counts(store, m, tz)["total"] == len(inside)
    assert expected({"enterprise", "developer"}, {"eu"}) == {
        "acme-prod",
        "acme-staging",
        "globex-eu",
    }


def test_opt_in_outside_the_audience_is_refused(repo_root: Path, runner) -> None:  # type: ignore[no-untyped-def]
    db = make_store(AUDIENCE, (repo_root / "examples" / "accounts.csv").read_text())
    before = dump(db)
    result = runner(
        "--db", db, "--now", "2016-04-01", "opt-in", "both", "-a", "acme-prod", "-a", "globex"
    )
    assert result.exit_code == 1
    assert "outside the audience of both: globex" in flat(result.stderr)
    assert "nothing was changed" in flat(result.stderr)
    assert dump(db) == before


# --------------------------------------------------------------------------- opt-in / opt-out


def test_opt_in_and_out_inside_grace_are_audited(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    db = synced_store
    result = runner(
        "--db",
        db,
        "--now",
        "2016-04-20T10:00:00Z",
        "opt-in",
        EDC,
        "-a",
        "acme-prod",
        "-a",
        "globex",
        "--actor",
        "alice",
        "--reason",
        "moved to SES",
    )
    assert result.exit_code == 0, result.output
    assert "opted in 2 account(s)" in result.stdout
    assert state(db, EDC, "acme-prod") == "opted_in"
    assert state(db, VPF, "acme-prod") == "pending"  # other migrations untouched
    events = audit_events(runner, db, "--migration", EDC, "--action", "enrollment")
    assert {(e["account_id"], e["action"], e["actor"]) for e in events} == {
        ("acme-prod", "enrollment.opted_in", "alice"),
        ("globex", "enrollment.opted_in", "alice"),
    }
    assert all(e["detail"] == {"reason": "moved to SES"} for e in events)
    assert all(e["at"] == "2016-04-20T10:00:00.000000Z" for e in events)

    again = runner("--db", db, "--now", "2016-04-21", "opt-in", EDC, "-a", "acme-prod", "--json")
    assert json.loads(again.stdout)["changed_count"] == 0 and json.loads(again.stdout)[
        "unchanged"
    ] == ["acme-prod"]
    assert len(audit_events(runner, db, "--migration", EDC, "--action", "enrollment")) == 2

    out = runner(
        "--db", db, "--now", "2016-04-22", "opt-out", EDC, "-a", "acme-prod", "--reason", "rollback"
    )
    assert out.exit_code == 0, out.output
    assert state(db, EDC, "acme-prod") == "pending"
    (ev,) = audit_events(
        runner, db, "--migration", EDC, "--account", "acme-prod", "--action", "enrollment.opted_out"
    )
    assert ev["actor"] == getpass.getuser()  # default actor: the OS user
    assert ev["detail"] == {"reason": "rollback"}


def test_opt_out_of_a_pending_account_changes_nothing(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    before = dump(synced_store)
    result = runner(
        "--db", synced_store, "--now", "2016-04-20", "opt-out", EDC, "-a", "wayne", "--json"
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["changed_count"] == 0
    assert dump(synced_store) == before


def test_opt_in_of_an_auto_enrolled_account_is_a_no_op(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner(
        "--db", synced_store, "--now", "2016-04-20", "opt-in", EDC, "-a", "umbrella", "--json"
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["unchanged"] == ["umbrella"]
    assert state(synced_store, EDC, "umbrella") == "auto_enrolled"


def test_opt_out_of_an_auto_enrolled_account_is_refused(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    runner("--db", synced_store, "--now", "2016-04-20", "opt-in", EDC, "-a", "wayne")
    before = dump(synced_store)
    result = runner(
        "--db", synced_store, "--now", "2016-04-21", "opt-out", EDC, "-a", "wayne", "-a", "umbrella"
    )
    assert result.exit_code == 1
    assert "always enrolled and cannot opt out: umbrella" in flat(result.stderr)
    assert dump(synced_store) == before
    assert state(synced_store, EDC, "wayne") == "opted_in"


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        ("2016-04-03T23:59:59Z", False),
        ("2016-04-04", True),
        ("2016-04-04T00:00:00Z", True),
        ("2016-05-10T23:59:59Z", True),
        ("2016-05-11", False),
        ("2016-05-11T00:00:00Z", False),
        ("2016-06-01", False),
    ],
)
def test_opt_in_window_edges(synced_store: Path, runner, now: str, ok: bool) -> None:  # type: ignore[no-untyped-def]
    before = dump(synced_store)
    result = runner("--db", synced_store, "--now", now, "opt-in", EDC, "-a", "wayne")
    assert result.exit_code == (0 if ok else 1), result.output
    if ok:
        assert state(synced_store, EDC, "wayne") == "opted_in"
    else:
        assert dump(synced_store) == before
        assert "Traceback" not in result.output


def test_refusal_before_grace_says_why_and_when(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    for command in ("opt-in", "opt-out"):
        result = runner("--db", synced_store, "--now", "2016-03-01", command, EDC, "-a", "wayne")
        assert result.exit_code == 1
        assert "grace period starts 2016-04-04" in flat(result.stderr)
        assert "opt-in and opt-out open then" in flat(result.stderr)


def test_refusal_after_the_mandatory_date_says_why_and_when(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    for command in ("opt-in", "opt-out"):
        result = runner("--db", synced_store, "--now", "2016-05-12", command, EDC, "-a", "wayne")
        assert result.exit_code == 1
        assert "grace period ended at 2016-05-11" in flat(result.stderr)
        assert "can no longer opt in or out" in flat(result.stderr)


def test_tbd_keeps_the_window_open(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner("--db", synced_store, "--now", "2030-01-01", "opt-in", VPF, "-a", "wayne")
    assert result.exit_code == 0
    assert state(synced_store, VPF, "wayne") == "opted_in"


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        (["wayne", "nobody"], "unknown account(s): nobody"),
        (["wayne", "oldco"], "closed account(s): oldco"),
    ],
)
def test_refused_accounts_change_nothing(
    synced_store: Path, runner, accounts: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    before = dump(synced_store)
    args = [x for a in accounts for x in ("-a", a)]
    result = runner("--db", synced_store, "--now", "2016-04-20", "opt-in", EDC, *args)
    assert result.exit_code == 1
    assert message in flat(result.stderr) and "nothing was changed" in flat(result.stderr)
    assert dump(synced_store) == before


def test_no_accounts_and_unknown_migration(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    none = runner("--db", synced_store, "--now", "2016-04-20", "opt-in", EDC)
    assert none.exit_code == 2 and "give the accounts: --account" in flat(none.stderr)
    unknown = runner("--db", synced_store, "--now", "2016-04-20", "opt-in", "nope", "-a", "wayne")
    assert unknown.exit_code == 1 and "no migration 'nope'" in flat(unknown.stderr)


def test_from_file_with_one_account(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    Path("ids.txt").write_text("wayne\n")
    result = runner(
        "--db", synced_store, "--now", "2016-04-20", "opt-in", EDC, "--from-file", "ids.txt"
    )
    assert result.exit_code == 0, result.output
    assert state(synced_store, EDC, "wayne") == "opted_in"


def test_from_file_header_comments_blank_lines_and_csv(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    Path("ids.csv").write_text(
        "\ufeffid\n# customers who asked\nwayne,Wayne Enterprises\n\n  stark  \nwayne\n"
    )
    result = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "opt-in",
        EDC,
        "--from-file",
        "ids.csv",
        "-a",
        "globex",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.stdout)["changed"]) == ["globex", "stark", "wayne"]


def test_from_stdin(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "opt-in",
        EDC,
        "--from-file",
        "-",
        input="wayne\nstark\n",
    )
    assert result.exit_code == 0, result.output
    assert state(synced_store, EDC, "stark") == "opted_in"


def test_from_file_missing_or_not_utf8(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    missing = runner(
        "--db", synced_store, "--now", "2016-04-20", "opt-in", EDC, "--from-file", "absent.txt"
    )
    assert missing.exit_code == 1 and "absent.txt" in flat(missing.stderr)
    Path("bad.txt").write_bytes(b"caf\xe9\n")
    bad = runner(
        "--db", synced_store, "--now", "2016-04-20", "opt-in", EDC, "--from-file", "bad.txt"
    )
    assert bad.exit_code == 1 and "UTF-8" in flat(bad.stderr)


PER_PLAN = """\
migrations:
  - id: pp
    title: Per plan
    severity: low
    grace_period_start: 2016-03-01
    mandatory_opt_in: {free: 2016-04-01, enterprise: 2016-06-01, developer: TBD}
    summary: s
"""


def test_per_plan_dates(repo_root: Path, runner) -> None:  # type: ignore[no-untyped-def]
    db = make_store(PER_PLAN, (repo_root / "examples" / "accounts.csv").read_text())
    # 2016-05-01: enterprise still in grace, free past its date, developer TBD.
    ok = runner("--db", db, "--now", "2016-05-01", "opt-in", "pp", "-a", "wayne", "-a", "initech")
    assert ok.exit_code == 0, ok.output
    assert state(db, "pp", "wayne") == "opted_in" and state(db, "pp", "initech") == "opted_in"
    before = dump(db)
    late = runner(
        "--db", db, "--now", "2016-05-01", "opt-in", "pp", "-a", "globex", "-a", "piedpiper"
    )
    assert late.exit_code == 1
    assert "for plan 'free' ended at 2016-04-01" in flat(late.stderr)
    assert dump(db) == before
    assert state(db, "pp", "globex") == "pending"
