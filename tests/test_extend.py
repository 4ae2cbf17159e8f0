"""`migctl extend` (SPEC rule 3b) as an operator meets it: their folder, the CLI, the .eml files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.test_operator_policy import emls, operator_folder, setup_and_sync, text_of

# strict-cors is due 2024-04-01 for everyone; tiered-rollout has free 04-01, enterprise 06-01,
# developer TBD; legacy-token-endpoint is TBD.
ACCOUNTS = (
    "a1,Alpha,free,,2020-01-01,active,one@x.test\n"
    "a2,Beta,enterprise,,2020-01-01,active,one@x.test\n"
    "a3,Gamma,developer,,2020-01-01,active,two@x.test\n"
    "a4,Delta,free,,2020-01-01,active,three@x.test\n"
    "a5,Epsilon,free,,2020-01-01,closed,five@x.test\n"
)
EXTENDED = ["extend", "strict-cors", "--account", "a4", "--until", "2024-05-01"]


@pytest.fixture
def folder(runner: RunCli) -> None:
    operator_folder(accounts=ACCOUNTS)
    # One more migration for enterprise accounts only: a4 is outside its audience.
    with Path("migrations.yaml").open("a") as handle:
        handle.write(
            "  - id: sso-only\n"
            "    title: SSO Only\n"
            "    severity: medium\n"
            "    grace_period_start: 2024-02-01\n"
            "    mandatory_opt_in: 2024-04-01\n"
            "    summary: Enterprise accounts sign in with SSO.\n"
            "    applies_to: {plans: [enterprise]}\n"
        )
    setup_and_sync(runner)


def _snapshot() -> tuple[int, int, int]:
    with sqlite3.connect("migctl.db") as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("extensions", "audit", "events")
        )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["extend", "strict-cors", "--account", "a4", "--until", "2024-03-20"], "later than"),
        (["extend", "strict-cors", "--account", "a4", "--until", "2024-04-01"], "later than"),
        (["extend", "legacy-token-endpoint", "--account", "a4", "--until", "2024-09-01"], "TBD"),
        (["extend", "tiered-rollout", "--account", "a3", "--until", "2024-09-01"], "TBD"),
        (
            ["extend", "sso-only", "--account", "a4", "--until", "2024-09-01"],
            "outside the audience",
        ),
        (["extend", "strict-cors", "--account", "a5", "--until", "2024-09-01"], "closed"),
        (
            ["extend", "strict-cors", "--account", "nobody", "--until", "2024-09-01"],
            "unknown account",
        ),
        (["extend", "no-such", "--account", "a4", "--until", "2024-09-01"], "no-such"),
    ],
)
def test_a_refused_extension_says_why_and_writes_nothing(
    runner: RunCli, folder: None, args: list[str], says: str
) -> None:
    before = _snapshot()
    result = runner("--now", "2024-03-01", *args, "--reason", "asked")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert says in result.stderr
    assert _snapshot() == before


def test_usage_mistakes_exit_2(runner: RunCli, folder: None) -> None:
    assert runner("--now", "2024-03-01", *EXTENDED[:-2], "--reason", "x").exit_code == 2
    bad = runner("--now", "2024-03-01", *EXTENDED[:-1], "2024/05/01", "--reason", "x")
    assert bad.exit_code == 2 and "--until" in bad.stderr
    assert runner("--now", "2024-03-01", *EXTENDED, "--reason", "  ").exit_code == 2
    assert _snapshot()[0] == 0


def test_a_switched_account_cannot_be_extended(runner: RunCli, folder: None) -> None:
    now = ["--now", "2024-03-01"]
    assert runner(*now, "opt-in", "strict-cors", "--account", "a4", "--reason", "r").exit_code == 0
    before = _snapshot()
    refused = runner(*now, *EXTENDED, "--reason", "asked")
    assert refused.exit_code == 1 and "already switched" in refused.stderr
    assert _snapshot() == before


def test_an_extended_account_is_enforced_on_its_own_date_and_told_its_own_date(
    runner: RunCli, folder: None
) -> None:
    done = runner("--now", "2024-03-01", *EXTENDED, "--reason", "migrating in April", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["previous_date"] == "2024-04-01"
    # A later extension of an extension is fine; an earlier one is not.
    later = runner("--now", "2024-03-02", *EXTENDED[:-1], "2024-05-15", "--reason", "more")
    assert later.exit_code == 0, later.stderr
    back = runner("--now", "2024-03-02", *EXTENDED, "--reason", "less")
    assert back.exit_code == 1 and "2024-05-15" in back.stderr

    status = json.loads(runner("--now", "2024-03-02", "status", "--json").stdout)
    cors = next(m for m in status["migrations"] if m["id"] == "strict-cors")
    assert cors["extended"] == {"accounts": 1, "until": {"2024-05-15": 1}}
    shown_text = runner("--now", "2024-03-02", "status").stdout
    assert "strict-cors: 1 account(s) extended (1 until 2024-05-15)" in shown_text
    shown = json.loads(runner("--now", "2024-03-02", "accounts", "show", "a4", "--json").stdout)
    ext = next(e for e in shown["enrollments"] if e["migration"] == "strict-cors")["extension"]
    assert ext["until"] == "2024-05-15" and ext["reason"] == "more"
    audit = runner("--now", "2024-03-02", "audit", "--json")
    assert audit.stdout.count("enrollment.extended") == 2, audit.stdout
    Path("dash").mkdir()
    assert (
        runner("--now", "2024-03-02", "dashboard", "export", "--out", "dash/d.json").exit_code == 0
    )
    dash = json.loads(Path("dash/d.json").read_text())
    assert "2024-05-15" in json.dumps(dash) and "2024-04-01" in json.dumps(dash)

    # Reminders before the plan's date: a4's administrator hears of a4's own date only.
    assert runner("--now", "2024-03-25", "run").exit_code == 0
    three = [text_of(m) for m in emls(migration="strict-cors") if str(m["To"]) == "three@x.test"]
    assert three and all("1 April 2024" not in t and "15 May 2024" in t for t in three)

    on_plan_date = json.loads(runner("--now", "2024-04-01", "run", "--json").stdout)
    assert on_plan_date["enforced"]["strict-cors"] == 3  # a1, a2 and a3; not a4
    assert not [m for m in emls("enforced", "strict-cors") if str(m["To"]) == "three@x.test"]
    between = json.loads(runner("--now", "2024-05-14", "run", "--json").stdout)
    assert between["enforced"].get("strict-cors") is None

    on_own_date = json.loads(runner("--now", "2024-05-15", "run", "--json").stdout)
    assert on_own_date["enforced"]["strict-cors"] == 1
    told = [m for m in emls("enforced", "strict-cors") if str(m["To"]) == "three@x.test"]
    assert len(told) == 1 and "Delta" in text_of(told[0])
    shown = json.loads(runner("--now", "2024-05-15", "accounts", "show", "a4", "--json").stdout)
    states = {e["migration"]: e["state"] for e in shown["enrollments"]}
    assert states["strict-cors"] == "enforced"
    status = json.loads(runner("--now", "2024-05-15", "status", "--json").stdout)
    cors = next(m for m in status["migrations"] if m["id"] == "strict-cors")
    assert cors["extended"]["accounts"] == 0
    assert (
        runner("--now", "2024-05-15", *EXTENDED[:-1], "2024-06-01", "--reason", "x").exit_code == 1
    )
