"""Notice cadence (SPEC section 3): the pure `decide`/`latest_slot` at every boundary, then the
same rules end to end through the store (digests of a daily cron over a whole grace period)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from migrate_cli.definitions.model import Migration, NoticeSettings, load_definitions
from migrate_cli.lifecycle.planning import decide, latest_slot
from migrate_cli.store.outbox import notice_key
from migrate_cli.vocabulary import NoticeKind
from tests.helpers_notices import (
    MIG,
    account,
    at,
    build_store,
    outbox,
    plan,
    resync,
    tick,
)

ANNOUNCEMENT, REMINDER, SCHEDULE_CHANGE = (
    NoticeKind.ANNOUNCEMENT,
    NoticeKind.REMINDER,
    NoticeKind.SCHEDULE_CHANGE,
)

S = timedelta(seconds=1)
D = timedelta(days=1)
GRACE = datetime(2016, 4, 4, tzinfo=UTC)
MANDATORY = date(2016, 5, 11)
DEADLINE_AT = datetime(2016, 5, 11, tzinfo=UTC)
DEFAULT = NoticeSettings()  # 14d reminders, escalations 30d 14d 7d 3d 1d, min_gap 2d


def migration(mandatory: date | None = MANDATORY, **kw: object) -> Migration:
    return Migration(
        id=MIG,
        title="Email Delivery Changes",
        severity=str(kw.pop("severity", "medium")),
        grace_period_start=date(2016, 4, 4),
        mandatory_opt_in=mandatory,
        notices=kw.pop("notices", DEFAULT),  # type: ignore[arg-type]
    )


def due(
    now: datetime,
    *,
    last_at: datetime | None = GRACE,
    deadline: date | None = MANDATORY,
    seen: int | None = 0,
    version: int = 0,
    settings: NoticeSettings = DEFAULT,
    m: Migration | None = None,
    tz: ZoneInfo | None = None,
    changed: bool = True,
) -> tuple[str, str, str] | None:
    """decide() for one administrator whose last notice was at ``last_at``."""
    return decide(
        m or migration(deadline, notices=settings),
        settings,
        tz or ZoneInfo("UTC"),
        now,
        deadline=deadline,
        last_at=last_at,
        seen_version=None if last_at is None else seen,
        schedule_version=version,
        date_changed=changed,
    )


def r(at: datetime) -> str:
    """A reminder slot's name: its instant (renumbering a cadence never reuses a key)."""
    return f"r-{at:%Y%m%dT%H%M%SZ}"


def slot_name(now: datetime, **kw: object) -> str | None:
    verdict = due(now, **kw)  # type: ignore[arg-type]
    if verdict is None:
        return None
    assert verdict[0] == REMINDER, verdict
    return verdict[1]


# The default cadence for a 2016-04-04 → 2016-05-11 migration, in time order.
TIMELINE = [
    (datetime(2016, 4, 11, tzinfo=UTC), "v0-e30d-2016-05-11"),
    (datetime(2016, 4, 18, tzinfo=UTC), r(datetime(2016, 4, 18, tzinfo=UTC))),
    (datetime(2016, 4, 27, tzinfo=UTC), "v0-e14d-2016-05-11"),
    (datetime(2016, 5, 2, tzinfo=UTC), r(datetime(2016, 5, 2, tzinfo=UTC))),
    (datetime(2016, 5, 4, tzinfo=UTC), "v0-e7d-2016-05-11"),
    (datetime(2016, 5, 8, tzinfo=UTC), "v0-e3d-2016-05-11"),
    (datetime(2016, 5, 10, tzinfo=UTC), "v0-e1d-2016-05-11"),
]


# --------------------------------------------------------------------------- announcement


def test_nothing_before_the_grace_period_starts() -> None:
    assert due(GRACE - S, last_at=None) is None


def test_announcement_exactly_when_the_grace_period_starts() -> None:
    kind, slot, why = due(GRACE, last_at=None)  # type: ignore[misc]
    assert (kind, slot) == (ANNOUNCEMENT, "announcement")
    assert "2016-04-04" in why


def test_announcement_at_local_midnight_in_the_configured_timezone() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2016, 4, 4, tzinfo=paris)  # 2016-04-03T22:00Z
    assert due(start - S, last_at=None, tz=paris) is None
    assert due(start, last_at=None, tz=paris)[0] == ANNOUNCEMENT  # type: ignore[index]
    assert start.astimezone(UTC) < GRACE


def test_an_administrator_who_never_had_a_notice_gets_the_announcement_late() -> None:
    # Added mid-grace (a new administrator): announcement first, whatever slot is due.
    assert due(datetime(2016, 5, 5, tzinfo=UTC), last_at=None)[0] == ANNOUNCEMENT  # type: ignore[index]


def test_no_announcement_on_or_after_the_mandatory_instant() -> None:
    assert due(DEADLINE_AT - S, last_at=None)[0] == ANNOUNCEMENT  # type: ignore[index]
    assert due(DEADLINE_AT, last_at=None) is None
    assert due(DEADLINE_AT + 30 * D, last_at=None) is None


# --------------------------------------------------------------------------- reminder slots


@pytest.mark.parametrize(("instant", "name"), TIMELINE, ids=[n for _, n in TIMELINE])
def test_each_slot_is_due_exactly_at_its_instant_and_not_one_second_before(
    instant: datetime, name: str
) -> None:
    previous = max((t for t, _ in TIMELINE if t < instant), default=None)
    # Last notice just after the previous slot; min_gap off, so only the slot decides.
    last = previous + S if previous else GRACE
    no_gap = NoticeSettings(min_gap=timedelta(0))
    assert slot_name(instant - S, last_at=last, settings=no_gap) is None
    assert slot_name(instant, last_at=last, settings=no_gap) == name
    # With the default min_gap (2d) the slot is due at its instant whenever the last
    # notice is at least 2 days older.
    assert slot_name(instant, last_at=min(last, instant - DEFAULT.min_gap)) == name


@pytest.mark.parametrize(("instant", "name"), TIMELINE, ids=[n for _, n in TIMELINE])
def test_latest_slot_at_and_one_second_before(instant: datetime, name: str) -> None:
    names = [n for _, n in TIMELINE]
    before = names[names.index(name) - 1] if names.index(name) else None
    found = latest_slot(DEFAULT, GRACE, DEADLINE_AT, instant, 0, deadline=MANDATORY)
    assert found is not None and (found.name, found.at) == (name, instant)
    earlier = latest_slot(DEFAULT, GRACE, DEADLINE_AT, instant - S, 0, deadline=MANDATORY)
    assert (earlier.name if earlier else None) == before


def test_latest_slot_reminder_count_and_reason() -> None:
    slot = latest_slot(DEFAULT, GRACE, None, GRACE + 42 * D, 0)
    assert slot is not None and slot.name == r(GRACE + 42 * D) and slot.at == GRACE + 42 * D
    assert "14d" in slot.why


def test_escalation_at_or_before_the_grace_start_is_never_a_slot() -> None:
    # Mandatory 10 days after grace start: the 30d and 14d offsets fall before it.
    deadline_at = GRACE + 10 * D
    names = set()
    t = GRACE
    while t < deadline_at:
        s = latest_slot(DEFAULT, GRACE, deadline_at, t, 0, deadline=deadline_at.date())
        if s:
            names.add(s.name)
        t += timedelta(hours=6)
    assert names == {"v0-e7d-2016-04-14", "v0-e3d-2016-04-14", "v0-e1d-2016-04-14"}


def test_a_slot_already_covered_by_the_last_notice_is_not_due_again() -> None:
    # The e30d slot was sent at 10:00 on its day; the same day it is not due again.
    sent = datetime(2016, 4, 11, 10, tzinfo=UTC)
    assert slot_name(datetime(2016, 4, 17, 23, 59, 59, tzinfo=UTC), last_at=sent) is None
    assert slot_name(datetime(2016, 4, 18, tzinfo=UTC), last_at=sent) == r(GRACE + 14 * D)


def test_nothing_on_or_after_the_mandatory_instant() -> None:
    last = datetime(2016, 5, 8, tzinfo=UTC)
    assert slot_name(DEADLINE_AT - S, last_at=last) == "v0-e1d-2016-05-11"
    assert due(DEADLINE_AT, last_at=last) is None
    assert due(DEADLINE_AT + 14 * D, last_at=last) is None


def test_reminders_switched_off_leave_only_escalations() -> None:
    never = NoticeSettings(reminder_every=None)
    assert (
        slot_name(
            datetime(2016, 4, 18, tzinfo=UTC),
            settings=never,
            last_at=datetime(2016, 4, 11, tzinfo=UTC),
        )
        is None
    )
    assert (
        slot_name(
            datetime(2016, 4, 27, tzinfo=UTC),
            settings=never,
            last_at=datetime(2016, 4, 11, tzinfo=UTC),
        )
        == "v0-e14d-2016-05-11"
    )


# --------------------------------------------------------------------------- min_gap


def test_a_slot_within_min_gap_of_the_last_notice_is_folded_into_the_next_one() -> None:
    # A late announcement on 2016-04-10: the e30d slot (04-11) is within min_gap (2d) of it. It
    # is folded, not sent late on 04-12: the next notice is the next slot (r1, 04-18).
    last = datetime(2016, 4, 10, tzinfo=UTC)
    assert due(datetime(2016, 4, 11, tzinfo=UTC), last_at=last) is None
    assert due(last + DEFAULT.min_gap, last_at=last) is None
    assert due(GRACE + 14 * D - S, last_at=last) is None
    assert slot_name(GRACE + 14 * D, last_at=last) == r(GRACE + 14 * D)
    # A slot exactly min_gap after the last notice is not folded.
    assert (
        slot_name(datetime(2016, 4, 11, tzinfo=UTC), last_at=last - 2 * D) == "v0-e30d-2016-05-11"
    )


def test_min_gap_also_delays_a_schedule_change() -> None:
    last = datetime(2016, 4, 20, tzinfo=UTC)
    assert due(last + D, last_at=last, version=1) is None
    assert due(last + 2 * D, last_at=last, version=1)[0] == SCHEDULE_CHANGE  # type: ignore[index]


def test_min_gap_longer_than_the_cadence_thins_the_notices() -> None:
    wide = NoticeSettings(min_gap=timedelta(days=10))
    last = datetime(2016, 5, 4, tzinfo=UTC)  # e7d sent
    assert due(datetime(2016, 5, 8, tzinfo=UTC), last_at=last, settings=wide) is None
    assert due(datetime(2016, 5, 10, 23, tzinfo=UTC), last_at=last, settings=wide) is None


# --------------------------------------------------------------------------- missed runs


def test_missed_runs_collapse_into_the_latest_slot_only() -> None:
    # Cron was down from the announcement until 2016-05-09: one notice, the e3d escalation.
    now = datetime(2016, 5, 9, 12, tzinfo=UTC)
    assert slot_name(now) == "v0-e3d-2016-05-11"
    # Right after it, nothing older is due (no burst of stale ones).
    assert due(now + DEFAULT.min_gap - S, last_at=now) is None
    # The next slot (e1d, 05-10 00:00) is within min_gap of it: folded, nothing more is due.
    assert slot_name(datetime(2016, 5, 10, tzinfo=UTC), last_at=now) is None
    assert slot_name(datetime(2016, 5, 10, 23, tzinfo=UTC), last_at=now) is None
    # Two days earlier it would have been sent.
    assert slot_name(datetime(2016, 5, 10, 23, tzinfo=UTC), last_at=now - 2 * D) == (
        "v0-e1d-2016-05-11"
    )


# --------------------------------------------------------------------------- TBD and schedule changes


def test_tbd_keeps_reminding_every_period_and_never_escalates() -> None:
    last = GRACE
    for k in range(1, 13):  # almost half a year
        slot_at = GRACE + k * 14 * D
        assert due(slot_at - S, deadline=None, last_at=last) is None
        assert slot_name(slot_at, deadline=None, last_at=last) == r(slot_at)
        last = slot_at


def test_a_date_set_later_gives_one_schedule_change_then_the_cadence() -> None:
    # TBD until 2016-04-20 (version 0); then the date 2016-05-11 (version 1).
    last = datetime(2016, 4, 18, tzinfo=UTC)  # r1 was sent
    kind, slot, why = due(datetime(2016, 4, 20, tzinfo=UTC), last_at=last, seen=0, version=1)  # type: ignore[misc]
    assert (kind, slot) == (SCHEDULE_CHANGE, "schedule-v1")
    assert "date" in why
    # Once seen (the schedule_change carries version 1), never again for that version.
    sent = datetime(2016, 4, 20, tzinfo=UTC)
    assert due(sent + 3 * D, last_at=sent, seen=1, version=1) is None
    assert slot_name(datetime(2016, 4, 27, tzinfo=UTC), last_at=sent, seen=1, version=1) == (
        "v1-e14d-2016-05-11"
    )


def test_no_schedule_change_when_none_of_their_accounts_dates_moved() -> None:
    """Another plan's date moved (SPEC §3): the cadence goes on as if nothing happened."""
    now = datetime(2016, 4, 18, 12, tzinfo=UTC)  # a reminder slot passed at 04-18
    last = datetime(2016, 4, 12, tzinfo=UTC)
    assert due(now, last_at=last, seen=0, version=2)[0] == SCHEDULE_CHANGE  # type: ignore[index]
    assert due(now, last_at=last, seen=0, version=2, changed=False) == (
        REMINDER,
        r(datetime(2016, 4, 18, tzinfo=UTC)),
        "reminder #1 (every 14d)",
    )
    quiet = datetime(2016, 4, 14, 12, tzinfo=UTC)  # no slot since their last notice
    assert due(quiet, last_at=last, seen=0, version=2, changed=False) is None


def test_schedule_change_goes_before_a_due_reminder() -> None:
    now = datetime(2016, 5, 4, tzinfo=UTC)  # e7d is due as well
    assert due(now, last_at=now - 3 * D, seen=0, version=2)[:2] == (SCHEDULE_CHANGE, "schedule-v2")  # type: ignore[index]


def test_a_moved_date_re_arms_the_escalations() -> None:
    # All escalations for 2016-05-11 went out up to e7d; on 05-05 the date moves to 06-01.
    new = date(2016, 6, 1)
    last = datetime(2016, 5, 5, tzinfo=UTC)  # the schedule_change
    kw = {"deadline": new, "seen": 1, "version": 1}
    # 30d before 06-01 (05-02) is older than the last notice: not due.
    assert slot_name(datetime(2016, 5, 10, tzinfo=UTC), last_at=last, **kw) is None
    assert slot_name(datetime(2016, 5, 16, tzinfo=UTC), last_at=last, **kw) == r(GRACE + 42 * D)
    assert (
        slot_name(
            datetime(2016, 5, 18, tzinfo=UTC), last_at=datetime(2016, 5, 16, tzinfo=UTC), **kw
        )
        == "v1-e14d-2016-06-01"
    )
    assert (
        slot_name(
            datetime(2016, 5, 25, tzinfo=UTC), last_at=datetime(2016, 5, 18, tzinfo=UTC), **kw
        )
        == "v1-e7d-2016-06-01"
    )
    # The old date's 05-10 (e1d) slot is gone with it.
    assert (
        slot_name(datetime(2016, 5, 11, tzinfo=UTC), last_at=datetime(2016, 5, 9, tzinfo=UTC), **kw)
        is None
    )


def test_escalation_slot_names_differ_per_deadline_and_version() -> None:
    a = latest_slot(
        DEFAULT, GRACE, DEADLINE_AT, datetime(2016, 5, 4, tzinfo=UTC), 0, deadline=MANDATORY
    )
    later = datetime(2016, 5, 25, tzinfo=UTC)
    b = latest_slot(DEFAULT, GRACE, later, later - 7 * D, 0, deadline=later.date())
    c = latest_slot(
        DEFAULT, GRACE, DEADLINE_AT, datetime(2016, 5, 4, tzinfo=UTC), 3, deadline=MANDATORY
    )
    assert a and b and c
    assert len({a.name, b.name, c.name}) == 3


# --------------------------------------------------------------------------- overrides


SEVERITY_YAML = """\
defaults:
  timezone: UTC
  notices: {reminder_every: 14d, escalate_before: [20d, 7d], min_gap: 2d}
  severity:
    high:
      notices: {reminder_every: 7d}
    critical:
      notices: {reminder_every: 3d, min_gap: 1d, escalate_before: [2d]}
migrations:
  - {id: plain, title: Plain, severity: medium, grace_period_start: 2016-04-04, mandatory_opt_in: 2016-05-11, summary: S}
  - {id: loud, title: Loud, severity: high, grace_period_start: 2016-04-04, mandatory_opt_in: 2016-05-11, summary: S}
  - {id: urgent, title: Urgent, severity: critical, grace_period_start: 2016-04-04, mandatory_opt_in: 2016-05-11, summary: S}
  - id: tuned
    title: Tuned
    severity: high
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    summary: S
    notices: {min_gap: 5d, escalate_before: [1d]}
  - id: quiet
    title: Quiet
    severity: critical
    grace_period_start: 2016-04-04
    mandatory_opt_in: TBD
    summary: S
    notices: {reminder_every: never}
"""


@pytest.fixture
def severity_defs(tmp_path: Path) -> dict[str, Migration]:
    path = tmp_path / "sev.yaml"
    path.write_text(SEVERITY_YAML)
    return {m.id: m for m in load_definitions(path).migrations}


def test_per_severity_overrides_change_the_cadence(severity_defs: dict[str, Migration]) -> None:
    plain, loud, urgent = severity_defs["plain"], severity_defs["loud"], severity_defs["urgent"]
    assert plain.notices.reminder_every == 14 * D
    assert loud.notices.reminder_every == 7 * D
    assert loud.notices.min_gap == 2 * D  # inherited from defaults.notices
    assert loud.notices.escalate_before == (20 * D, 7 * D)
    assert urgent.notices == NoticeSettings(
        reminder_every=3 * D, min_gap=D, escalate_before=(2 * D,)
    )
    # At grace start + 7d: high gets r1, medium has nothing (its first slot, e20d, is 04-21).
    now = GRACE + 7 * D
    assert due(now, settings=plain.notices, m=plain) is None
    assert slot_name(now, settings=loud.notices, m=loud) == r(GRACE + 7 * D)
    # Critical: every 3 days, and min_gap 1d lets them through.
    assert slot_name(GRACE + 3 * D, settings=urgent.notices, m=urgent) == r(GRACE + 3 * D)
    assert slot_name(GRACE + 6 * D, settings=urgent.notices, m=urgent, last_at=GRACE + 3 * D) == r(
        GRACE + 6 * D
    )


def test_per_migration_overrides_go_on_top_of_the_severity(
    severity_defs: dict[str, Migration],
) -> None:
    tuned = severity_defs["tuned"]
    assert tuned.notices.reminder_every == 7 * D  # from severity high
    assert tuned.notices.min_gap == 5 * D  # its own
    assert tuned.notices.escalate_before == (D,)  # its own, replacing the list
    last = GRACE + 7 * D  # r1
    assert due(GRACE + 14 * D - S, settings=tuned.notices, m=tuned, last_at=last) is None
    assert slot_name(GRACE + 14 * D, settings=tuned.notices, m=tuned, last_at=last) == r(
        GRACE + 14 * D
    )
    # The defaults' 30d/7d escalations are gone; only 1d is left.
    assert (
        slot_name(
            datetime(2016, 5, 4, 12, tzinfo=UTC),
            settings=tuned.notices,
            m=tuned,
            last_at=datetime(2016, 4, 25, 12, tzinfo=UTC),
        )
        == "r-20160502T000000Z"
    )
    assert (
        slot_name(DEADLINE_AT - D, settings=tuned.notices, m=tuned, last_at=DEADLINE_AT - 6 * D)
        == "v0-e1d-2016-05-11"
    )


def test_reminders_never_with_tbd_means_silence_after_the_announcement(
    severity_defs: dict[str, Migration],
) -> None:
    quiet = severity_defs["quiet"]
    assert quiet.notices.reminder_every is None
    assert (
        due(GRACE, m=quiet, settings=quiet.notices, deadline=None, last_at=None)[0] == ANNOUNCEMENT
    )  # type: ignore[index]
    for days in (3, 30, 300):
        assert due(GRACE + days * D, m=quiet, settings=quiet.notices, deadline=None) is None


# --------------------------------------------------------------------------- through the store


def daily(start: str, end: str) -> list[datetime]:
    t, stop, out = at(start), at(end), []
    while t <= stop:
        out.append(t)
        t += D
    return out


def test_daily_cron_over_the_whole_grace_period_sends_the_documented_timeline() -> None:
    build_store([account("a1", "ops@x.test")])
    for t in daily("2016-04-01", "2016-05-12"):
        tick(t)
    sent = [(r["created_at"][:10], r["slot"]) for r in outbox()]
    assert sent == [
        ("2016-04-04", "announcement"),
        ("2016-04-11", "v0-e30d-2016-05-11"),
        ("2016-04-18", "r-20160418T000000Z"),
        ("2016-04-27", "v0-e14d-2016-05-11"),
        ("2016-05-02", "r-20160502T000000Z"),
        ("2016-05-04", "v0-e7d-2016-05-11"),
        ("2016-05-08", "v0-e3d-2016-05-11"),
        ("2016-05-10", "v0-e1d-2016-05-11"),
    ]
    assert {r["state"] for r in outbox()} == {"sent"}


def test_a_weekly_cron_collapses_missed_slots() -> None:
    build_store([account("a1", "ops@x.test")])
    for t in daily("2016-04-04", "2016-05-12")[::7]:  # 04-04, 04-11, 04-18, 04-25, 05-02, 05-09
        tick(t)
    assert [(r["created_at"][:10], r["slot"]) for r in outbox()] == [
        ("2016-04-04", "announcement"),
        ("2016-04-11", "v0-e30d-2016-05-11"),
        ("2016-04-18", "r-20160418T000000Z"),
        (
            "2016-05-02",
            "r-20160502T000000Z",
        ),  # 04-27's e14d was overtaken by r2 before the next run
        ("2016-05-09", "v0-e3d-2016-05-11"),  # e7d (05-04) collapsed into e3d
    ]


def test_tbd_then_a_date_set_later_through_sync() -> None:
    build_store([account("a1", "ops@x.test")], mandatory="TBD")
    for t in daily("2016-04-04", "2016-04-19"):
        tick(t)
    resync(mandatory="2016-05-11", now=at("2016-04-20T09:00:00"))
    for t in daily("2016-04-20", "2016-04-28"):
        tick(t)
    rows = [(r["created_at"][:10], r["kind"], r["slot"], r["schedule_version"]) for r in outbox()]
    assert rows == [
        ("2016-04-04", "announcement", "announcement", 0),
        ("2016-04-18", "reminder", "r-20160418T000000Z", 0),
        ("2016-04-20", "schedule_change", "schedule-v1", 1),
        ("2016-04-27", "reminder", "v1-e14d-2016-05-11", 1),
    ]


def test_a_date_moved_later_re_arms_the_escalations_through_sync() -> None:
    build_store([account("a1", "ops@x.test")])
    for t in daily("2016-04-04", "2016-05-04"):
        tick(t)
    resync(mandatory="2016-06-01", now=at("2016-05-05T08:00:00"))
    for t in daily("2016-05-05", "2016-05-31"):
        tick(t)
    after = [(r["created_at"][:10], r["slot"]) for r in outbox("created_at >= '2016-05-05'")]
    assert after == [
        ("2016-05-06", "schedule-v1"),  # min_gap after the 05-04 escalation
        ("2016-05-16", "r-20160516T000000Z"),
        ("2016-05-18", "v1-e14d-2016-06-01"),
        ("2016-05-25", "v1-e7d-2016-06-01"),
        ("2016-05-29", "v1-e3d-2016-06-01"),
        ("2016-05-31", "v1-e1d-2016-06-01"),
    ]


PER_PLAN = "{enterprise: 2016-05-11, free: 2016-05-25}"


def test_an_administrators_deadline_moving_later_does_not_lose_escalations() -> None:
    """Regression: escalation slots were named v{version}-e{offset} only, so after the earliest
    dated account of an administrator was opted in, the escalations for their next date reused
    keys already sent and were silently dropped (the dry run kept announcing them)."""
    from migrate_cli.lifecycle.opting import switch
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import get_migration, store_timezone

    build_store(
        [
            account("big", "ops@x.test", plan="enterprise"),
            account("small", "ops@x.test", plan="free"),
        ],
        mandatory=PER_PLAN,
    )
    for t in daily("2016-04-04", "2016-05-04"):
        tick(t)
    with Store(Path("migctl.db")) as store:
        switch(
            store,
            get_migration(store, MIG),
            store_timezone(store),
            ["big"],
            opt_in=True,
            now=at("2016-05-05"),
            actor="t",
            reason=None,
        )
    for t in daily("2016-05-05", "2016-05-25"):
        assert all(n.key not in {r["key"] for r in outbox()} for n in plan(t)), t
        tick(t)
    later = [(r["created_at"][:10], r["slot"]) for r in outbox("created_at >= '2016-05-05'")]
    assert later == [
        ("2016-05-11", "v0-e14d-2016-05-25"),
        ("2016-05-16", "r-20160516T000000Z"),
        ("2016-05-18", "v0-e7d-2016-05-25"),
        ("2016-05-22", "v0-e3d-2016-05-25"),
        ("2016-05-24", "v0-e1d-2016-05-25"),
    ]


def test_the_plan_says_why_with_slot_accounts_and_days_left() -> None:
    build_store([account("a1", "ops@x.test"), account("a2", "ops@x.test")])
    tick(at("2016-04-04"))
    (n,) = plan(at("2016-04-27T06:00:00"))
    assert (n.kind, n.slot, n.account_ids, n.days_left) == (
        REMINDER,
        "v0-e14d-2016-05-11",
        ("a1", "a2"),
        14,
    )
    assert n.key == notice_key(MIG, "ops@x.test", REMINDER, "v0-e14d-2016-05-11")
    assert "14d before the mandatory date" in n.why and "2 pending" in n.why and "14 day" in n.why


def test_a_longer_reminder_period_never_reuses_a_sent_key() -> None:
    """Weekly reminders r1..r7 went out; switching to 14d must still remind (review finding)."""
    weekly = replace(DEFAULT, reminder_every=7 * D, escalate_before=())
    fortnightly = replace(DEFAULT, reminder_every=14 * D, escalate_before=())
    sent = {latest_slot(weekly, GRACE, None, GRACE + k * 7 * D, 0).name for k in range(1, 8)}  # type: ignore[union-attr]
    for k in range(4, 8):
        later = latest_slot(fortnightly, GRACE, None, GRACE + k * 14 * D, 0)
        assert later is not None and later.name not in sent
