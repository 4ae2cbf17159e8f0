"""Per-plan dates end to end (issue 13 item 1): an operator's folder, 30 accounts over three
plans, the CLI, and the .eml files the `file` provider writes."""

from __future__ import annotations

import json
import shutil
from email.message import EmailMessage
from pathlib import Path

from tests.conftest import RunCli
from tests.test_operator_policy import emls, html_of, operator_folder, setup_and_sync, text_of

MIGRATION = "tiered-rollout"  # free 2024-04-01, enterprise 2024-06-01, developer TBD

# Administrators with their accounts; every other account has an administrator of its own.
SHARED = {
    "free-only@x.test": ["f01", "f02", "f03"],
    "ent-only@x.test": ["e01", "e02", "e03"],
    "dev-only@x.test": ["d01", "d02", "d03"],
    "free-ent@x.test": ["f04", "e04"],
    "free-dev@x.test": ["f05", "d04"],
    "ent-dev@x.test": ["e05", "d05"],
    "all@x.test": ["f06", "e06", "d06"],
}
PLANS = {"f": "free", "e": "enterprise", "d": "developer"}


def _accounts() -> str:
    admins: dict[str, list[str]] = {}
    for email, ids in SHARED.items():
        for account in ids:
            admins.setdefault(account, []).append(email)
    rows = []
    for letter, plan in PLANS.items():
        for n in range(1, 11):
            account = f"{letter}{n:02d}"
            who = admins.get(account, [f"{account}@x.test"])
            rows.append(f"{account},Account {account},{plan},,2020-01-01,active,{';'.join(who)}\n")
    return "".join(rows)


def _admins_of(letter: str) -> set[str]:
    """Every administrator with an account of one plan (all of them pending in these tests)."""
    own = {f"{letter}{n:02d}@x.test" for n in range(1, 11)}
    own -= {f"{a}@x.test" for ids in SHARED.values() for a in ids}
    return own | {email for email, ids in SHARED.items() if any(a[0] == letter for a in ids)}


def _to(messages: list[EmailMessage]) -> dict[str, EmailMessage]:
    return {str(m["To"]): m for m in messages}


def _line(text: str, account: str) -> str:
    (line,) = [x for x in text.splitlines() if f"({account})" in x]
    return line


def _yaml(**dates: str) -> None:
    """The operator edits the per-plan map of tiered-rollout (the only map in the file)."""
    text = Path("migrations.yaml").read_text()
    start = text.index("mandatory_opt_in: {") + len("mandatory_opt_in: ")
    old = text[start : text.index("}", start) + 1]
    new = "{" + ", ".join(f"{plan}: {day}" for plan, day in dates.items()) + "}"
    Path("migrations.yaml").write_text(text.replace(old, new))


def _start(runner: RunCli) -> None:
    operator_folder(accounts=_accounts())
    setup_and_sync(runner)


def _changes_told(runner: RunCli, **dates: str) -> dict[str, EmailMessage]:
    """Announcements on 02-01, the operator's new dates, a run on 02-10: the schedule changes
    it wrote, by recipient."""
    _start(runner)
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    _yaml(**dates)
    assert runner("--now", "2024-02-10", "run").exit_code == 0
    return _to(emls("schedule_change", MIGRATION))


def _extend(runner: RunCli, account: str, until: str, now: str = "2024-01-20") -> None:
    result = runner(
        "--now", now, "extend", MIGRATION, "--account", account, "--until", until,
        "--reason", "planned with the customer",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr


def test_each_account_line_names_its_own_date_in_text_and_html(runner: RunCli) -> None:
    _start(runner)
    _extend(runner, "e06", "2024-06-20")
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    sent = _to(emls("announcement", MIGRATION))
    assert len(sent) == 19  # every administrator: 7 shared ones (18 accounts), 12 of one account

    mixed = text_of(sent["free-ent@x.test"])
    assert _line(mixed, "f04").endswith(": 1 April 2024")
    assert _line(mixed, "e04").endswith(": 1 June 2024")
    # no sentence claims one date for both accounts
    assert "On 1 April 2024 the change is switched on" not in mixed
    assert "each account has its own date (listed below); the earliest is 1 April 2024" in mixed
    assert "switched on at its own date" in mixed
    html = html_of(sent["free-ent@x.test"])
    assert "1 April 2024" in html and "1 June 2024" in html
    assert "On 1 April 2024 the change is switched on" not in html

    everything = text_of(sent["all@x.test"])
    assert _line(everything, "f06").endswith(": 1 April 2024")
    assert _line(everything, "e06").endswith(": 20 June 2024 (extended)")
    assert _line(everything, "d06").endswith(": date not set yet (TBD)")
    assert "An account whose date is not set yet (TBD) is not switched" in everything
    assert "20 June 2024 (extended)" in html_of(sent["all@x.test"])

    # one date for all of an administrator's accounts: the sentence is the plain one
    ent = text_of(sent["ent-only@x.test"])
    assert "On 1 June 2024 the change is switched on for every account" in ent
    assert "1 April" not in ent

    # only TBD accounts: told the date is not set, and no date of other plans
    dev = text_of(sent["dev-only@x.test"])
    assert "not set yet (TBD)" in dev
    assert "April" not in dev and "June" not in dev
    assert "date not set yet" in str(sent["dev-only@x.test"]["Subject"])


def test_a_moved_enterprise_date_is_told_only_to_administrators_of_pending_enterprise_accounts(
    runner: RunCli,
) -> None:
    _start(runner)
    _extend(runner, "e05", "2024-06-20")  # later than both dates: its own date does not move
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    _yaml(free="2024-04-01", enterprise="2024-06-15", developer="TBD")
    assert runner("--now", "2024-02-10", "sync").exit_code == 0
    expected = _admins_of("e") - {"ent-dev@x.test"}

    dry = json.loads(runner("--now", "2024-02-10", "notify", "--dry-run", "--json").stdout)
    assert dry["notices"]["by_kind"] == {"schedule_change": len(expected)}
    plan = json.loads(
        runner("--now", "2024-02-10", "plan", "--until", "2024-02-10", "--json").stdout
    )
    assert plan["days"][0]["notices"] == {MIGRATION: {"schedule_change": len(expected)}}

    assert runner("--now", "2024-02-10", "run").exit_code == 0
    sent = _to(emls("schedule_change", MIGRATION))
    assert set(sent) == expected  # no free-only, developer-only or extended-only administrator
    for email, msg in sent.items():
        text = text_of(msg)
        subject = "Date moved: Tiered Rollout is now due 15 June 2024"
        if email in ("free-ent@x.test", "all@x.test"):  # other accounts keep an earlier date
            subject += " for 1 of your accounts"
        assert str(msg["Subject"]).endswith(subject), email
        assert "Old deadline: 1 June 2024" in text and "New deadline: 15 June 2024" in text
        assert "1 April 2024 ->" not in text and "DATE WITHDRAWN" not in text
        for account in [a for a in SHARED.get(email, [email.split("@")[0]]) if a[0] == "e"]:
            assert _line(text, account).endswith(": 1 June 2024 -> 15 June 2024"), email

    mixed = text_of(sent["free-ent@x.test"])
    assert _line(mixed, "f04").endswith(": 1 April 2024 (unchanged)")
    assert "This concerns 1 account of yours" in mixed
    # f04 is still due 1 April: no line claims 15 June as the earliest of their dates
    assert "each account has its own date (listed below)\n" in mixed
    assert "the earliest is" not in mixed and "the earliest is" not in html_of(
        sent["free-ent@x.test"]
    )
    assert "1 June 2024" in html_of(sent["free-ent@x.test"])
    assert "15 June 2024" in html_of(sent["free-ent@x.test"])

    # the next day nobody else gets one
    assert runner("--now", "2024-02-11", "run").exit_code == 0
    assert set(_to(emls("schedule_change", MIGRATION))) == expected


def test_a_date_set_for_a_tbd_plan_is_told_only_to_its_administrators(runner: RunCli) -> None:
    sent = _changes_told(runner, free="2024-04-01", enterprise="2024-06-01", developer="2024-07-01")
    assert set(sent) == _admins_of("d")
    for email, msg in sent.items():
        subject = "Date set: Tiered Rollout is now due 1 July 2024"
        if email in ("free-dev@x.test", "ent-dev@x.test", "all@x.test"):
            subject += " for 1 of your accounts"  # their other accounts keep their dates
        assert str(msg["Subject"]).endswith(subject), email
        assert "DATE SET: Tiered Rollout" in text_of(msg)
    mixed = text_of(sent["free-dev@x.test"])
    assert _line(mixed, "d04").endswith(": not set (TBD) -> 1 July 2024")
    assert _line(mixed, "f05").endswith(": 1 April 2024 (unchanged)")


def test_a_date_withdrawn_is_told_only_for_the_accounts_it_concerned(runner: RunCli) -> None:
    sent = _changes_told(runner, free="TBD", enterprise="2024-06-01", developer="TBD")
    assert set(sent) == _admins_of("f")
    for msg in sent.values():
        assert "DATE WITHDRAWN: Tiered Rollout" in text_of(msg)
        assert "Old deadline: 1 April 2024" in text_of(msg)
    mixed = text_of(sent["free-ent@x.test"])
    assert _line(mixed, "f04").endswith(": 1 April 2024 -> not set (TBD)")
    assert _line(mixed, "e04").endswith(": 1 June 2024 (unchanged)")


def test_moves_of_two_plans_name_each_accounts_old_and_new_date(runner: RunCli) -> None:
    sent = _changes_told(runner, free="2024-04-15", enterprise="2024-06-15", developer="TBD")
    assert set(sent) == _admins_of("f") | _admins_of("e")
    both = sent["free-ent@x.test"]
    text = text_of(both)
    assert str(both["Subject"]).endswith("Dates changed: Tiered Rollout")
    assert "DATES CHANGED: Tiered Rollout" in text
    assert "Old deadline:" not in text  # no single old and new date claimed for both
    assert _line(text, "f04").endswith(": 1 April 2024 -> 15 April 2024")
    assert _line(text, "e04").endswith(": 1 June 2024 -> 15 June 2024")
    # an administrator of one plan still reads one old and one new date
    assert "Old deadline: 1 April 2024" in text_of(sent["free-only@x.test"])


def test_dashboard_export_and_preview_show_each_accounts_own_date(runner: RunCli) -> None:
    _start(runner)
    _extend(runner, "e06", "2024-06-20")
    out = runner("--now", "2024-02-01", "dashboard", "export", "--out", "dash.json")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(Path("dash.json").read_text())
    dates = {
        a["account_id"]: n["deadline"]
        for a in doc["accounts"]
        for n in a["notices"]
        if n["migration"] == MIGRATION
    }
    assert dates["f06"] == "2024-04-01"
    assert dates["e06"] == "2024-06-20"
    assert dates["e04"] == "2024-06-01"
    assert dates["d06"] is None

    shown = runner("--now", "2024-02-01", "preview", MIGRATION, "--admin", "all@x.test")
    assert shown.exit_code == 0, shown.stderr
    assert _line(shown.stdout, "f06").endswith(": 1 April 2024")
    assert _line(shown.stdout, "e06").endswith(": 20 June 2024 (extended)")
    assert _line(shown.stdout, "d06").endswith(": date not set yet (TBD)")

    _yaml(free="2024-04-01", enterprise="2024-06-10", developer="TBD")
    assert runner("--now", "2024-02-10", "sync").exit_code == 0
    moved = runner(
        "--now", "2024-02-10", "preview", MIGRATION, "--admin", "free-ent@x.test",
        "--kind", "schedule_change",
    )  # fmt: skip
    assert moved.exit_code == 0, moved.stderr
    assert _line(moved.stdout, "e04").endswith(": 1 June 2024 -> 10 June 2024")
    assert _line(moved.stdout, "f04").endswith(": 1 April 2024 (unchanged)")
    assert "Old deadline: 1 June 2024" in moved.stdout


OLD_STYLE = """\
{% extends "layout.txt" %}
{% block intro %}
Reminder for {{ admin_email }}: {{ deadline or "TBD" }} ({{ days_left_text or "no date" }}),
previously {{ previous_deadline or "none" }}.
{% for a in accounts %}
* {{ a.name }} / {{ a.id }} / {{ a.plan }}
{% endfor %}
{{ accounts_total }} in all, {{ accounts_more }} more.
{% endblock %}
"""


def test_an_operator_template_written_against_the_old_context_still_renders(
    runner: RunCli, repo_root: Path
) -> None:
    _start(runner)
    shutil.copytree(repo_root / "email_templates", "email_templates")
    Path(f"email_templates/{MIGRATION}").mkdir()
    Path(f"email_templates/{MIGRATION}/announcement.txt").write_text(OLD_STYLE)
    Path("migctl.toml").write_text(
        'templates_dir = "email_templates"\n' + Path("migctl.toml").read_text()
    )
    assert runner("validate").exit_code == 0
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    text = text_of(_to(emls("announcement", MIGRATION))["free-ent@x.test"])
    assert "Reminder for free-ent@x.test: 1 April 2024 (60 days left)," in text
    assert "previously none." in text
    assert "* Account e04 / e04 / enterprise" in text
    assert "2 in all, 0 more." in text


def test_a_held_date_that_did_not_move_again_is_not_a_change(runner: RunCli) -> None:
    """free moves into the past (held by min_notice), then only enterprise moves: the second
    change is news for enterprise administrators only, the held free date has not moved."""
    _start(runner)
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    _yaml(free="2024-02-10", enterprise="2024-06-01", developer="TBD")
    assert runner("--now", "2024-02-20", "run").exit_code == 0  # held until 03-05
    first = _to(emls("schedule_change", MIGRATION))
    assert set(first) == _admins_of("f")
    assert _line(text_of(first["free-ent@x.test"]), "f04").endswith(
        ": 1 April 2024 -> 5 March 2024"
    )
    _yaml(free="2024-02-10", enterprise="2024-06-15", developer="TBD")
    assert runner("--now", "2024-02-25", "run").exit_code == 0
    second = [m for m in emls("schedule_change", MIGRATION) if "15 June" in text_of(m)]
    assert {str(m["To"]) for m in second} == _admins_of("e")
    mixed = text_of(next(m for m in second if str(m["To"]) == "free-ent@x.test"))
    assert _line(mixed, "f04").endswith(": 5 March 2024 (unchanged)")
    assert _line(mixed, "e04").endswith(": 1 June 2024 -> 15 June 2024")
    assert len(emls("schedule_change", MIGRATION)) == len(first) + len(second)


def test_two_changes_before_a_run_are_told_against_the_dates_each_administrator_knew(
    runner: RunCli,
) -> None:
    """enterprise moves (synced, no run), then free moves: the run tells enterprise
    administrators too, against the dates of their last notice, not of the latest change."""
    _start(runner)
    assert runner("--now", "2024-02-01", "run").exit_code == 0
    _yaml(free="2024-04-01", enterprise="2024-06-15", developer="TBD")
    assert runner("--now", "2024-02-09", "sync").exit_code == 0
    _yaml(free="2024-04-15", enterprise="2024-06-15", developer="TBD")
    assert runner("--now", "2024-02-10", "sync").exit_code == 0
    dry = json.loads(runner("--now", "2024-02-10", "notify", "--dry-run", "--json").stdout)
    told = _admins_of("f") | _admins_of("e")
    assert dry["notices"]["by_kind"] == {"schedule_change": len(told)}
    plan = json.loads(
        runner("--now", "2024-02-10", "plan", "--until", "2024-02-10", "--json").stdout
    )
    assert plan["days"][0]["notices"] == {MIGRATION: {"schedule_change": len(told)}}
    shown = runner(
        "--now", "2024-02-10", "preview", MIGRATION, "--admin", "ent-only@x.test",
        "--kind", "schedule_change",
    )  # fmt: skip
    assert _line(shown.stdout, "e01").endswith(": 1 June 2024 -> 15 June 2024")
    assert runner("--now", "2024-02-10", "run").exit_code == 0
    sent = _to(emls("schedule_change", MIGRATION))
    assert set(sent) == told
    assert _line(text_of(sent["ent-only@x.test"]), "e01").endswith(": 1 June 2024 -> 15 June 2024")
    both = text_of(sent["free-ent@x.test"])
    assert _line(both, "f04").endswith(": 1 April 2024 -> 15 April 2024")
    assert _line(both, "e04").endswith(": 1 June 2024 -> 15 June 2024")
