"""Validation of migrations.yaml: every rule, every error located by file, line and field, all at once."""

from __future__ import annotations

import json
import textwrap
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate_cli.definitions.model import (
    Definitions,
    NoticeSettings,
    load_definitions,
    parse_definitions,
)
from migrate_cli.definitions.yamlsafe import Located
from migrate_cli.errors import InputError, Problem

D = timedelta(days=1)


def flat(text: str) -> str:
    """stderr with Rich line wrapping undone (see test_cli_core::test_error_lines_are_not_wrapped)."""
    return " ".join(text.split())


def migration_yaml(**fields: str) -> str:
    """One migration as YAML; a field given as None-string 'DROP' is left out."""
    base = {
        "id": "new-login",
        "title": "New Login",
        "severity": "medium",
        "grace_period_start": "2016-03-22",
        "mandatory_opt_in": "2016-05-11",
        "summary": "Logins change.",
    }
    base.update(fields)
    body = "".join(f"    {k}: {v}\n" for k, v in base.items() if v != "DROP")
    return "  - " + body[4:]


def doc(*migrations: str, defaults: str = "") -> str:
    return (textwrap.dedent(defaults) if defaults else "") + "migrations:\n" + "".join(migrations)


def load(text: str) -> Definitions:
    path = Path("migrations.yaml")
    path.write_text(text)
    return load_definitions(path)


def problems(text: str) -> list[Problem]:
    with pytest.raises(InputError) as info:
        load(text)
    return info.value.problems


def one_problem(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- the shipped file


def test_shipped_definitions(repo_root: Path) -> None:
    defs = load_definitions(repo_root / "migrations.yaml")
    assert defs.ids == ["vulnerable-password-flow", "email-delivery-changes"]
    vpf, edc = defs.migrations
    assert (vpf.title, vpf.severity, vpf.grace_period_start, vpf.mandatory_opt_in) == (
        "Vulnerable Password Flow",
        "medium",
        date(2016, 3, 22),
        None,
    )
    assert vpf.is_tbd
    assert (edc.title, edc.severity, edc.grace_period_start, edc.mandatory_opt_in) == (
        "Email Delivery Changes",
        "medium",
        date(2016, 4, 4),
        date(2016, 5, 11),
    )
    assert vpf.summary and vpf.description and edc.summary and edc.description
    assert defs.timezone_name == "UTC"
    assert edc.notices.reminder_every == 14 * D
    assert edc.notices.escalate_before == (30 * D, 14 * D, 7 * D, 3 * D, 1 * D)
    assert edc.notices.min_gap == 2 * D


def test_stored_form_round_trips(repo_root: Path) -> None:
    """The canonical JSON kept in the store parses back to the same migration."""
    defs = load_definitions(repo_root / "migrations.yaml")
    for m in defs.migrations:
        stored = Located(data={"migrations": [m.to_json()]}, file="<store>")
        (again,) = parse_definitions(stored, from_store=True).migrations
        assert again.to_json() == m.to_json()


def test_minimal_valid_file() -> None:
    defs = load(doc(migration_yaml()))
    (m,) = defs.migrations
    assert m.id == "new-login" and m.mandatory_opt_in == date(2016, 5, 11)
    assert m.applies_to.plans is None and m.applies_to.tags is None
    assert m.notices == NoticeSettings()
    assert m.line == 2


def test_empty_migration_list_is_valid() -> None:
    assert load("migrations: []\n").migrations == ()


# --------------------------------------------------------------------------- located errors


def test_every_error_names_file_line_and_field_all_at_once() -> None:
    text = doc(
        migration_yaml(severity="NO"),  # line 2..8, severity on line 4
        migration_yaml(id="second", grace_period_start="2016-02-30", title="''"),
        defaults="defaults:\n  timezone: Mars/Olympus\n",
    )
    found = problems(text)
    where = {(p.line, p.field) for p in found}
    assert (2, "defaults.timezone") in where
    assert (6, "migrations[0].severity") in where
    assert (11, "migrations[1].title") in where
    assert (13, "migrations[1].grace_period_start") in where
    assert len(found) == 4
    rendered = str(InputError(found))
    assert (
        "migrations.yaml:6: migrations[0].severity: 'NO' is not one of low, medium, high, critical"
        in rendered
    )


def test_cli_validate_lists_all_errors_and_exits_1(runner) -> None:  # type: ignore[no-untyped-def]
    Path("bad.yaml").write_text(doc(migration_yaml(severity="on", grace_period_start="2016-13-01")))
    result = runner("validate", "--file", "bad.yaml")
    assert result.exit_code == 1
    assert "bad.yaml:4: migrations[0].severity" in flat(result.stderr)
    assert "bad.yaml:5: migrations[0].grace_period_start" in flat(result.stderr)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("severity", "NO", "'NO' is not one of low, medium, high, critical"),
        ("severity", "on", "'on' is not one of"),
        ("severity", "Medium", "'Medium' is not one of"),
        ("severity", "1", "a number (1) is not one of"),
        ("grace_period_start", "2016-02-30", "'2016-02-30' is not a real calendar date"),
        ("grace_period_start", "2016-13-01", "is not a real calendar date"),
        ("grace_period_start", "2016-5-11", "expected a date like 2016-05-11"),
        (
            "grace_period_start",
            "2016-05-11T10:00:00",
            "expected a date like 2016-05-11, got '2016-05-11T10:00:00'",
        ),
        ("grace_period_start", "2016-05-11 10:00", "expected a date like 2016-05-11"),
        ("grace_period_start", "0755", "expected a date like 2016-05-11, got '0755'"),
        (
            "grace_period_start",
            "20160511",
            "expected a date like 2016-05-11, got a number (20160511)",
        ),
        ("grace_period_start", "yes", "expected a date like 2016-05-11, got 'yes'"),
        ("mandatory_opt_in", "2016-02-30", "not a real calendar date"),
        ("mandatory_opt_in", "2016-05-11T00:00:00Z", "expected a date like 2016-05-11"),
        ("mandatory_opt_in", "tbd", "write TBD in capitals, got 'tbd'"),
        ("mandatory_opt_in", "Tbd", "write TBD in capitals"),
        ("mandatory_opt_in", "'2016-01-01'", "2016-01-01 is before grace_period_start 2016-03-22"),
        ("mandatory_opt_in", "[2016-05-11]", "expected a date like 2016-05-11, got a list"),
        ("grace_period", "1:20", "expected a duration like 30d, 12h or 90m, got '1:20'"),
        ("grace_period", "0755", "expected a duration like 30d"),
        ("grace_period", "30 days", "expected a duration like 30d"),
        ("grace_period", "12h", "must be whole days"),
        ("id", "Bad_Id", "'Bad_Id' is not a slug"),
        ("id", "a--b", "is not a slug"),
        ("id", "x" * 65, "is not a slug"),
        ("id", "on", None),  # a valid slug that YAML 1.1 would have made True
        ("title", "''", "must not be empty"),
        ("title", '"two\\nlines"', "must be a single line"),
        ("title", "no", None),
        ("summary", "DROP", "is required"),
        ("summary", "[a]", "expected text, got a list"),
        ("docs_url", "ftp://example.com/x", "is not an http(s) URL"),
        ("docs_url", "on", "'on' is not an http(s) URL"),
        ("description", "42", "expected text, got a number (42)"),
    ],
)
def test_field_rules(field: str, value: str, expected: str | None) -> None:
    text = doc(migration_yaml(**{field: value}))
    if expected is None:  # valid, and kept as the text written (not YAML 1.1's True/False)
        (m,) = load(text).migrations
        assert getattr(m, field) == value
        return
    p = one_problem(text)
    assert p.file == "migrations.yaml"
    assert p.field == f"migrations[0].{field}"
    assert expected in p.message
    lines = text.splitlines()
    if field != "summary":  # a missing field points at the migration itself
        assert lines[p.line - 1].strip().lstrip("- ").startswith(f"{field}:"), (p, lines)


@pytest.mark.parametrize("field", ["id", "title", "severity", "grace_period_start"])
def test_required_fields(field: str) -> None:
    p = one_problem(doc(migration_yaml(**{field: "DROP"})))
    assert p.field == f"migrations[0].{field}" and "is required" in p.message
    assert p.line == 2


def test_mandatory_or_grace_period_required() -> None:
    p = one_problem(doc(migration_yaml(mandatory_opt_in="DROP")))
    assert p.field == "migrations[0].mandatory_opt_in"
    assert "unless grace_period is given" in p.message


def test_grace_period_derives_the_mandatory_date() -> None:
    (m,) = load(doc(migration_yaml(mandatory_opt_in="DROP", grace_period="30d"))).migrations
    assert m.mandatory_opt_in == date(2016, 3, 22) + 30 * D
    assert m.grace_period == 30 * D
    assert m.to_json()["mandatory_opt_in"] == "2016-04-21"


def test_explicit_date_wins_over_grace_period() -> None:
    (m,) = load(doc(migration_yaml(grace_period="90d"))).migrations
    assert m.mandatory_opt_in == date(2016, 5, 11)


def test_zero_grace_period_means_mandatory_at_grace_start() -> None:
    (m,) = load(
        doc(migration_yaml(mandatory_opt_in="DROP", grace_period="0d", severity="critical"))
    ).migrations
    assert m.mandatory_opt_in == m.grace_period_start
    assert m.grace_period == timedelta(0)
    # The stored form keeps the zero grace period (enforce treats critical + 0d as immediate).
    assert m.to_json()["grace_period"] == "0d"
    stored = Located(data={"migrations": [m.to_json()]}, file="<store>")
    (again,) = parse_definitions(stored, from_store=True).migrations
    assert again.grace_period == timedelta(0)


def test_tbd_with_a_grace_period_stays_tbd_in_the_store(runner) -> None:  # type: ignore[no-untyped-def]
    """TBD is never enforced automatically, even when a grace_period is also written."""
    Path("migrations.yaml").write_text(
        doc(migration_yaml(mandatory_opt_in="TBD", grace_period="30d"))
    )
    (m,) = load_definitions(Path("migrations.yaml")).migrations
    assert m.is_tbd
    assert runner("--db", "s.db", "sync").exit_code == 0
    result = runner("--db", "s.db", "--now", "2017-01-01", "status", "--json")
    assert result.exit_code == 0, result.stderr
    (st_m,) = json.loads(result.stdout)["migrations"]
    assert st_m["mandatory_opt_in"] is None
    assert st_m["phase"] == "grace"


def test_mandatory_date_before_grace_start() -> None:
    p = one_problem(doc(migration_yaml(mandatory_opt_in="2016-03-21")))
    assert p.field == "migrations[0].mandatory_opt_in"
    assert p.message == "2016-03-21 is before grace_period_start 2016-03-22"
    assert p.line == 6


def test_mandatory_on_grace_start_is_allowed() -> None:
    (m,) = load(doc(migration_yaml(mandatory_opt_in="2016-03-22"))).migrations
    assert m.mandatory_opt_in == m.grace_period_start == date(2016, 3, 22)
    assert m.deadlines() == [date(2016, 3, 22)]


def test_duplicate_ids_name_both() -> None:
    p = one_problem(doc(migration_yaml(), migration_yaml(title="Other")))
    assert p.field == "migrations[1].id"
    assert "duplicate id 'new-login' (also migrations[0])" in p.message
    assert p.line == 8


@pytest.mark.parametrize(
    ("text", "field", "hint"),
    [
        (
            doc(migration_yaml(grace_period_strat="2016-03-22")),
            "migrations[0].grace_period_strat",
            "grace_period_start",
        ),
        (doc(migration_yaml(sumary="x")), "migrations[0].sumary", "summary"),
        (
            doc(migration_yaml(mandatory_optin="TBD")),
            "migrations[0].mandatory_optin",
            "mandatory_opt_in",
        ),
        ("migration: []\n", "migration", "migrations"),
        ("defaults:\n  timezon: UTC\nmigrations: []\n", "defaults.timezon", "timezone"),
        (
            "defaults:\n  notices: {reminder_evry: 7d}\nmigrations: []\n",
            "defaults.notices.reminder_evry",
            "reminder_every",
        ),
        (
            doc(migration_yaml(applies_to="{plan: [free]}")),
            "migrations[0].applies_to.plan",
            "plans",
        ),
    ],
)
def test_misspelled_keys_get_a_suggestion(text: str, field: str, hint: str) -> None:
    found = problems(text)
    (p,) = [p for p in found if p.field == field]
    assert f"unknown key {field.rsplit('.', 1)[-1]!r} (did you mean {hint!r}?)" in p.message
    assert "allowed:" in p.message


def test_unrelated_unknown_key_has_no_suggestion() -> None:
    p = one_problem(doc(migration_yaml(colour="blue")))
    assert "did you mean" not in p.message and "unknown key 'colour'" in p.message


def test_top_level_shapes() -> None:
    assert "expected a mapping" in one_problem("- a\n- b\n").message
    assert "is required" in one_problem("defaults: {}\n").message
    assert "expected a list" in one_problem("migrations: {a: 1}\n").message
    assert "expected a migration mapping" in one_problem("migrations:\n  -\n").message
    assert "expected a mapping" in one_problem("migrations:\n  - just text\n").message


# --------------------------------------------------------------------------- per-plan maps


def test_per_plan_map() -> None:
    (m,) = load(
        doc(
            migration_yaml(
                mandatory_opt_in="{enterprise: 2016-06-01, free: 2016-05-11, developer: TBD}"
            )
        )
    ).migrations
    assert m.per_plan
    assert m.mandatory_opt_in == {"enterprise": date(2016, 6, 1), "free": date(2016, 5, 11)}
    assert m.deadline_for("enterprise") == date(2016, 6, 1)
    assert m.deadline_for("developer") is None  # TBD
    assert m.deadline_for("unlisted") is None
    assert m.deadlines() == [date(2016, 5, 11), date(2016, 6, 1)]
    assert m.mandatory_json() == {"enterprise": "2016-06-01", "free": "2016-05-11"}


def test_per_plan_map_errors_per_plan() -> None:
    text = doc(
        migration_yaml(
            mandatory_opt_in="\n      enterprise: 2016-03-01\n      free: 2016-02-30\n      'bad plan': 2016-06-01\n"
        )
    )
    found = problems(text)
    by_field = {p.field: p for p in found}
    assert by_field["migrations[0].mandatory_opt_in.enterprise"].message == (
        "2016-03-01 is before grace_period_start 2016-03-22"
    )
    assert by_field["migrations[0].mandatory_opt_in.enterprise"].line == 7
    assert "not a real calendar date" in by_field["migrations[0].mandatory_opt_in.free"].message
    assert by_field["migrations[0].mandatory_opt_in.free"].line == 8
    assert "not a valid plan name" in by_field["migrations[0].mandatory_opt_in.bad plan"].message
    assert len(found) == 3


def test_empty_plan_map_refused() -> None:
    assert "must not be empty" in one_problem(doc(migration_yaml(mandatory_opt_in="{}"))).message


def test_all_tbd_plan_map_is_tbd_and_survives_the_store(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import load_catalog
    from migrate_cli.store.sync import sync

    defs = load(doc(migration_yaml(mandatory_opt_in="{enterprise: TBD}")))
    (m,) = defs.migrations
    assert m.is_tbd
    with Store(tmp_path / "s.db") as store:
        sync(store, defs, now=datetime(2016, 1, 1, tzinfo=UTC), actor="t")
        (sm,) = load_catalog(store)
        assert sm.migration.is_tbd


# --------------------------------------------------------------------------- applies_to


def test_applies_to_plans_and_tags() -> None:
    (m,) = load(
        doc(migration_yaml(applies_to="{plans: [enterprise, developer], tags: [eu]}"))
    ).migrations
    assert m.applies_to.plans == {"enterprise", "developer"}
    assert m.applies_to.tags == {"eu"}
    assert m.applies_to.matches("enterprise", {"eu", "sso"})
    assert not m.applies_to.matches("enterprise", {"us"})  # no wanted tag
    assert not m.applies_to.matches("free", {"eu"})  # plan not listed
    assert not m.applies_to.matches("developer", set())


def test_applies_to_tags_any_of() -> None:
    (m,) = load(doc(migration_yaml(applies_to="{tags: [eu, us]}"))).migrations
    assert m.applies_to.plans is None
    assert m.applies_to.matches("free", {"us"}) and m.applies_to.matches("free", {"eu", "x"})
    assert not m.applies_to.matches("free", {"apac"})


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ("{plans: []}", "migrations[0].applies_to.plans", "non-empty list"),
        ("{plans: enterprise}", "migrations[0].applies_to.plans", "non-empty list"),
        ("{tags: ['has space']}", "migrations[0].applies_to.tags[0]", "not a valid tag name"),
        ("{tags: [1]}", "migrations[0].applies_to.tags[0]", "not a valid tag name"),
        ("[enterprise]", "migrations[0].applies_to", "expected a mapping"),
        ("{accounts: [a]}", "migrations[0].applies_to.accounts", "unknown key"),
    ],
)
def test_applies_to_errors(value: str, field: str, message: str) -> None:
    p = one_problem(doc(migration_yaml(applies_to=value)))
    assert p.field == field and message in p.message


# --------------------------------------------------------------------------- notices cadence


CADENCE = """\
defaults:
  timezone: Europe/Paris
  notices:
    reminder_every: 10d
    escalate_before: [7d, 30d, 7d, 1d]
    min_gap: 3d
  severity:
    high:
      notices: {reminder_every: 5d}
    critical:
      notices: {reminder_every: 2d, min_gap: 1d}
"""


def test_defaults_then_severity_then_migration() -> None:
    defs = load(
        doc(
            migration_yaml(id="m-low", severity="low"),
            migration_yaml(id="m-high", severity="high"),
            migration_yaml(id="m-critical", severity="critical", notices="{reminder_every: 4d}"),
            migration_yaml(
                id="m-never",
                severity="high",
                notices="{reminder_every: never, escalate_before: []}",
            ),
            defaults=CADENCE,
        )
    )
    low, high, crit, never = defs.migrations
    assert defs.timezone_name == "Europe/Paris"
    assert low.notices == NoticeSettings(
        10 * D, (30 * D, 7 * D, 1 * D), 3 * D
    )  # sorted, deduplicated
    assert high.notices == NoticeSettings(5 * D, (30 * D, 7 * D, 1 * D), 3 * D)
    assert crit.notices == NoticeSettings(4 * D, (30 * D, 7 * D, 1 * D), 1 * D)
    assert never.notices == NoticeSettings(None, (), 3 * D)
    assert never.to_json()["notices"] == {
        "reminder_every": None,
        "escalate_before": [],
        "min_gap": "3d",
    }


def test_built_in_cadence_without_defaults() -> None:
    (m,) = load(doc(migration_yaml())).migrations
    assert m.notices == NoticeSettings(14 * D, (30 * D, 14 * D, 7 * D, 3 * D, 1 * D), 2 * D)


@pytest.mark.parametrize(
    ("defaults", "field", "message"),
    [
        (
            "defaults:\n  notices: {reminder_every: 0d}\n",
            "defaults.notices.reminder_every",
            "longer than 0",
        ),
        (
            "defaults:\n  notices: {reminder_every: on}\n",
            "defaults.notices.reminder_every",
            "expected a duration",
        ),
        (
            "defaults:\n  notices: {min_gap: 1:20}\n",
            "defaults.notices.min_gap",
            "expected a duration",
        ),
        (
            "defaults:\n  notices: {escalate_before: 7d}\n",
            "defaults.notices.escalate_before",
            "expected a list",
        ),
        (
            "defaults:\n  notices: {escalate_before: [7d, soon]}\n",
            "defaults.notices.escalate_before[1]",
            "expected a duration",
        ),
        (
            "defaults:\n  severity: {urgent: {notices: {}}}\n",
            "defaults.severity.urgent",
            "is not one of low",
        ),
        (
            "defaults:\n  severity: {high: {reminder_every: 1d}}\n",
            "defaults.severity.high.reminder_every",
            "unknown key",
        ),
        (
            "defaults:\n  timezone: Mars/Olympus\n",
            "defaults.timezone",
            "unknown timezone 'Mars/Olympus'",
        ),
        ("defaults:\n  timezone: America\n", "defaults.timezone", "unknown timezone 'America'"),
        ("defaults:\n  timezone: 1\n", "defaults.timezone", "expected a timezone name"),
    ],
)
def test_defaults_errors(defaults: str, field: str, message: str) -> None:
    p = one_problem(defaults + "migrations: []\n")
    assert p.field == field and message in p.message
    assert p.line is not None and p.line >= 2


def test_migration_notice_override_errors_are_located() -> None:
    p = one_problem(doc(migration_yaml(notices="{min_gap: soon}")))
    assert p.field == "migrations[0].notices.min_gap" and p.line == 8


# --------------------------------------------------------------------------- round trip (property)

_DURATIONS = st.sampled_from(["0d", "1d", "30d", "12h", "90m", "0m", "1440m", "48h"])


@settings(max_examples=150, deadline=None)
@given(
    grace=st.sampled_from([None, "0d", "1d", "30d", "90d"]),
    mandatory=st.sampled_from(
        [None, "TBD", "2016-05-11", "{free: 2016-06-01, pro: TBD}", "{x: TBD}"]
    ),
    severity=st.sampled_from(["low", "medium", "high", "critical"]),
    reminder=st.sampled_from([None, "never", "90m", "7d", "24h"]),
    escalate=st.lists(_DURATIONS, max_size=4),
    gap=st.sampled_from([None, "0m", "1d", "36h"]),
    plans=st.sampled_from([None, "[free]", "[free, pro]"]),
    tags=st.sampled_from([None, "[eu]", "[eu, us]"]),
)
def test_every_valid_definition_survives_the_store(  # type: ignore[no-untyped-def]
    grace, mandatory, severity, reminder, escalate, gap, plans, tags
) -> None:
    notices = {"reminder_every": reminder, "min_gap": gap}
    notice_yaml = ", ".join(f"{k}: {v}" for k, v in notices.items() if v is not None)
    notice_yaml += (", " if notice_yaml else "") + f"escalate_before: [{', '.join(escalate)}]"
    audience = ", ".join(f"{k}: {v}" for k, v in (("plans", plans), ("tags", tags)) if v)
    fields = {
        "severity": severity,
        "notices": "{" + notice_yaml + "}",
        "mandatory_opt_in": mandatory or "DROP",
        "grace_period": grace or "DROP",
    }
    if audience:
        fields["applies_to"] = "{" + audience + "}"
    text = doc(migration_yaml(**fields), defaults=CADENCE)
    try:
        defs = load(text)
    except InputError as exc:
        # The only invalid combination generated: neither a date nor a grace period.
        assert mandatory is None and grace is None, exc.problems
        return
    (m,) = defs.migrations
    (again,) = parse_definitions(
        Located(data={"migrations": [m.to_json()]}, file="<store>"), from_store=True
    ).migrations
    assert again.to_json() == m.to_json()
    assert (again.mandatory_opt_in, again.grace_period, again.notices, again.applies_to) == (
        m.mandatory_opt_in,
        m.grace_period,
        m.notices,
        m.applies_to,
    )


def test_the_documented_example_is_valid(repo_root: Path) -> None:
    text = (repo_root / "docs" / "migrations-yaml.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    full = [b for b in blocks if "migrations:" in b]
    assert full
    for block in full:
        Path("migrations.yaml").write_text(block.replace("**What changes.** ...", "What changes."))
        defs = load_definitions(Path("migrations.yaml"))
        assert defs.migrations
