"""`migctl plan --until`: a day-by-day rehearsal of cron that writes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from helpers_enforce import (
    HOST_TZ,
    MAIL,
    PER_PLAN,
    STORE_TZ,
    fingerprint,
    json_out,
    migctl,
    ok,
    setup_store,
)

OPT_INS = [("mail", "optin-1", "2016-04-20"), ("perplan", "optin-1", "2016-04-20")]

# Derived by hand from helpers_enforce's definitions (reminder every 14d, escalations 7d and
# 1d before the date, min gap 1d) and accounts (optin-1 opted in to both):
#   mail: grace 04-04, date 05-11; pending ent-1 ent-2 free-1 free-2 dev-1 -> admins
#         a b c d e shared (6). Reminder #2 on 05-02, escalations 05-04 and 05-10.
#   perplan: grace 04-01; free 05-01 (free-1 free-2: c d shared), enterprise 06-01
#         (ent-1 ent-2: a b shared), developer TBD (dev-1: e). An administrator's deadline is
#         the earliest of their pending accounts', so shared@ escalates with the free plan.
EXPECTED_DAYS = [
    {
        "date": "2016-04-20",
        "notices": {"mail": {"announcement": 6}, "perplan": {"announcement": 6}},
        "enforced": {},
    },
    {"date": "2016-04-24", "notices": {"perplan": {"reminder": 3}}, "enforced": {}},  # free -7d
    {"date": "2016-04-29", "notices": {"perplan": {"reminder": 6}}, "enforced": {}},  # #2
    {"date": "2016-04-30", "notices": {"perplan": {"reminder": 3}}, "enforced": {}},  # free -1d
    {
        "date": "2016-05-01",
        "notices": {"perplan": {"enforced": 3}},
        "enforced": {"perplan": 2},
    },
    {"date": "2016-05-02", "notices": {"mail": {"reminder": 6}}, "enforced": {}},  # #2
    {"date": "2016-05-04", "notices": {"mail": {"reminder": 6}}, "enforced": {}},  # -7d
    {"date": "2016-05-10", "notices": {"mail": {"reminder": 6}}, "enforced": {}},  # -1d
    {"date": "2016-05-11", "notices": {"mail": {"enforced": 6}}, "enforced": {"mail": 5}},
    {"date": "2016-05-13", "notices": {"perplan": {"reminder": 4}}, "enforced": {}},  # #3
    {"date": "2016-05-25", "notices": {"perplan": {"reminder": 3}}, "enforced": {}},  # ent -7d
    {"date": "2016-05-27", "notices": {"perplan": {"reminder": 4}}, "enforced": {}},  # #4
    {"date": "2016-05-31", "notices": {"perplan": {"reminder": 3}}, "enforced": {}},  # ent -1d
    {
        "date": "2016-06-01",
        "notices": {"perplan": {"enforced": 3}},
        "enforced": {"perplan": 2},
    },
]


@pytest.fixture
def host_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process tests run with the host timezone forced away from UTC too."""
    monkeypatch.setenv("TZ", HOST_TZ)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_plan_shows_reminders_escalations_and_enforcement_and_writes_nothing(
    tmp_path: Path,
) -> None:
    db = setup_store(tmp_path, MAIL, PER_PLAN, opt_in=OPT_INS)
    before = fingerprint(db)
    doc = json_out(
        ok(migctl(tmp_path, "--now", "2016-04-20", "plan", "--until", "2016-06-05", "--json"))
    )
    assert fingerprint(db) == before
    assert set(doc) >= {"now", "until", "days"}
    assert doc["until"] == "2016-06-05"
    assert doc["days"] == EXPECTED_DAYS

    text = ok(migctl(tmp_path, "--now", "2016-04-20", "plan", "--until", "2016-06-05")).stdout
    assert fingerprint(db) == before
    assert "Rehearsal until 2016-06-05 (nothing written)" in text
    assert 'day=2016-05-11 notices="mail: enforced 6" enforced_accounts="mail: 5"' in text
    assert 'day=2016-05-04 notices="mail: reminder 6" enforced_accounts=-' in text
    # Nothing was sent, enforced or queued: the real store still has everyone pending.
    status = json_out(ok(migctl(tmp_path, "--now", "2016-06-05", "status", "--json")))
    assert all(m["accounts"]["enforced"] == 0 for m in status["migrations"])
    assert status["outbox"]["pending"] == 0 and status["outbox"]["sent"] == 0
    assert not (tmp_path / "outbox").exists()


def test_plan_all_days_lists_every_calendar_day_across_dst(tmp_path: Path) -> None:
    """New York leaves DST on 2016-11-06: days are calendar days, none repeated or skipped."""
    autumn = MAIL.replace("2016-04-04", "2016-10-01").replace("2016-05-11", "2016-11-10")
    db = setup_store(tmp_path, autumn)
    before = fingerprint(db)
    for now in ("2016-10-20", "2016-10-20T23:30:00"):
        doc = json_out(
            ok(
                migctl(
                    tmp_path, "--now", now, "plan", "--until", "2016-11-12", "--all-days", "--json"
                )
            )
        )
        dates = [d["date"] for d in doc["days"]]
        first = datetime(2016, 10, 20)
        assert dates == [(first + timedelta(days=i)).date().isoformat() for i in range(24)], now
        (enforced,) = [d for d in doc["days"] if d["enforced"]]
        assert enforced["date"] == "2016-11-10" and enforced["enforced"] == {"mail": 7}
    assert fingerprint(db) == before


def test_plan_until_before_now_is_an_error(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    r = migctl(tmp_path, "--now", "2016-04-20", "plan", "--until", "2016-04-19")
    assert r.returncode == 1
    assert "before now" in r.stderr
    r = migctl(tmp_path, "--now", "2016-04-20", "plan", "--until", "2016-02-30")
    assert r.returncode == 2  # not a date at all: a usage error
    assert "--until" in r.stderr


def test_plan_matches_what_daily_runs_do(
    tmp_path: Path, host_tz: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rehearse, then really run cron once a day (a provider that accepts everything): the same
    notices per migration and kind, and the same enforcements, on the same days."""
    from migrate_cli.config import load_config
    from migrate_cli.notices import run as run_module
    from migrate_cli.notices.run import run

    # 47 runs: skip the pre-flight template check (notify checks the templates again anyway).
    monkeypatch.setattr(run_module, "preflight", lambda *a, **k: None)
    from migrate_cli.lifecycle.rehearsal import simulate
    from migrate_cli.store.db import Store, db_time

    db = setup_store(tmp_path, MAIL, PER_PLAN, provider="null", opt_in=OPT_INS)
    config = load_config(tmp_path / "migctl.toml", explicit=True)
    tz = ZoneInfo(STORE_TZ)
    start = datetime(2016, 4, 20, tzinfo=tz)
    with Store(db) as store:
        rehearsal = {
            d.day.isoformat(): (d.notices, d.enforced)
            for d in simulate(store, start, start.date() + timedelta(days=46))
        }
        real: dict[str, tuple[dict, dict]] = {}
        for offset in range(47):
            at = datetime.combine(start.date() + timedelta(days=offset), start.time(), tzinfo=tz)
            summary = run(
                store,
                config,
                lambda _s, at=at: at,
                actor="test",
                dry_run=False,
                definitions_file=tmp_path / "migrations.yaml",
            )
            assert summary.notify is not None and not summary.partial
            notices: dict[str, dict[str, int]] = {}
            for r in store.query(
                "SELECT migration_id, kind, count(*) AS n FROM outbox WHERE created_at = ? "
                "GROUP BY migration_id, kind",
                (db_time(at),),
            ):
                notices.setdefault(r["migration_id"], {})[r["kind"]] = r["n"]
            real[at.date().isoformat()] = (
                notices,
                {k: v for k, v in summary.enforce.by_migration().items() if v},
            )
    assert real == rehearsal
    assert {d: v for d, v in real.items() if v != ({}, {})} == {
        d["date"]: (d["notices"], d["enforced"]) for d in EXPECTED_DAYS
    }


def test_an_operators_rehearsal_with_their_cadence_and_history(tmp_path: Path) -> None:
    """An operator's folder: their migrations.yaml with a cadence of its own, a real run three
    days earlier (notices sent, one address suppressed since), then `plan --until` in both
    outputs, equal to the day-by-day reference, with a progress bar only on a terminal."""
    from rehearsal_reference import reference_simulate

    from migrate_cli.store.db import Store

    own = MAIL.replace(
        "    description: Configure your own provider.\n",
        "    description: Configure your own provider.\n"
        "    notices: {reminder_every: 5d, escalate_before: [3d], min_gap: 2d}\n",
    )
    setup_store(tmp_path, own, PER_PLAN, opt_in=OPT_INS)
    ok(migctl(tmp_path, "--now", "2016-04-17T09:00:00", "run"))
    ok(migctl(tmp_path, "--now", "2016-04-18", "suppress", "add", "e@x.test", "--reason", "bounce"))
    db = tmp_path / "migctl.db"
    before = fingerprint(db)
    args = ("--now", "2016-04-20T09:00:00", "plan", "--until", "2016-06-10")
    doc = json_out(ok(migctl(tmp_path, *args, "--json")))
    assert fingerprint(db) == before
    with Store(db) as store:
        tz = ZoneInfo(STORE_TZ)
        reference = reference_simulate(
            store, datetime(2016, 4, 20, 9, tzinfo=tz), datetime(2016, 6, 10).date(), from_addr="x"
        )
    assert doc["days"] == [d.to_json() for d in reference if not d.empty]
    by_day = {d["date"]: d for d in doc["days"]}
    # mail: announced on 04-17 09:00; reminders every 5 days from the grace start (04-04):
    # 04-19 is within the 2d minimum gap of the announcement and is folded into 04-24; then
    # 04-29, 05-04; 05-08 is the 3d escalation and the 05-09 reminder, a day later, is folded
    # (not sent late on 05-10). e@ (dev-1) is suppressed.
    assert [day for day, d in by_day.items() if "mail" in d["notices"]] == [
        "2016-04-24",
        "2016-04-29",
        "2016-05-04",
        "2016-05-08",
        "2016-05-11",
    ]
    assert by_day["2016-05-08"]["notices"]["mail"] == {"reminder": 5}  # a b c d shared
    assert by_day["2016-05-11"]["notices"]["mail"] == {"enforced": 5}  # a b c d shared; not e
    assert by_day["2016-05-11"]["enforced"]["mail"] == 5

    text = ok(migctl(tmp_path, *args)).stdout
    assert 'day=2016-05-11 notices="mail: enforced 5" enforced_accounts="mail: 5"' in text
    assert "rehearsing" not in text
    terminal = migctl(tmp_path, *args, env={"MIGCTL_FORCE_TERMINAL": "1", "MIGCTL_WIDTH": "200"})
    ok(terminal)
    assert "Rehearsal until 2016-06-10" in terminal.stdout
    # 52 days, each of the 2 migrations' reads weighted as the 52 days: a bar with its total
    # and a label, on stderr only.
    assert "rehearsing" in terminal.stderr and "156/156" in terminal.stderr
    assert fingerprint(db) == before
