"""`migctl enforce`: never early, per plan, immediate changes, idempotence, dry runs, the valve.

Every command runs as a real subprocess with the host timezone forced to Pacific/Auckland while
the migrations are defined in America/New_York (see helpers_enforce): 2016-05-11 starts at
2016-05-11T04:00:00Z, whatever the host thinks.
"""

from __future__ import annotations

import json
import os
import subprocess
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from helpers_enforce import (
    HOTFIX,
    MAIL,
    PER_PLAN,
    TBD,
    base_env,
    command,
    dump,
    fingerprint,
    json_out,
    migctl,
    ok,
    query,
    setup_store,
    states,
)

# enforced: every active account created before the grace start and not opted in.
MAIL_DUE = {"ent-1", "ent-2", "free-1", "free-2", "dev-1"}


def enforce_json(folder: Path, now: str, *args: str) -> dict:
    return json_out(ok(migctl(folder, "--now", now, "enforce", *args, "--json")))


def status_of(folder: Path, now: str, migration: str) -> dict:
    doc = json_out(ok(migctl(folder, "--now", now, "status", "--json")))
    (m,) = [m for m in doc["migrations"] if m["id"] == migration]
    return m


def eml_texts(folder: Path, needle: str) -> list[tuple[str, str]]:
    """(subject, text body) of every .eml written by the file provider whose name has needle."""
    out = []
    for path in sorted((folder / "outbox").glob("*.eml")):
        if needle not in path.name:
            continue
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        out.append((str(msg["Subject"]), body.get_content()))
    return out


# --------------------------------------------------------------------------- never early


def test_nothing_a_second_before_the_instant_everything_at_it(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, opt_in=[("mail", "optin-1", "2016-04-20")])
    before = states(db, "mail")
    assert before == {"optin-1": "opted_in"}

    # Midnight in Auckland (the host) is long before midnight in New York (the store).
    for early in ("2016-05-11T03:59:59Z", "2016-05-10T23:59:59", "2016-05-11T00:00:00+12:00"):
        doc = enforce_json(tmp_path, early)
        assert doc["batches"] == [] and doc["enforced"] == {}, early
        assert states(db, "mail") == before
        run = json_out(ok(migctl(tmp_path, "--now", early, "run", "--json")))
        assert run["enforced"] == {}
        assert states(db, "mail") == before

    doc = enforce_json(tmp_path, "2016-05-11T04:00:00Z")  # == 2016-05-11 00:00 in New York
    assert doc["enforced"] == {"mail": len(MAIL_DUE)}
    (batch,) = doc["batches"]
    assert batch["deadline"] == "2016-05-11" and batch["immediate"] is False
    after = states(db, "mail")
    assert {a for a, s in after.items() if s == "enforced"} == MAIL_DUE
    # Opted-in stays opted-in; the auto-enrolled and the closed account get no row at all.
    assert after["optin-1"] == "opted_in"
    assert "new-1" not in after and "closed-1" not in after

    m = status_of(tmp_path, "2016-05-12", "mail")
    assert m["phase"] == "enforced"
    assert m["accounts"] == {
        "total": 7,
        "pending": 0,
        "opted_in": 1,
        "auto_enrolled": 1,
        "enforced": 5,
    }
    # One audit event per switched account, and one for the migration.
    events = query(
        db,
        "SELECT account_id, detail FROM audit WHERE action = 'enrollment.enforced' "
        "AND migration_id = 'mail'",
    )
    assert sorted(e["account_id"] for e in events) == sorted(MAIL_DUE)
    assert all(json.loads(e["detail"])["batch"] == "enforced-*-2016-05-11" for e in events)
    (mig_event,) = query(
        db, "SELECT detail FROM audit WHERE action = 'migration.enforced' AND migration_id = 'mail'"
    )
    assert json.loads(mig_event["detail"])["accounts"] == 5
    # One `enforced` notice queued per administrator of an enforced account (shared@ once).
    keys = query(db, "SELECT email FROM outbox WHERE kind = 'enforced' ORDER BY email")
    assert [k["email"] for k in keys] == [
        "a@x.test",
        "b@x.test",
        "c@x.test",
        "d@x.test",
        "e@x.test",
        "shared@x.test",
    ]


def test_tbd_is_never_enforced_even_years_later(tmp_path: Path) -> None:
    db = setup_store(tmp_path, TBD, MAIL)
    doc = enforce_json(tmp_path, "2030-01-01")
    assert "someday" not in doc["enforced"]
    assert enforce_json(tmp_path, "2031-06-01", "someday") == {
        "now": "2031-06-01T04:00:00Z",
        "dry_run": False,
        "batches": [],
        "enforced": {},
    }
    run = json_out(ok(migctl(tmp_path, "--now", "2032-01-01", "run", "--json")))
    assert "someday" not in run["enforced"]
    assert states(db, "someday") == {}
    assert query(db, "SELECT * FROM enforcements WHERE migration_id = 'someday'") == []
    m = status_of(tmp_path, "2032-01-01", "someday")
    assert m["phase"] == "grace" and m["mandatory_opt_in"] is None
    assert m["accounts"]["pending"] == 6 and m["accounts"]["enforced"] == 0


# --------------------------------------------------------------------------- per plan


def test_per_plan_dates_enforce_each_plan_on_its_own_day(tmp_path: Path) -> None:
    db = setup_store(tmp_path, PER_PLAN, opt_in=[("perplan", "optin-1", "2016-04-20")])

    def run_at(now: str) -> dict:
        return json_out(ok(migctl(tmp_path, "--now", now, "run", "--json")))

    assert run_at("2016-04-30T23:59:59")["enforced"] == {}
    first = run_at("2016-05-01")
    assert first["enforced"] == {"perplan": 2}
    assert first["notices"]["by_kind"]["enforced"] == 3  # c@, d@, shared@
    assert {a for a, s in states(db, "perplan").items() if s == "enforced"} == {"free-1", "free-2"}

    m = status_of(tmp_path, "2016-05-15", "perplan")
    plans = {p["plan"]: p for p in m["plans"]}
    assert (
        plans["free"]["phase"] == "enforced" and plans["free"]["mandatory_opt_in"] == "2016-05-01"
    )
    assert plans["enterprise"]["phase"] == "grace" and plans["enterprise"]["days_left"] == 17
    assert m["mandatory_opt_in"] == {"enterprise": "2016-06-01", "free": "2016-05-01"}

    assert run_at("2016-05-31T23:59:59")["enforced"] == {}
    second = run_at("2016-06-01")
    assert second["enforced"] == {"perplan": 2}
    assert second["notices"]["by_kind"].get("enforced") == 3  # a@, b@, shared@
    final = states(db, "perplan")
    assert {a for a, s in final.items() if s == "enforced"} == {
        "free-1",
        "free-2",
        "ent-1",
        "ent-2",
    }
    assert final["optin-1"] == "opted_in"
    assert "dev-1" not in final  # the developer plan has no date: TBD for it

    # Each batch has its own `enforced` notice: the shared administrator got two.
    shared = query(
        db,
        "SELECT slot, state, accounts FROM outbox WHERE kind = 'enforced' AND email = ? ORDER BY slot",
        ("shared@x.test",),
    )
    assert [(r["slot"], r["state"], json.loads(r["accounts"])) for r in shared] == [
        ("enforced-enterprise-2016-06-01", "sent", ["ent-1"]),
        ("enforced-free-2016-05-01", "sent", ["free-1"]),
    ]
    assert len(eml_texts(tmp_path, "shared_x_test_enforced")) == 2

    m = status_of(tmp_path, "2016-06-02", "perplan")
    assert {p["plan"]: p["phase"] for p in m["plans"]} == {
        "enterprise": "enforced",
        "free": "enforced",
    }
    assert run_at("2030-01-01")["enforced"] == {}  # developer: never, years later
    assert "dev-1" not in states(db, "perplan")


# --------------------------------------------------------------------------- immediate changes


def test_critical_zero_grace_is_enforced_on_the_first_run_after_its_start(tmp_path: Path) -> None:
    db = setup_store(tmp_path, HOTFIX)
    before = json_out(ok(migctl(tmp_path, "--now", "2016-06-09T23:59:59", "run", "--json")))
    assert before["enforced"] == {}
    assert states(db, "hotfix") == {}

    doc = json_out(ok(migctl(tmp_path, "--now", "2016-06-10T00:00:01", "run", "--json")))
    assert doc["enforced"] == {"hotfix": 7}  # every active account: all predate the start
    assert doc["notices"]["by_kind"] == {"enforced": 8}
    assert doc["notices"]["sent"] == 8
    assert set(states(db, "hotfix").values()) == {"enforced"}
    (row,) = query(db, "SELECT immediate, scope FROM enforcements WHERE migration_id = 'hotfix'")
    assert row["immediate"] == 1 and row["scope"] == "*"
    mails = eml_texts(tmp_path, "hotfix_")
    assert len(mails) == 8
    for subject, text in mails:
        assert subject.startswith("[Platform] Emergency change: Security hotfix is now on")
        assert "EMERGENCY CHANGE" in text
    # No announcement or reminder ever goes out for an already-enforced change.
    again = json_out(ok(migctl(tmp_path, "--now", "2016-06-20", "run", "--json")))
    assert again["enforced"] == {} and again["notices"]["planned"] == 0


def test_enforce_immediately_needs_a_reason_and_records_it(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, opt_in=[("mail", "optin-1", "2016-04-20")])
    snapshot = dump(db)
    for args in (
        ("enforce", "mail", "--immediately"),
        ("enforce", "mail", "--immediately", "--reason", "   "),
        ("enforce", "--immediately", "--reason", "no migration named"),
    ):
        r = migctl(tmp_path, "--now", "2016-04-20", *args)
        assert r.returncode == 2, r  # a usage error (SPEC exit codes)
        assert "--reason" in r.stderr
    assert dump(db) == snapshot

    reason = "CVE-2016-0001 is being exploited"
    doc = enforce_json(tmp_path, "2016-04-20", "mail", "--immediately", "--reason", reason)
    assert doc["enforced"] == {"mail": 5}
    assert doc["batches"][0]["immediate"] is True
    assert states(db, "mail")["optin-1"] == "opted_in"
    # The reason is in the audit log: the migration event and every account's event.
    audit = json_out(ok(migctl(tmp_path, "audit", "--migration", "mail", "--json")))["events"]
    (mig,) = [e for e in audit if e["action"] == "migration.enforced"]
    assert mig["detail"]["reason"] == reason and mig["detail"]["immediate"] is True
    per_account = [e for e in audit if e["action"] == "enrollment.enforced"]
    assert sorted(e["account_id"] for e in per_account) == sorted(MAIL_DUE)
    assert all(e["detail"]["reason"] == reason for e in per_account)
    assert {
        r["reason"] for r in query(db, "SELECT reason FROM enrollments WHERE state = 'enforced'")
    } == {reason}

    ok(migctl(tmp_path, "--now", "2016-04-20", "run", "--json"))
    mails = eml_texts(tmp_path, "mail_")
    enforced = [(s, t) for s, t in mails if "Emergency change" in s]
    assert len(enforced) == 6
    for _, text in enforced:
        assert "EMERGENCY CHANGE" in text
        assert f"Reason: {reason}" in text

    # Repeating the operator's command, or reaching the date later, changes nothing.
    snapshot = dump(db)
    again = enforce_json(tmp_path, "2016-04-21", "mail", "--immediately", "--reason", "again")
    assert again["enforced"] == {}
    assert dump(db) == snapshot
    later = json_out(ok(migctl(tmp_path, "--now", "2016-05-12", "run", "--json")))
    assert later["enforced"] == {} and later["notices"]["planned"] == 0


# --------------------------------------------------------------------------- idempotence


def test_a_second_enforce_or_run_changes_nothing(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, PER_PLAN)
    first = enforce_json(tmp_path, "2016-06-01")
    assert first["enforced"] == {"mail": 6, "perplan": 5}  # nobody opted in here
    snapshot = dump(db)
    second = enforce_json(tmp_path, "2016-06-01")
    assert second["batches"] == [] and second["enforced"] == {}
    assert enforce_json(tmp_path, "2016-07-01")["enforced"] == {}
    assert dump(db) == snapshot

    ok(migctl(tmp_path, "--now", "2016-06-01", "run", "--json"))
    snapshot = dump(db)
    again = json_out(ok(migctl(tmp_path, "--now", "2016-06-01", "run", "--json")))
    assert again["enforced"] == {} and again["notices"]["planned"] == 0
    assert again["notices"]["sent"] == 0
    assert dump(db) == snapshot


def test_late_imported_account_is_enforced_next_run_with_one_audit_event_each(
    tmp_path: Path,
) -> None:
    """An account imported after the enforcement (created before the grace start) is caught by
    the next run, even at the same --now, and nobody is audited twice."""
    db = setup_store(tmp_path, MAIL)
    assert enforce_json(tmp_path, "2016-05-11")["enforced"] == {"mail": 6}
    (tmp_path / "late.csv").write_text(
        "id,name,plan,tags,created_at,status,admins\nlate-1,Late,free,,2015-01-01,active,z@x.test\n"
    )
    ok(migctl(tmp_path, "--now", "2016-05-11", "accounts", "import", "late.csv"))
    assert enforce_json(tmp_path, "2016-05-11")["enforced"] == {"mail": 1}
    rows = query(
        db,
        "SELECT account_id, count(*) AS n FROM audit WHERE action = 'enrollment.enforced' "
        "GROUP BY account_id",
    )
    assert {r["account_id"]: r["n"] for r in rows} == dict.fromkeys(
        [*MAIL_DUE, "optin-1", "late-1"], 1
    )
    (row,) = query(db, "SELECT accounts FROM enforcements WHERE migration_id = 'mail'")
    assert row["accounts"] == 7


def test_late_enforced_account_gets_its_own_enforced_notice(tmp_path: Path) -> None:
    """An administrator who already had the batch's `enforced` notice is still told about an
    account switched later (its own batch slot), and nobody else is notified twice."""
    db = setup_store(tmp_path, MAIL)
    enforce_json(tmp_path, "2016-05-11")
    before = {r["key"] for r in query(db, "SELECT key FROM outbox WHERE kind = 'enforced'")}
    assert any("|a@x.test|" in k for k in before)
    (tmp_path / "late.csv").write_text(
        "id,name,plan,tags,created_at,status,admins\nlate-2,Late,free,,2015-01-01,active,a@x.test\n"
    )
    ok(migctl(tmp_path, "--now", "2016-05-12", "accounts", "import", "late.csv"))
    enforce_json(tmp_path, "2016-05-12")
    after = {r["key"] for r in query(db, "SELECT key FROM outbox WHERE kind = 'enforced'")}
    new = after - before
    assert len(new) == 1
    (key,) = new
    assert "|a@x.test|enforced|enforced-*-late" in key and key.endswith("-2016-05-11")


def test_a_batch_enforced_again_at_the_same_instant_lists_all_its_accounts(
    tmp_path: Path,
) -> None:
    """Notices of a new batch are built from the accounts just switched; a batch name used
    again (a late batch run twice at the same --now) still lists every account of the batch
    for an administrator told for the first time, as read back from the enrollments."""
    db = setup_store(tmp_path, MAIL)
    enforce_json(tmp_path, "2016-05-11")
    header = "id,name,plan,tags,created_at,status,admins\n"
    (tmp_path / "late1.csv").write_text(header + "late-1,L1,free,,2015-01-01,active,z@x.test\n")
    ok(migctl(tmp_path, "--now", "2016-05-12", "accounts", "import", "late1.csv"))
    assert enforce_json(tmp_path, "2016-05-12")["enforced"] == {"mail": 1}

    def listed(email: str) -> list[list[str]]:
        return [
            json.loads(r["accounts"])
            for r in query(
                db,
                "SELECT accounts FROM outbox WHERE kind = 'enforced' AND email = ? "
                "AND slot LIKE 'enforced-*-late%'",
                (email,),
            )
        ]

    assert listed("z@x.test") == [["late-1"]]
    (tmp_path / "late2.csv").write_text(
        header + "late-1,L1,free,,2015-01-01,active,y@x.test;z@x.test\n"
        "late-2,L2,free,,2015-01-01,active,y@x.test\n"
    )
    ok(migctl(tmp_path, "--now", "2016-05-12", "accounts", "import", "late2.csv"))
    assert enforce_json(tmp_path, "2016-05-12")["enforced"] == {"mail": 1}
    assert listed("y@x.test") == [["late-1", "late-2"]]
    assert listed("z@x.test") == [["late-1"]]  # already told: not queued twice


# --------------------------------------------------------------------------- dry run


def test_enforce_dry_run_writes_nothing(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, PER_PLAN)
    before = fingerprint(db)
    doc = enforce_json(tmp_path, "2016-06-01", "--dry-run")
    assert doc["dry_run"] is True
    assert {(b["migration"], b["scope"], b["accounts"]) for b in doc["batches"]} == {
        ("mail", "*", 6),
        ("perplan", "enterprise", 3),
        ("perplan", "free", 2),
    }
    text = ok(migctl(tmp_path, "--now", "2016-06-01", "enforce", "--dry-run")).stdout
    assert "would switch" in text and "dry run: nothing was written" in text
    assert fingerprint(db) == before
    assert states(db, "mail") == {}


def test_enforce_dry_run_sums_per_plan_batches(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL, PER_PLAN)
    doc = enforce_json(tmp_path, "2016-06-01", "--dry-run")
    assert doc["enforced"] == {"mail": 6, "perplan": 5}


# --------------------------------------------------------------------------- the valve


def run_on_tty(folder: Path, *args: str, answer: str | None) -> tuple[int, str]:
    """Run migctl with a pseudo-terminal as stdin (and MIGCTL_FORCE_TERMINAL=1)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            command(folder, *args),
            cwd=folder,
            env=base_env({"MIGCTL_FORCE_TERMINAL": "1", "MIGCTL_WIDTH": "200"}),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        os.close(slave)
        slave = -1
        if answer is not None:
            os.write(master, answer.encode())
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"migctl waited for an answer that never came:\n{out}")
        return proc.returncode, out
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)


def test_confirmation_valve_on_a_terminal(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, max_confirm=2)
    before = fingerprint(db)
    code, out = run_on_tty(tmp_path, "--now", "2016-05-11", "enforce", answer="n\n")
    assert code == 1, out
    assert "Switch 6 account(s) now?" in out
    assert "aborted: nothing was switched" in out
    assert fingerprint(db) == before
    assert states(db, "mail") == {}

    code, out = run_on_tty(tmp_path, "--now", "2016-05-11", "enforce", "--yes", answer=None)
    assert code == 0, out
    assert "now?" not in out
    assert len(states(db, "mail")) == 6


def test_confirmation_answer_yes_proceeds(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, max_confirm=2)
    code, out = run_on_tty(tmp_path, "--now", "2016-05-11", "enforce", answer="y\n")
    assert code == 0, out
    assert "Switch 6 account(s) now?" in out
    assert len(states(db, "mail")) == 6


def test_no_prompt_under_the_limit_or_without_a_terminal(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, PER_PLAN, max_confirm=2)
    # Per-plan free batch: 2 accounts, not more than the limit: no question on a terminal.
    code, out = run_on_tty(tmp_path, "--now", "2016-05-01", "enforce", "perplan", answer=None)
    assert code == 0, out
    assert "now?" not in out
    # Cron: no terminal on stdin, even with a forced terminal on stdout, proceeds.
    r = migctl(tmp_path, "--now", "2016-05-11", "enforce", env={"MIGCTL_FORCE_TERMINAL": "1"})
    ok(r)
    assert "now?" not in r.stdout
    assert len(states(db, "mail")) == 6


def test_cron_enforcement_reports_what_it_switched_without_counting_first(
    tmp_path: Path,
) -> None:
    """Without a terminal the accounts are not counted before switching (a full scan at a
    million accounts): the batch is found, the output reports what was switched, a scope
    enforced before is only checked for late accounts, and a dry run still counts."""
    from migrate_cli.lifecycle.enforcement import due_enforcements
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone
    from migrate_cli.timeutil import parse_instant

    db = setup_store(tmp_path, MAIL)
    with Store(db, create=False) as store:
        catalog = load_catalog(store)
        tz = store_timezone(store)
        at = parse_instant("2016-05-11", tz)
        (uncounted,) = due_enforcements(store, catalog, tz, at, "mail", counted=False)
        (counted,) = due_enforcements(store, catalog, tz, at, "mail", with_admins=False)
    assert (uncounted.accounts, counted.accounts) == (None, 6)
    dry = enforce_json(tmp_path, "2016-05-11", "--dry-run")
    assert dry["batches"][0]["accounts"] == 6
    doc = enforce_json(tmp_path, "2016-05-11")
    assert doc["batches"][0]["accounts"] == 6 and doc["enforced"] == {"mail": 6}
    with Store(db, create=False) as store:
        catalog = load_catalog(store)
        # Enforced before, nothing pending: no batch, counted or not.
        assert due_enforcements(store, catalog, tz, at, "mail", counted=False) == []
    (tmp_path / "late.csv").write_text(
        "id,name,plan,tags,created_at,status,admins\nlate-9,Late,free,,2015-01-01,active,z@x.test\n"
    )
    ok(migctl(tmp_path, "--now", "2016-05-11", "accounts", "import", "late.csv"))
    with Store(db, create=False) as store:
        catalog = load_catalog(store)
        (late,) = due_enforcements(store, catalog, tz, at, "mail", counted=False)
    assert late.late is not None and late.accounts is None
    assert enforce_json(tmp_path, "2016-05-11")["batches"][0]["accounts"] == 1


# --------------------------------------------------------------------------- the valve as a rule


@pytest.mark.parametrize(
    ("yes", "interactive", "accounts", "asks"),
    [
        (False, True, 3, True),  # a person at a terminal, above the limit
        (False, True, 2, False),  # at the limit: no question
        (True, True, 3, False),  # --yes
        (False, False, 3, False),  # cron: nobody to answer, it proceeds
        (True, False, 10**6, False),
    ],
)
def test_when_the_valve_asks(yes: bool, interactive: bool, accounts: int, asks: bool) -> None:
    from migrate_cli.lifecycle.enforcement import ConfirmPolicy

    policy = ConfirmPolicy(limit=2, yes=yes, interactive=interactive)
    assert policy.must_ask(accounts) is asks
    assert policy.may_ask is (interactive and not yes)  # only then are accounts counted first


@pytest.mark.parametrize(
    ("answer", "accepted"),
    [
        ("y", True),
        ("YES", True),
        (" yes \n", True),
        ("", False),
        ("n", False),
        ("no", False),
        ("yep", False),
        ("y es", False),
        ("maybe", False),
    ],
)
def test_only_a_yes_confirms(answer: str, accepted: bool) -> None:
    from migrate_cli.lifecycle.enforcement import ConfirmPolicy

    assert ConfirmPolicy.accepts(answer) is accepted


def _enforce_in_process(db: Path, policy, answer: str | None):  # type: ignore[no-untyped-def]
    from migrate_cli.lifecycle.enforcement import enforce
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import store_timezone
    from migrate_cli.timeutil import parse_instant

    asked: list[tuple[list[str], str]] = []

    def ask(batches, question):  # type: ignore[no-untyped-def]
        asked.append(([b.migration_id for b in batches], question))
        assert answer is not None, "asked although the policy says nobody can answer"
        return answer

    with Store(db, create=False) as store:
        now = parse_instant("2016-05-11", store_timezone(store))
        outcome = enforce(
            store, now, actor="t", from_addr="n@platform.example", policy=policy, ask=ask
        )
    return outcome, asked


def test_a_refused_question_switches_nothing_and_a_yes_switches_all(tmp_path: Path) -> None:
    from migrate_cli.lifecycle.enforcement import ConfirmPolicy, NotConfirmed

    db = setup_store(tmp_path, MAIL)
    before = dump(db)
    policy = ConfirmPolicy(limit=2, interactive=True)
    with pytest.raises(NotConfirmed):
        _enforce_in_process(db, policy, "maybe")
    assert dump(db) == before
    outcome, asked = _enforce_in_process(db, policy, "y")
    assert asked == [(["mail"], "Switch 6 account(s) now? [y/N]")]
    assert outcome.report is not None and outcome.to_json()["enforced"] == {"mail": 6}
    assert len(states(db, "mail")) == 6


def test_without_a_person_nothing_is_asked_or_counted_first(tmp_path: Path) -> None:
    from migrate_cli.lifecycle.enforcement import ConfirmPolicy

    db = setup_store(tmp_path, MAIL)
    outcome, asked = _enforce_in_process(db, ConfirmPolicy(limit=2, interactive=False), None)
    assert asked == []
    assert outcome.to_json()["enforced"] == {"mail": 6}  # what the enforcement itself switched
