"""Phases at an instant (a pure function of the definition and now) and the forms of --now."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrate_cli.definitions.model import Migration
from migrate_cli.lifecycle.phases import ALL_SCOPE, overall_phase, phases, plan_in_grace, scopes
from migrate_cli.timeutil import days_until, parse_duration, parse_instant, start_of_day

NY = ZoneInfo("America/New_York")


def mig(mandatory: date | dict[str, date] | None = date(2016, 5, 11)) -> Migration:
    return Migration(
        id="m",
        title="M",
        severity="medium",
        grace_period_start=date(2016, 4, 4),
        mandatory_opt_in=mandatory,
        summary="s",
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def phase_of(m: Migration, now: str, tz=UTC, enforced: frozenset[str] = frozenset()) -> str:  # type: ignore[no-untyped-def]
    (p,) = phases(m, at(now), tz, enforced_scopes=enforced)
    return p.phase


@pytest.mark.parametrize(
    ("now", "phase"),
    [
        ("2016-01-01T00:00:00Z", "scheduled"),
        ("2016-04-03T23:59:59Z", "scheduled"),
        ("2016-04-04T00:00:00Z", "grace"),
        ("2016-04-20T12:00:00Z", "grace"),
        ("2016-05-10T23:59:59.999999Z", "grace"),
        ("2016-05-11T00:00:00Z", "due"),
        ("2017-01-01T00:00:00Z", "due"),
    ],
)
def test_phase_before_inside_after(now: str, phase: str) -> None:
    assert phase_of(mig(), now) == phase


def test_enforced_wins_once_recorded() -> None:
    assert phase_of(mig(), "2016-05-12T00:00:00Z", enforced=frozenset({ALL_SCOPE})) == "enforced"


def test_tbd_never_becomes_due() -> None:
    assert phase_of(mig(None), "2016-04-03T00:00:00Z") == "scheduled"
    assert phase_of(mig(None), "2099-01-01T00:00:00Z") == "grace"


@pytest.mark.parametrize(
    ("now", "phase"),
    [
        ("2016-04-04T03:59:59Z", "scheduled"),  # still 2016-04-03 in New York (EDT, UTC-4)
        ("2016-04-04T04:00:00Z", "grace"),
        ("2016-05-11T03:59:59Z", "grace"),
        ("2016-05-11T04:00:00Z", "due"),
    ],
)
def test_midnight_in_a_non_utc_timezone(now: str, phase: str) -> None:
    assert phase_of(mig(), now, NY) == phase


def test_days_left() -> None:
    m = mig()
    (p,) = phases(m, at("2016-04-20T23:00:00Z"), UTC)
    assert p.days_left == 21
    (p,) = phases(m, at("2016-05-11T00:00:00Z"), UTC)
    assert p.days_left == 0
    (p,) = phases(m, at("2016-05-13T00:00:00Z"), UTC)
    assert p.days_left == -2
    # At 02:00Z on 2016-05-10 it is still 2016-05-09 in New York: two days left there.
    assert days_until(date(2016, 5, 11), at("2016-05-10T02:00:00Z"), NY) == 2
    (p,) = phases(mig(None), at("2016-04-20T00:00:00Z"), UTC)
    assert p.days_left is None


def test_per_plan_phases() -> None:
    m = mig({"free": date(2016, 5, 1), "enterprise": date(2016, 6, 1)})
    assert scopes(m) == [("enterprise", date(2016, 6, 1)), ("free", date(2016, 5, 1))]
    per = {p.scope: p.phase for p in phases(m, at("2016-05-15T00:00:00Z"), UTC)}
    assert per == {"enterprise": "grace", "free": "due"}
    assert overall_phase(phases(m, at("2016-05-15T00:00:00Z"), UTC)) == "grace"
    later = phases(m, at("2016-06-02T00:00:00Z"), UTC, enforced_scopes=frozenset({"free"}))
    assert {p.scope: p.phase for p in later} == {"enterprise": "due", "free": "enforced"}
    assert overall_phase(later) == "due"
    # Plans without a date (TBD) keep the migration in grace.
    assert overall_phase(later, has_tbd_plans=True) == "grace"
    assert plan_in_grace(m, "enterprise", at("2016-05-15T00:00:00Z"), UTC)
    assert not plan_in_grace(m, "free", at("2016-05-15T00:00:00Z"), UTC)
    assert plan_in_grace(m, "developer", at("2030-01-01T00:00:00Z"), UTC)  # not in the map: TBD
    assert not plan_in_grace(m, "developer", at("2016-04-03T00:00:00Z"), UTC)


@given(
    st.datetimes(
        min_value=datetime(2015, 1, 1), max_value=datetime(2018, 1, 1), timezones=st.just(UTC)
    )
)
def test_phase_is_monotonic_in_time(now: datetime) -> None:
    order = ["scheduled", "grace", "due"]
    m = mig()
    assert order.index(phase_of(m, now.isoformat())) <= order.index(
        phase_of(m, (now + timedelta(days=1)).isoformat())
    )


# --------------------------------------------------------------------------- --now parsing


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("2016-05-11", UTC, "2016-05-11T00:00:00+00:00"),
        ("2016-05-11", NY, "2016-05-11T04:00:00+00:00"),
        ("2016-05-11T09:30:00", UTC, "2016-05-11T09:30:00+00:00"),
        ("2016-05-11T09:30:00", NY, "2016-05-11T13:30:00+00:00"),  # naive = the configured timezone
        ("2016-05-11T09:30:00+02:00", NY, "2016-05-11T07:30:00+00:00"),
        ("2016-05-11T09:30:00Z", NY, "2016-05-11T09:30:00+00:00"),
        ("2016-05-11 09:30", UTC, "2016-05-11T09:30:00+00:00"),
        ("  2016-05-11  ", UTC, "2016-05-11T00:00:00+00:00"),
    ],
)
def test_parse_instant_forms(text: str, tz, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert parse_instant(text, tz) == datetime.fromisoformat(expected)


@pytest.mark.parametrize(
    "text",
    ["garbage", "", "2016-02-30", "2016-13-01", "11/05/2016", "tomorrow", "2016-05-11T25:00"],
)
def test_parse_instant_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_instant(text, UTC)


def test_start_of_day_dst() -> None:
    # 2016-03-13 is the DST switch in New York: midnight is still EST (UTC-5).
    assert start_of_day(date(2016, 3, 13), NY) == datetime(2016, 3, 13, 5, tzinfo=UTC)
    assert start_of_day(date(2016, 3, 14), NY) == datetime(2016, 3, 14, 4, tzinfo=UTC)


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("90m") == timedelta(minutes=90)
    for bad in ("30", "d", "1.5d", "-1d", "1w", "", "1d2h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --------------------------------------------------------------------------- --now on the command line


NY_YAML = """\
defaults:
  timezone: America/New_York
migrations:
  - id: m
    title: M
    severity: medium
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    summary: s
"""


@pytest.fixture
def ny_store(runner) -> Path:  # type: ignore[no-untyped-def]
    Path("migrations.yaml").write_text(NY_YAML)
    assert runner("--db", "ny.db", "--now", "2016-01-01", "sync").exit_code == 0
    return Path("ny.db")


@pytest.mark.parametrize(
    ("now", "phase"),
    [
        ("2016-05-11T03:59:59Z", "grace"),
        ("2016-05-11T04:00:00Z", "due"),
        ("2016-05-10", "grace"),
        ("2016-05-11", "due"),  # a date is midnight in New York
        ("2016-05-10T23:59:59", "grace"),  # naive: New York time
        ("2016-05-11T00:00:00", "due"),
        ("2016-05-11T05:59:59+02:00", "grace"),  # 03:59:59Z
        ("2016-05-11T00:00:00-04:00", "due"),
    ],
)
def test_cli_now_forms_in_new_york(ny_store: Path, runner, now: str, phase: str) -> None:  # type: ignore[no-untyped-def]
    result = runner("--db", ny_store, "--now", now, "status", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["migrations"][0]["phase"] == phase
    assert doc["timezone"] == "America/New_York"


def test_cli_now_from_the_environment(ny_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner(
        "--db", ny_store, "status", "--json", env={"MIGCTL_NOW": "2016-05-11T04:00:00Z"}
    )
    assert json.loads(result.stdout)["now"] == "2016-05-11T04:00:00Z"
    assert json.loads(result.stdout)["migrations"][0]["phase"] == "due"


@pytest.mark.parametrize(
    "now", ["garbage", "2016-02-30", "2016-05-11T99:00", "9999-12-31T23:59:59-05:00"]
)
def test_cli_bad_now_is_a_usage_error_with_a_clear_message(
    ny_store: Path, runner, now: str
) -> None:  # type: ignore[no-untyped-def]
    result = runner("--db", ny_store, "--now", now, "status")
    assert result.exit_code == 2  # a malformed option (SPEC §4)
    assert "--now" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_real_clock_when_no_now(ny_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner("--db", ny_store, "status", "--json")
    now = datetime.fromisoformat(json.loads(result.stdout)["now"].replace("Z", "+00:00"))
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=5)
