"""The adoption report: its figures equal status, the audit log and the outbox; it opens offline
in a real headless browser with every chart drawn."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_enforce import MAIL, PER_PLAN, in_process, migctl, ok, query, setup_store

OPT_INS = {  # day -> (migration, account): customers switching during the rehearsal
    "2016-04-06": ("mail", "ent-2"),
    "2016-04-12": ("perplan", "free-2"),
    "2016-04-20": ("mail", "free-1"),
}
OPT_OUT = ("2016-04-25", "mail", "free-1")


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store built by a day-by-day `run` from 2016-04-01 to 2016-05-14, with opt-ins, an
    opt-out and the enforcement of `mail` on 2016-05-11 and of the free plan on 2016-05-01."""
    folder = tmp_path_factory.mktemp("rehearsal")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        setup_store(folder, MAIL, PER_PLAN)
        day = date(2016, 4, 1)
        while day <= date(2016, 5, 14):
            now = day.isoformat()
            if now in OPT_INS:
                migration, account = OPT_INS[now]
                in_process(folder, "--now", now, "opt-in", migration, "--account", account)
            if now == OPT_OUT[0]:
                in_process(folder, "--now", now, "opt-out", OPT_OUT[1], "--account", "free-1")
            in_process(folder, "--now", f"{now}T09:00:00", "run")
            day += timedelta(days=1)
    finally:
        os.chdir(cwd)
    return folder


def _json(folder: Path, *args: str) -> Any:
    return json.loads(ok(migctl(folder, "--now", "2016-05-14T12:00:00", *args)).stdout)


def test_the_last_day_of_adoption_equals_status(rehearsed: Path) -> None:
    report = _json(rehearsed, "report", "--json")
    status = _json(rehearsed, "status", "--json")
    assert [m["id"] for m in report["migrations"]] == [m["id"] for m in status["migrations"]]
    assert {m["id"] for m in report["migrations"]} == {"mail", "perplan"}
    for m, s in zip(report["migrations"], status["migrations"], strict=True):
        last = {state: m["adoption"][state][-1] for state in s["accounts"] if state != "total"}
        assert last == {k: v for k, v in s["accounts"].items() if k != "total"}
        assert m["adoption"]["total"][-1] == s["accounts"]["total"]
        assert m["adoption"]["days"][-1] == "2016-05-14"
        for state in ("pending", "opted_in", "auto_enrolled", "enforced"):
            assert sum(p[state] for p in m["by_plan"]) == s["accounts"][state]
        assert (m["phase"], m["days_left"]) == (s["phase"], s["days_left"])
    assert report["outbox"] == status["outbox"]


def test_opt_ins_and_enforcements_per_day_follow_the_audit_log(rehearsed: Path) -> None:
    report = _json(rehearsed, "report", "--json")
    for m in report["migrations"]:
        events = query(
            rehearsed / "migctl.db",
            "SELECT substr(at, 1, 10) AS day, action, account_id, detail FROM audit "
            "WHERE migration_id = ? ORDER BY id",
            (m["id"],),
        )
        opted: set[str] = set()
        enforced = 0
        for i, day in enumerate(m["adoption"]["days"]):
            for ev in events:
                if ev["day"] != day:
                    continue
                if ev["action"] == "enrollment.opted_in":
                    opted.add(ev["account_id"])
                elif ev["action"] == "enrollment.opted_out":
                    opted.discard(ev["account_id"])
                elif ev["action"] == "migration.enforced":
                    enforced += json.loads(ev["detail"])["accounts"]
            assert m["adoption"]["opted_in"][i] == len(opted), (m["id"], day)
            assert m["adoption"]["enforced"][i] == enforced, (m["id"], day)
    mail = _by_id(report)["mail"]["adoption"]
    assert mail["opted_in"][mail["days"].index("2016-04-20")] == 2  # ent-2 and free-1
    assert mail["opted_in"][mail["days"].index("2016-04-25")] == 1  # free-1 opted out
    assert mail["enforced"][mail["days"].index("2016-05-10")] == 0
    assert mail["enforced"][mail["days"].index("2016-05-11")] > 0


def test_notices_top_admins_milestones_and_next_days(rehearsed: Path) -> None:
    report = _json(rehearsed, "report", "--json")
    db = rehearsed / "migctl.db"
    for m in report["migrations"]:
        stored = {
            (r["kind"], r["state"]): r["n"]
            for r in query(
                db,
                "SELECT kind, state, count(*) AS n FROM outbox WHERE migration_id = ? "
                "GROUP BY kind, state",
                (m["id"],),
            )
        }
        shown = {(k, s): n for k, by in m["notices"].items() for s, n in by.items() if n}
        assert shown == stored and stored
        pending = ok(
            migctl(
                rehearsed,
                "accounts",
                "list",
                "-m",
                m["id"],
                "--state",
                "pending",
                "--format",
                "jsonl",
            )
        ).stdout.splitlines()
        per_admin = Counter(a for line in pending for a in json.loads(line)["admins"])
        expected = sorted(per_admin.items(), key=lambda x: (-x[1], x[0]))[:20]
        assert [(a["email"], a["pending"]) for a in m["top_admins"]] == expected
    plan = _json(rehearsed, "plan", "--until", "2016-05-27", "--all-days", "--json")
    perplan = _by_id(report)["perplan"]
    assert [d["date"] for d in perplan["next_days"]] == [d["date"] for d in plan["days"]]
    for mine, theirs in zip(perplan["next_days"], plan["days"], strict=True):
        assert mine["notices"] == theirs["notices"].get("perplan", {})
        assert mine["enforced"] == theirs["enforced"].get("perplan", 0)
    assert any(d["notices"] for d in perplan["next_days"])
    marks = {(x["date"], x["what"]) for x in perplan["milestones"]}
    assert ("2016-04-01", "grace period starts") in marks
    assert ("2016-06-01", "mandatory date (enterprise)") in marks
    assert ("2016-05-25", "escalation, 7 day(s) before (enterprise)") in marks


def _by_id(report: dict[str, Any]) -> dict[str, Any]:
    return {m["id"]: m for m in report["migrations"]}


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_the_report_opens_offline_in_a_headless_browser_with_every_chart_drawn(
    rehearsed: Path, tmp_path: Path
) -> None:
    found = _chromium()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have chromium: `apt-get install -y chromium chromium-driver`")
        pytest.skip(
            "no chromium here: install it with `sudo apt-get install -y chromium chromium-driver` "
            "to open the report in a real browser"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out = tmp_path / "report.html"
    ok(migctl(rehearsed, "--now", "2016-05-14T12:00:00", "report", "--out", str(out)))
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    try:
        driver.set_network_conditions(offline=True, latency=0, throughput=0)
        driver.get(out.as_uri())
        charts = driver.find_elements("css selector", "figure.chart svg")
        # per migration: adoption, per plan, notices
        assert len(charts) == 6
        for svg in charts:
            size = svg.size
            assert size["width"] > 0 and size["height"] > 0, size
        drawn = driver.execute_script(
            "return Array.from(document.querySelectorAll('figure.chart svg'))"
            ".map(s => s.querySelectorAll('path, rect').length)"
        )
        assert all(n > 5 for n in drawn), drawn
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(r => r.name)"
        )
        assert resources == []  # nothing loaded besides the file itself
    finally:
        driver.quit()
