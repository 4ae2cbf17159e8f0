"""Issue 13 as an operator meets it: their own folder, their own migrations.yaml, the CLI, .eml files."""

from __future__ import annotations

import json
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from tests.conftest import RunCli

# Three migrations: one TBD, one dated, one with per-plan dates (free early, enterprise later,
# developer TBD). Grace periods start on 2024-02-01.
MIGRATIONS = """\
defaults:
  timezone: {tz}
  notices:
    reminder_every: 14d
    escalate_before: [30d, 14d, 7d, 3d, 1d]
    min_gap: 2d
migrations:
  - id: legacy-token-endpoint
    title: Legacy Token Endpoint
    severity: high
    grace_period_start: 2024-02-01
    mandatory_opt_in: TBD
    summary: The legacy token endpoint goes away.
  - id: strict-cors
    title: Strict CORS
    severity: medium
    grace_period_start: 2024-02-01
    mandatory_opt_in: {dated}
    summary: Origins must be listed.
  - id: tiered-rollout
    title: Tiered Rollout
    severity: medium
    grace_period_start: 2024-02-01
    mandatory_opt_in: {{free: {free}, enterprise: {enterprise}, developer: TBD}}
    summary: A change rolled out plan by plan.
"""

CONFIG = """\
environment = "development"

[email]
provider = "file"
from = "Platform Notices <notices@platform.example>"

[email.file]
directory = "outbox"
"""

HEADER = "id,name,plan,tags,created_at,status,admins\n"


def operator_folder(
    *,
    dated: str = "2024-04-01",
    free: str = "2024-04-01",
    enterprise: str = "2024-06-01",
    tz: str = "UTC",
    accounts: str = "",
) -> None:
    """The operator's own files in the current (temporary) folder; no templates of their own."""
    Path("migrations.yaml").write_text(
        MIGRATIONS.format(tz=tz, dated=dated, free=free, enterprise=enterprise)
    )
    Path("migctl.toml").write_text(CONFIG)
    Path("accounts.csv").write_text(HEADER + accounts)


def emls(kind: str | None = None, migration: str | None = None) -> list[EmailMessage]:
    out = []
    for path in sorted(Path("outbox").glob("*.eml")) if Path("outbox").is_dir() else []:
        with path.open("rb") as handle:
            msg = BytesParser(policy=policy.default).parse(handle)
        assert isinstance(msg, EmailMessage)
        if kind is not None and f"_{kind}_" not in path.name:
            continue
        if migration is not None and not path.name.startswith(migration + "_"):
            continue
        out.append(msg)
    return out


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def setup_and_sync(runner: RunCli, now: str = "2024-01-15") -> None:
    assert runner("--now", now, "sync").exit_code == 0
    result = runner("--now", now, "accounts", "import", "accounts.csv")
    assert result.exit_code == 0, result.stderr


SMALL = (
    "a1,Alpha,free,,2020-01-01,active,one@x.test\n"
    "a2,Beta,enterprise,,2020-01-01,active,one@x.test\n"
    "a3,Gamma,developer,,2020-01-01,active,two@x.test\n"
)


# --- item 8: usage mistakes exit 2; unknown migration filters say "did you mean" ------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--now", "2024/03/01", "status"],
        ["opt-in", "strict-cors"],
        ["preview", "strict-cors", "--kind", "bogus"],
        ["outbox", "list", "--state", "bogus"],
        ["notify", "--test-to", "me@x.test", "--kind", "bogus"],
    ],
)
def test_usage_mistakes_exit_2_and_write_nothing(runner: RunCli, args: list[str]) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    before = Path("migctl.db").read_bytes()
    result = runner(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert Path("migctl.db").read_bytes() == before


@pytest.mark.parametrize("args", [["audit", "--migration"], ["outbox", "list", "--migration"]])
def test_a_filter_naming_an_unknown_migration_is_an_error_with_a_hint(
    runner: RunCli, args: list[str]
) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    result = runner(*args, "strict-cros")
    assert result.exit_code == 1
    assert "no migration 'strict-cros'" in result.stderr
    assert "did you mean 'strict-cors'?" in result.stderr
    assert result.stdout == ""
    assert runner(*args, "strict-cors").exit_code == 0


# --- item 7: the README's first step works in the operator's folder -------------------------------


def test_validate_passes_in_an_operator_folder_with_the_shipped_templates(runner: RunCli) -> None:
    operator_folder()
    result = runner("validate")
    assert result.exit_code == 0, result.stderr
    assert "ok:" in result.stdout and "warning" not in result.stderr


def test_an_override_folder_of_an_unknown_migration_is_a_warning(
    runner: RunCli, repo_root: Path
) -> None:
    import shutil

    operator_folder()
    shutil.copytree(repo_root / "email_templates", "email_templates")
    Path("email_templates/retired-thing").mkdir()
    result = runner("validate")
    assert result.exit_code == 0, result.stderr
    assert "warning: " in result.stderr and "'retired-thing'" in result.stderr
    doc = json.loads(runner("validate", "--json").stdout)
    assert doc["valid"] is True
    assert [w["message"] for w in doc["warnings"]] == [
        "override folder 'retired-thing' is not a known migration id (ignored)"
    ]


@pytest.mark.parametrize(
    "args",
    [["run"], ["opt-in", "x", "--account", "a"], ["enforce", "x"], ["sync"]],
)
def test_a_failing_command_in_an_empty_folder_leaves_no_file(
    runner: RunCli, args: list[str]
) -> None:
    result = runner(*args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert sorted(p.name for p in Path().iterdir()) == []


def test_a_failing_command_keeps_a_store_that_holds_data(runner: RunCli) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    Path("migrations.yaml").unlink()
    result = runner("run")
    assert result.exit_code == 1
    assert Path("migctl.db").is_file()


# --- item 4: a hand-run notify after the date says enforcement is due -----------------------------


def test_notify_after_the_date_says_enforcement_is_due_and_what_to_run(runner: RunCli) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    before = runner("--now", "2024-03-31", "notify", "--json")
    assert json.loads(before.stdout)["enforcement_due"] == {}
    doc = json.loads(runner("--now", "2024-04-02", "notify", "--dry-run", "--json").stdout)
    # strict-cors (one date) for all three accounts, tiered-rollout's free plan for a1
    assert doc["enforcement_due"] == {"strict-cors": 3, "tiered-rollout": 1}
    human = runner("--now", "2024-04-02", "notify")
    assert human.exit_code == 0, human.stderr
    assert "enforcement due: strict-cors: 3 account(s)" in human.stdout
    assert "run `migctl enforce strict-cors`" in human.stdout
    assert runner("--now", "2024-04-02", "enforce").exit_code == 0
    after = json.loads(runner("--now", "2024-04-02", "notify", "--json").stdout)
    assert after["enforcement_due"] == {}


# --- item 3: late accounts (rule 3) ---------------------------------------------------------------


def test_an_account_imported_after_an_immediate_enforcement_is_switched_and_told(
    runner: RunCli,
) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    now = ["--now", "2024-02-10"]
    cve = runner(*now, "enforce", "legacy-token-endpoint", "--immediately", "--reason", "CVE")
    assert cve.exit_code == 0, cve.stderr
    assert runner(*now, "run").exit_code == 0
    told_first = {str(m["To"]) for m in emls("enforced", "legacy-token-endpoint")}
    assert told_first == {"one@x.test", "two@x.test"}
    Path("late.csv").write_text(HEADER + "old1,Old One,developer,,2019-05-01,active,late@x.test\n")
    assert runner("--now", "2024-02-11", "accounts", "import", "late.csv").exit_code == 0

    dry = json.loads(runner("--now", "2024-02-11", "enforce", "--dry-run", "--json").stdout)
    assert dry["enforced"] == {"legacy-token-endpoint": 1}
    plan = json.loads(
        runner("--now", "2024-02-11", "plan", "--until", "2024-02-12", "--json").stdout
    )
    first = plan["days"][0]
    assert first["enforced"] == {"legacy-token-endpoint": 1}
    assert first["notices"]["legacy-token-endpoint"] == {"enforced": 1}

    run = json.loads(runner("--now", "2024-02-11", "run", "--json").stdout)
    assert run["enforced"]["legacy-token-endpoint"] == 1
    late = [m for m in emls("enforced", "legacy-token-endpoint") if str(m["To"]) == "late@x.test"]
    assert len(late) == 1 and "Old One" in text_of(late[0])
    shown = json.loads(runner("--now", "2024-02-11", "accounts", "show", "old1", "--json").stdout)
    states = {e["migration"]: e["state"] for e in shown["enrollments"]}
    assert states["legacy-token-endpoint"] == "enforced"
    # once: the next run finds nothing more to switch or tell
    again = json.loads(runner("--now", "2024-02-12", "run", "--json").stdout)
    assert again["enforced"] == {} and again["notices"]["by_kind"].get("enforced") is None


def test_an_account_moved_into_a_plan_past_its_date_is_switched_by_the_next_run(
    runner: RunCli,
) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    assert runner("--now", "2024-04-01", "run").exit_code == 0  # free is enforced: a1
    Path("moved.csv").write_text(HEADER + "a3,Gamma,free,,2020-01-01,active,two@x.test\n")
    assert runner("--now", "2024-04-03", "accounts", "import", "moved.csv").exit_code == 0
    run = json.loads(runner("--now", "2024-04-03", "run", "--json").stdout)
    assert run["enforced"].get("tiered-rollout") == 1
    told = [m for m in emls("enforced", "tiered-rollout") if str(m["To"]) == "two@x.test"]
    assert len(told) == 1 and "Gamma" in text_of(told[0])


# --- item 2: minimum notice (rule 3a) -------------------------------------------------------------


def test_a_date_moved_into_the_past_is_held_for_min_notice(runner: RunCli) -> None:
    operator_folder(dated="2024-03-15", accounts=SMALL)
    setup_and_sync(runner)
    assert runner("--now", "2024-02-20", "run").exit_code == 0  # the announcements
    # the typo: 03-15 -> 02-20, synced on 02-25
    text = Path("migrations.yaml").read_text()
    Path("migrations.yaml").write_text(text.replace("2024-03-15", "2024-02-20"))
    checked = runner("--now", "2024-02-25", "validate")
    assert checked.exit_code == 0
    assert "warning: strict-cors: held until 2024-03-10" in checked.stderr
    synced = runner("--now", "2024-02-25", "sync", "--json")
    assert synced.exit_code == 0
    assert "held until 2024-03-10" in synced.stderr
    assert [h["held_until"] for h in json.loads(synced.stdout)["held"]] == ["2024-03-10"]

    doc = json.loads(runner("--now", "2024-02-26", "status", "strict-cors", "--json").stdout)
    (entry,) = doc["migrations"]
    assert entry["phase"] == "held"
    (held,) = entry["held"]
    assert held["date"] == "2024-02-20" and held["earliest"] == "2024-03-10T00:00:00Z"
    assert "min_notice (14d)" in held["why"]
    dry = runner("--now", "2024-02-26", "enforce", "--dry-run")
    assert "nothing is due" in dry.stdout and "held: strict-cors: held until" in dry.stdout
    plan = json.loads(
        runner("--now", "2024-02-26", "plan", "--until", "2024-03-12", "--json").stdout
    )
    enforced_days = [d["date"] for d in plan["days"] if d["enforced"].get("strict-cors")]
    assert enforced_days == ["2024-03-10"]
    assert plan["held"][0]["migration"] == "strict-cors"

    run = json.loads(runner("--now", "2024-02-26", "run", "--json").stdout)
    assert run["enforced"] == {}
    # The run says what it held back, and why (the `held` alert listens for this key).
    (held_back,) = run["held"]
    assert held_back["migration"] == "strict-cors" and held_back["held_until"] == "2024-03-10"
    changes = emls("schedule_change", "strict-cors")
    assert {str(m["To"]) for m in changes} == {"one@x.test", "two@x.test"}
    for msg in changes:  # the date that is true: when it will really be switched
        assert "New deadline: 10 March 2024" in text_of(msg)
        assert "15 March 2024" in text_of(msg)
    for day in ("2024-03-01", "2024-03-09"):
        assert json.loads(runner("--now", day, "run", "--json").stdout)["enforced"] == {}
    final = json.loads(runner("--now", "2024-03-10", "run", "--json").stdout)
    assert final["enforced"] == {"strict-cors": 3}
    assert final["held"] == []


def test_only_an_immediate_enforcement_overrides_a_hold(runner: RunCli) -> None:
    operator_folder(dated="2024-03-15", accounts=SMALL)
    setup_and_sync(runner)
    text = Path("migrations.yaml").read_text()
    Path("migrations.yaml").write_text(text.replace("2024-03-15", "2024-02-20"))
    assert runner("--now", "2024-02-25", "sync").exit_code == 0
    assert json.loads(runner("--now", "2024-02-26", "enforce", "--json").stdout)["enforced"] == {}
    forced = runner(
        "--now", "2024-02-26", "enforce", "strict-cors", "--immediately", "--reason", "typo fixed"
    )
    assert forced.exit_code == 0, forced.stderr
    doc = json.loads(runner("--now", "2024-02-26", "status", "strict-cors", "--json").stdout)
    assert doc["migrations"][0]["accounts"]["enforced"] == 3
    assert doc["migrations"][0]["held"] == []


def test_min_notice_is_a_cadence_setting_and_the_first_sync_counts_from_grace_start(
    runner: RunCli,
) -> None:
    # A date 10 days after the grace start, first synced long before: held from the grace start.
    operator_folder(dated="2024-02-11", accounts=SMALL)
    text = (
        Path("migrations.yaml")
        .read_text()
        .replace("min_gap: 2d", "min_gap: 2d\n    min_notice: 7d")
    )
    Path("migrations.yaml").write_text(text)
    setup_and_sync(runner)
    doc = json.loads(runner("--now", "2024-01-20", "status", "strict-cors", "--json").stdout)
    assert doc["migrations"][0]["held"] == []  # 02-01 + 7d = 02-08 <= 02-11
    Path("migrations.yaml").write_text(text.replace("min_notice: 7d", "min_notice: 21d"))
    assert runner("--now", "2024-01-20", "sync").exit_code == 0
    doc = json.loads(runner("--now", "2024-01-20", "status", "strict-cors", "--json").stdout)
    (held,) = doc["migrations"][0]["held"]
    assert held["held_until"] == "2024-02-22" and held["recorded_at"] == "2024-02-01T00:00:00Z"


# --- item 1 (part): status lists every plan of a per-plan migration, TBD included ----------------


def test_status_shows_every_plan_with_its_phase_tbd_included(runner: RunCli) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    doc = json.loads(runner("--now", "2024-04-02", "status", "tiered-rollout", "--json").stdout)
    (m,) = doc["migrations"]
    assert m["mandatory_opt_in"] == {
        "developer": None,
        "enterprise": "2024-06-01",
        "free": "2024-04-01",
    }
    phases = {p["plan"]: (p["phase"], p["mandatory_opt_in"]) for p in m["plans"]}
    assert phases == {
        "developer": ("grace", None),
        "enterprise": ("grace", "2024-06-01"),
        "free": ("due", "2024-04-01"),
    }
    human = runner("--now", "2024-04-02", "status").stdout
    assert "developer:TBD, enterprise:2024-06-01, free:2024-04-01" in human


# --- item 6 (part): min_gap folds a slot into the next due one -----------------------------------


enforced_by_run: dict[str, dict[str, int]] = {}


def _run_days(runner: RunCli, first: str, last: str) -> dict[str, dict[str, dict[str, int]]]:
    """`run` at midnight of every day from first to last: migration -> kind -> n, per day with
    notices; the accounts each day's run enforced go to ``enforced_by_run``."""
    from datetime import date, timedelta

    out: dict[str, dict[str, dict[str, int]]] = {}
    enforced_by_run.clear()
    day = date.fromisoformat(first)
    while day <= date.fromisoformat(last):
        doc = json.loads(runner("--now", day.isoformat(), "run", "--json").stdout)
        sent: dict[str, dict[str, int]] = {}
        for row in json.loads(
            runner("--now", day.isoformat(), "outbox", "list", "--json", "--limit", "1000").stdout
        )["rows"]:
            if row["created_at"].startswith(day.isoformat()):
                kinds = sent.setdefault(row["migration_id"], {})
                kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
        assert doc["notices"]["planned"] == sum(n for k in sent.values() for n in k.values())
        if sent:
            out[day.isoformat()] = sent
        if any(doc["enforced"].values()):
            enforced_by_run[day.isoformat()] = {k: v for k, v in doc["enforced"].items() if v}
        day += timedelta(days=1)
    return out


def test_a_slot_within_min_gap_of_the_last_notice_is_folded_not_sent_late(runner: RunCli) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    plan = json.loads(
        runner("--now", "2024-02-01", "plan", "--until", "2024-04-01", "--json").stdout
    )
    days = [d["date"] for d in plan["days"] if "strict-cors" in d["notices"]]
    # reminders every 14d from 02-01 (02-15, 02-29, 03-14, 03-28) and escalations before 04-01
    # (03-02, 03-18, 03-25, 03-29, 03-31): 03-29 is one day after 03-28 and is folded into
    # 03-31; it is not sent two days late on 03-30 as a second notice.
    assert days == [
        "2024-02-01",
        "2024-02-15",
        "2024-02-29",
        "2024-03-02",
        "2024-03-14",
        "2024-03-18",
        "2024-03-25",
        "2024-03-28",
        "2024-03-31",
        "2024-04-01",
    ]
    ran = _run_days(runner, "2024-02-01", "2024-04-01")
    planned = {d["date"]: d["notices"] for d in plan["days"] if d["notices"]}
    assert ran == planned
    assert enforced_by_run == {d["date"]: d["enforced"] for d in plan["days"] if d["enforced"]}


# --- item 6 (part): reminder slots fall on local calendar days across DST -------------------------


def test_reminders_stay_on_local_calendar_days_across_dst(runner: RunCli) -> None:
    # New York: DST starts 2024-03-10. Grace start 2024-02-26; reminders every 14d: 03-11, 03-25.
    operator_folder(tz="America/New_York", dated="2024-05-01", accounts=SMALL)
    text = Path("migrations.yaml").read_text().replace("2024-02-01", "2024-02-26")
    Path("migrations.yaml").write_text(
        text.replace("escalate_before: [30d, 14d, 7d, 3d, 1d]", "escalate_before: [7d]")
    )
    setup_and_sync(runner, now="2024-02-01")
    plan = json.loads(
        runner("--now", "2024-02-26", "plan", "--until", "2024-04-30", "--json").stdout
    )
    days = [d["date"] for d in plan["days"] if "strict-cors" in d["notices"]]
    # announcement, two reminders at local midnight after DST, the 7d escalation (04-24)
    assert days == [
        "2024-02-26",
        "2024-03-11",
        "2024-03-25",
        "2024-04-08",
        "2024-04-22",
        "2024-04-24",
    ]
    # a midnight cron on 03-11 (local) sends the reminder that day, not on 03-12
    assert runner("--now", "2024-02-26", "run").exit_code == 0
    assert runner("--now", "2024-03-10", "run", "--json").exit_code == 0
    on_the_day = json.loads(runner("--now", "2024-03-11", "notify", "--json").stdout)
    assert on_the_day["notices"]["by_kind"].get("reminder", 0) >= 2


# --- item 6 (part): every timestamp written under --now uses that clock ---------------------------


def test_timestamps_under_now_follow_the_rehearsal_clock(runner: RunCli) -> None:
    from email.utils import parsedate_to_datetime

    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    assert runner("--now", "2024-02-02T09:00:00Z", "run").exit_code == 0
    for msg in emls("announcement"):
        sent = parsedate_to_datetime(str(msg["Date"]))
        assert sent.date().isoformat() == "2024-02-02", msg["Date"]
    rows = json.loads(runner("outbox", "list", "--json").stdout)["rows"]
    assert rows and all(r["sent_at"].startswith("2024-02-02T09:00") for r in rows), rows
    assert runner("--now", "2024-02-03", "suppress", "add", "two@x.test").exit_code == 0
    events = json.loads(runner("audit", "--json").stdout)["events"]
    stamps = {e["action"]: e["at"] for e in events}
    assert stamps["suppression.added"].startswith("2024-02-03")
    assert stamps["migration.added"].startswith("2024-01-15")


# --- item 9: preview says what it shows ----------------------------------------------------------


def test_preview_says_whether_it_shows_the_store_or_sample_data_and_why(runner: RunCli) -> None:
    operator_folder(dated="2024-03-15", accounts=SMALL)
    setup_and_sync(runner)
    text = Path("migrations.yaml").read_text()
    Path("migrations.yaml").write_text(text.replace("2024-03-15", "2024-04-15"))
    assert runner("--now", "2024-02-20", "sync").exit_code == 0
    real = runner("--now", "2024-02-20", "preview", "strict-cors", "--kind", "schedule_change")
    assert real.exit_code == 0, real.stderr
    assert real.stdout.startswith("To: one@x.test (from the store)")
    assert "Old deadline: 15 March 2024" in real.stdout
    assert "New deadline: 15 April 2024" in real.stdout
    forced = ["enforce", "strict-cors", "--immediately", "--reason", "now"]
    assert runner("--now", "2024-02-21", *forced).exit_code == 0
    sample = runner("--now", "2024-02-22", "preview", "strict-cors", "--kind", "schedule_change")
    head = sample.stdout.splitlines()[0]
    assert "(sample data: none of the 3 active account(s) is pending in strict-cors" in head
    assert "made up" in head
    # even with made-up accounts, the schedule change names the real last change
    assert "Old deadline: 15 March 2024" in sample.stdout


# --- acceptance: plan --until vs run, day by day ----------------------------------------------


def test_rehearsal_of_a_per_plan_date_moved_into_the_past_matches_the_runs(runner: RunCli) -> None:
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    # free moves from 04-01 to 02-10 (the past) on 02-20: held until 03-05 (min_notice 14d)
    text = Path("migrations.yaml").read_text()
    Path("migrations.yaml").write_text(text.replace("free: 2024-04-01", "free: 2024-02-10"))
    assert runner("--now", "2024-02-20", "sync").exit_code == 0
    plan = json.loads(
        runner("--now", "2024-02-20", "plan", "--until", "2024-06-02", "--json").stdout
    )
    planned = {d["date"]: d["notices"] for d in plan["days"] if d["notices"]}
    enforced = {d["date"]: d["enforced"] for d in plan["days"] if d["enforced"]}
    assert enforced == {
        "2024-03-05": {"tiered-rollout": 1},  # a1 (free), held from 02-10
        "2024-04-01": {"strict-cors": 3},
        "2024-06-01": {"tiered-rollout": 1},  # a2 (enterprise); a3 (developer) is TBD
    }
    ran = _run_days(runner, "2024-02-20", "2024-06-02")
    assert ran == planned
    assert enforced_by_run == enforced


def test_rehearsal_with_an_extension_and_a_date_moved_into_the_past_matches_the_runs(
    runner: RunCli,
) -> None:
    """The acceptance of issue 13: a per-plan migration, one account extended and one plan's
    date moved into the past; `plan --until` and `run` day by day agree on every notice and on
    the enforcement days."""
    operator_folder(accounts=SMALL)
    setup_and_sync(runner)
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    text = Path("migrations.yaml").read_text()
    Path("migrations.yaml").write_text(text.replace("free: 2024-04-01", "free: 2024-02-10"))
    assert runner("--now", "2024-02-20", "sync").exit_code == 0
    # a2 (enterprise, due 06-01) gets two more weeks of its own
    extended = runner(
        "--now",
        "2024-02-20",
        "extend",
        "tiered-rollout",
        "--account",
        "a2",
        "--until",
        "2024-06-15",
        "--reason",
        "migration planned with the customer",
    )
    assert extended.exit_code == 0, extended.stderr
    plan = json.loads(
        runner("--now", "2024-02-20", "plan", "--until", "2024-06-16", "--json").stdout
    )
    planned = {d["date"]: d["notices"] for d in plan["days"] if d["notices"]}
    enforced = {d["date"]: d["enforced"] for d in plan["days"] if d["enforced"]}
    assert enforced == {
        "2024-03-05": {"tiered-rollout": 1},  # a1 (free), held from 02-10
        "2024-04-01": {"strict-cors": 3},
        "2024-06-15": {"tiered-rollout": 1},  # a2 (enterprise) on its own date, not 06-01
    }
    ran = _run_days(runner, "2024-02-20", "2024-06-16")
    assert ran == planned
    assert enforced_by_run == enforced
    told = [m for m in emls("enforced", "tiered-rollout") if str(m["To"]) == "one@x.test"]
    assert any("Beta" in text_of(m) for m in told)


# --- item 6 (part): status and plan under --now count the accounts that exist then --------------


LATER = (
    "a1,Alpha,free,,2020-01-01,active,one@x.test\n"
    "a2,Beta,enterprise,,2024-01-20,active,two@x.test\n"  # created after 01-15, before grace
    "a3,Gamma,enterprise,,2024-03-10,active,three@x.test\n"  # created in March: auto-enrolled
)


def test_status_under_now_counts_only_the_accounts_that_existed_then(runner: RunCli) -> None:
    operator_folder(accounts=LATER)
    setup_and_sync(runner, now="2024-04-01")

    def accounts(now: str) -> tuple[dict[str, int], int]:
        doc = json.loads(runner("--now", now, "status", "strict-cors", "--json").stdout)
        (m,) = doc["migrations"]
        return m["accounts"], m["admins_pending"]

    early, early_admins = accounts("2024-01-15")
    assert early == {"total": 1, "pending": 1, "opted_in": 0, "auto_enrolled": 0, "enforced": 0}
    assert early_admins == 1
    assert accounts("2024-02-15") == (
        {"total": 2, "pending": 2, "opted_in": 0, "auto_enrolled": 0, "enforced": 0},
        2,
    )
    # Today (after every creation) the cached figures count all three, March's auto-enrolled;
    # asking about the past in between did not leave its figures in the cache.
    assert accounts("2024-04-01") == (
        {"total": 3, "pending": 2, "opted_in": 0, "auto_enrolled": 1, "enforced": 0},
        2,
    )
    assert accounts("2024-01-15")[0]["total"] == 1


def test_plan_under_now_tells_an_account_from_the_day_it_matters(runner: RunCli) -> None:
    """An account created after --now but before the grace start exists by the first notice:
    the rehearsal announces it with the others, as the runs do."""
    operator_folder(accounts=LATER)
    setup_and_sync(runner, now="2024-01-15")
    doc = json.loads(
        runner("--now", "2024-01-15", "plan", "--until", "2024-02-01", "--json").stdout
    )
    (day,) = doc["days"]
    assert day["date"] == "2024-02-01"
    assert day["notices"]["strict-cors"] == {"announcement": 2}
    runs = _run_days(runner, "2024-01-15", "2024-02-01")
    assert runs == {"2024-02-01": {k: v for k, v in day["notices"].items()}}


def test_a_retired_migration_holds_nothing(runner: RunCli) -> None:
    """A held date of a migration then removed from the file (retired) warns nowhere."""
    operator_folder(dated="2024-03-15", accounts=SMALL)
    setup_and_sync(runner)
    text = Path("migrations.yaml").read_text()
    Path("migrations.yaml").write_text(text.replace("2024-03-15", "2024-02-20"))
    assert "held until" in runner("--now", "2024-02-25", "sync").stderr
    start, end = text.index("  - id: strict-cors"), text.index("  - id: tiered-rollout")
    Path("migrations.yaml").write_text(text[:start] + text[end:])
    synced = runner("--now", "2024-02-26", "sync", "--json")
    assert synced.exit_code == 0, synced.stderr
    assert "held" not in synced.stderr and json.loads(synced.stdout)["held"] == []
    doc = json.loads(runner("--now", "2024-02-26", "status", "strict-cors", "--json").stdout)
    (entry,) = doc["migrations"]
    assert (entry["phase"], entry["held"]) == ("retired", [])
    run = json.loads(runner("--now", "2024-02-26", "run", "--json").stdout)
    assert run["held"] == [] and run["enforced"] == {}
    plan = json.loads(
        runner("--now", "2024-02-26", "plan", "--until", "2024-03-12", "--json").stdout
    )
    assert plan["held"] == []
    dry = runner("--now", "2024-02-26", "enforce", "--dry-run", "--json")
    assert json.loads(dry.stdout)["held"] == []
