"""notify end to end: digests, who gets nothing, idempotency, dry run, suppression, template
errors, the production refusal, in-doubt rows, configuration and permanent provider errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate_cli.delivery.registry import REGISTRY
from tests.conftest import RunCli
from tests.helpers_notices import (
    MIG,
    RecordingProvider,
    account,
    at,
    build_store,
    config,
    dry_run,
    emls,
    enqueue_only,
    files_digest,
    flat,
    import_rows,
    outbox,
    parse_eml,
    parts,
    plan,
    run_notify,
    sql,
    tick,
    write_config,
)

DB = Path("migctl.db")
SPEC_NOTICE_KEYS = {"planned", "sent", "failed", "in_doubt", "suppressed", "by_kind"}


def notify_json(runner: RunCli, now: str, *args: str, code: int = 0) -> dict:
    result = runner("--now", now, "notify", "--json", *args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def mail_by_recipient() -> dict[str, list]:
    out: dict[str, list] = {}
    for path in emls():
        msg = parse_eml(path)
        out.setdefault(str(msg["To"]), []).append(msg)
    return out


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RecordingProvider]]:
    """Register RecordingProvider as `console` and configure it."""
    RecordingProvider.reset()
    monkeypatch.setitem(REGISTRY, "console", "tests.helpers_notices:RecordingProvider")
    yield RecordingProvider
    RecordingProvider.reset()


# --------------------------------------------------------------------------- digests


def test_an_administrator_with_several_accounts_gets_one_notice_listing_all(runner: RunCli) -> None:
    build_store(
        [
            account("acme-prod", "ops@acme.test", name="ACME Production"),
            account("acme-staging", "ops@acme.test", name="ACME Staging"),
            account("piedpiper", ["richard@pp.test", "ops@acme.test"], name="Pied Piper"),
        ]
    )
    doc = notify_json(runner, "2016-04-20")
    assert doc["notices"]["planned"] == 2 and doc["notices"]["sent"] == 2
    mail = mail_by_recipient()
    assert sorted(mail) == ["ops@acme.test", "richard@pp.test"]
    (ops,) = mail["ops@acme.test"]
    text = parts(ops)["plain"]
    for line in (
        "- ACME Production (acme-prod)",
        "- ACME Staging (acme-staging)",
        "- Pied Piper (piedpiper)",
    ):
        assert line in text
    assert "(3)" in text  # the heading counts them
    (richard,) = mail["richard@pp.test"]
    assert "Pied Piper" in parts(richard)["plain"] and "ACME" not in parts(richard)["plain"]
    rows = {r["email"]: r for r in outbox()}
    assert json.loads(rows["ops@acme.test"]["accounts"]) == [
        "acme-prod",
        "acme-staging",
        "piedpiper",
    ]
    assert rows["ops@acme.test"]["accounts_count"] == 3


def test_an_account_with_several_administrators_gives_each_one_notice(runner: RunCli) -> None:
    build_store([account("globex", ["it@globex.test", "cfo@globex.test", "eu@globex.test"])])
    notify_json(runner, "2016-04-20")
    mail = mail_by_recipient()
    assert sorted(mail) == ["cfo@globex.test", "eu@globex.test", "it@globex.test"]
    assert all(len(msgs) == 1 for msgs in mail.values())
    for msgs in mail.values():
        assert msgs[0].get_all("To") and len(msgs[0].get_all("To")) == 1
        assert "GLOBEX (globex)" in parts(msgs[0])["plain"]


def test_an_administrator_with_500_pending_accounts_gets_one_email(runner: RunCli) -> None:
    build_store([account(f"acc-{i:03d}", "busy@x.test", name=f"Shop {i:03d}") for i in range(500)])
    doc = notify_json(runner, "2016-04-20")
    assert doc["notices"]["sent"] == 1
    (path,) = emls()
    text = parts(parse_eml(path))["plain"]
    assert "(500)" in text
    assert "- Shop 000 (acc-000)" in text and "- Shop 099 (acc-099)" in text
    assert "acc-100" not in text  # the list is capped; the rest is counted
    assert "400 more" in text
    (row,) = outbox()
    assert row["accounts_count"] == 500 and len(json.loads(row["accounts"])) == 500


def test_per_plan_dates_give_each_administrator_their_own_earliest_date(runner: RunCli) -> None:
    build_store(
        [
            account("big", "ops@x.test", plan="enterprise"),
            account("small", ["ops@x.test", "solo@x.test"], plan="free"),
        ],
        mandatory="{enterprise: 2016-05-11, free: 2016-05-25}",
    )
    notify_json(runner, "2016-04-20")
    rows = {r["email"]: r for r in outbox()}
    assert rows["ops@x.test"]["deadline"] == "2016-05-11"
    assert rows["solo@x.test"]["deadline"] == "2016-05-25"
    mail = mail_by_recipient()
    assert "11 May 2016" in parts(mail["ops@x.test"][0])["plain"]
    assert "25 May 2016" in parts(mail["solo@x.test"][0])["plain"]


# --------------------------------------------------------------------------- who gets nothing


def test_closed_accounts_count_nowhere() -> None:
    build_store(
        [
            account("live", "mixed@x.test"),
            account(
                "gone", ["mixed@x.test", "only-closed@x.test"], status="closed", name="Gone Co"
            ),
        ]
    )
    summary = run_notify(at("2016-04-20"))
    assert summary.planned == 1
    (row,) = outbox()
    assert row["email"] == "mixed@x.test"
    assert json.loads(row["accounts"]) == ["live"]
    (path,) = emls()
    assert "Gone Co" not in parts(parse_eml(path))["plain"]


def test_closing_the_last_pending_account_stops_the_notices() -> None:
    build_store([account("a1", "ops@x.test"), account("b1", "other@x.test")])
    tick(at("2016-04-04"))
    import_rows([account("a1", "ops@x.test", status="closed")], now=at("2016-04-10"))
    tick(at("2016-04-11"))
    assert [(r["email"], r["slot"]) for r in outbox("created_at >= '2016-04-11'")] == [
        ("other@x.test", "v0-e30d-2016-05-11")
    ]


def test_accounts_created_after_grace_start_are_auto_enrolled_and_never_notified() -> None:
    build_store(
        [
            account("old", "old@x.test", created_at="2016-04-03T23:59:59"),
            account("new", "new@x.test", created_at="2016-04-04"),
        ]
    )
    run_notify(at("2016-04-20"))
    assert [r["email"] for r in outbox()] == ["old@x.test"]


def test_opting_in_the_last_pending_account_stops_that_administrators_notices() -> None:
    from migrate_cli.lifecycle.opting import switch
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import get_migration, store_timezone

    build_store(
        [
            account("a1", "ops@x.test"),
            account("a2", ["ops@x.test", "dev@x.test"]),
            account("b1", "dev@x.test"),
        ]
    )
    tick(at("2016-04-04"))

    def opt_in(ids: list[str], when: str) -> None:
        with Store(DB) as store:
            switch(
                store,
                get_migration(store, MIG),
                store_timezone(store),
                ids,
                opt_in=True,
                now=at(when),
                actor="t",
                reason=None,
            )

    opt_in(["a1"], "2016-04-05")
    tick(at("2016-04-11"))  # ops still has a2 pending: e30d lists only a2
    rows = {r["email"]: r for r in outbox("slot = 'v0-e30d-2016-05-11'")}
    assert json.loads(rows["ops@x.test"]["accounts"]) == ["a2"]
    opt_in(["a2"], "2016-04-12")  # ops is done; dev still has b1
    for day in ("2016-04-18", "2016-04-27", "2016-05-02", "2016-05-10"):
        tick(at(day))
    later = outbox("created_at > '2016-04-12'")
    assert later and {r["email"] for r in later} == {"dev@x.test"}
    assert all(json.loads(r["accounts"]) == ["b1"] for r in later)


def test_migrated_administrators_get_the_enforced_notice_only_if_they_had_pending_accounts(
    runner: RunCli,
) -> None:
    from migrate_cli.lifecycle.opting import switch
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import get_migration, store_timezone

    build_store([account("a1", "early@x.test"), account("b1", "late@x.test")])
    run_notify(at("2016-04-04"))
    with Store(DB) as store:
        switch(
            store,
            get_migration(store, MIG),
            store_timezone(store),
            ["a1"],
            opt_in=True,
            now=at("2016-04-06"),
            actor="t",
            reason=None,
        )
    result = runner("--now", "2016-05-11T01:00:00", "enforce", "--json")
    assert result.exit_code == 0, result.stderr
    doc = notify_json(runner, "2016-05-11T01:00:00")
    assert doc["notices"]["sent"] == 1
    enforced = outbox("kind = 'enforced'")
    assert [(r["email"], json.loads(r["accounts"])) for r in enforced] == [("late@x.test", ["b1"])]
    assert "early@x.test" not in {r["email"] for r in outbox("created_at > '2016-04-06'")}
    # Once, and nothing after it.
    again = notify_json(runner, "2016-05-20")
    assert again["notices"]["planned"] == 0 and again["notices"]["sent"] == 0


# --------------------------------------------------------------------------- idempotency


def test_notify_twice_at_the_same_instant_adds_no_rows_and_no_files(runner: RunCli) -> None:
    build_store([account("a1", "ops@x.test"), account("a2", ["ops@x.test", "dev@x.test"])])
    first = notify_json(runner, "2016-04-20T10:00:00")
    assert first["notices"]["planned"] == 2 and first["notices"]["sent"] == 2
    rows = outbox()
    files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in emls()}
    assert len(files) == 2
    second = notify_json(runner, "2016-04-20T10:00:00")
    assert second["notices"]["planned"] == 0 and second["notices"]["sent"] == 0
    assert second["notices"]["by_kind"] == {}
    assert outbox() == rows
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in emls()} == files


def test_keys_are_unique_per_migration_administrator_kind_and_slot() -> None:
    build_store([account("a1", "ops@x.test")])
    run_notify(at("2016-04-04"))
    run_notify(at("2016-04-11"))
    keys = [r["key"] for r in outbox()]
    assert keys == [
        f"{MIG}|ops@x.test|announcement|announcement",
        f"{MIG}|ops@x.test|reminder|v0-e30d-2016-05-11",
    ]
    # The key is in the message, so a provider-side duplicate is recognisable.
    msgs = [parse_eml(p) for p in emls()]
    assert sorted(str(m["X-Migctl-Notice"]) for m in msgs) == sorted(keys)


# --------------------------------------------------------------------------- dry run


def test_dry_run_writes_nothing_and_reports_the_spec_keys(runner: RunCli) -> None:
    build_store([account("a1", "ops@x.test"), account("a2", ["ops@x.test", "dev@x.test"])])
    before = files_digest(DB)
    result = runner("--now", "2016-04-20", "notify", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert files_digest(DB) == before
    assert not Path("outbox").exists()
    assert {"now", "dry_run", "notices"} <= set(doc)
    assert set(doc["notices"]) >= SPEC_NOTICE_KEYS
    assert doc["now"].startswith("2016-04-20T00:00:00")
    assert doc["dry_run"] is True
    n = doc["notices"]
    assert (n["planned"], n["sent"], n["failed"], n["in_doubt"], n["suppressed"]) == (2, 0, 0, 0, 0)
    assert n["by_kind"] == {"announcement": 2}
    # ... and what it announced is what the real run then does.
    real = notify_json(runner, "2016-04-20")
    assert real["dry_run"] is False
    assert set(real["notices"]) >= SPEC_NOTICE_KEYS
    assert (real["notices"]["planned"], real["notices"]["by_kind"]) == (2, {"announcement": 2})


def test_dry_run_table_says_who_gets_what_and_why(runner: RunCli) -> None:
    build_store([account("a1", "ops@x.test"), account("a2", "ops@x.test")])
    run_notify(at("2016-04-04"))
    before = files_digest(DB)
    result = runner("--now", "2016-04-27", "notify", "--dry-run")
    assert result.exit_code == 0, result.stderr
    out = flat(result.stdout)
    assert "ops@x.test" in out and "reminder" in out
    assert "14d before the mandatory date" in out and "2 pending account(s)" in out
    assert "nothing was written" in out
    assert files_digest(DB) == before
    assert len(emls()) == 1  # only the announcement sent earlier


def test_dry_run_of_an_unknown_migration_is_an_error(runner: RunCli) -> None:
    build_store([account("a1", "ops@x.test")])
    result = runner("--now", "2016-04-20", "notify", "nope", "--dry-run")
    assert result.exit_code == 1
    assert "nope" in result.stderr


# --------------------------------------------------------------------------- suppression


def test_a_suppressed_administrator_gets_no_email_and_counts_in_suppressed(runner: RunCli) -> None:
    build_store([account("a1", "ops@x.test"), account("b1", "other@x.test")])
    assert runner("suppress", "add", "OPS@x.test", "--reason", "asked").exit_code == 0
    dry = notify_json(runner, "2016-04-20", "--dry-run")
    assert (dry["notices"]["planned"], dry["notices"]["suppressed"]) == (1, 1)
    doc = notify_json(runner, "2016-04-20")
    assert (doc["notices"]["planned"], doc["notices"]["sent"], doc["notices"]["suppressed"]) == (
        1,
        1,
        1,
    )
    assert sorted(mail_by_recipient()) == ["other@x.test"]
    assert [(r["email"], r["state"]) for r in outbox("state = 'suppressed'")] == [
        ("ops@x.test", "suppressed")
    ]
    listed = runner("suppress", "list", "--json")
    assert [s["email"] for s in json.loads(listed.stdout)["suppressions"]] == ["ops@x.test"]
    # Later runs plan nothing more for them (and never send).
    notify_json(runner, "2016-04-27")
    assert sorted(mail_by_recipient()) == ["other@x.test"]


def test_an_address_suppressed_then_allowed_again_gets_its_notices_again(runner: RunCli) -> None:
    """Regression: the announcement's key was taken by the `suppressed` row, so after
    `suppress remove` the planner proposed it on every run and the insert ignored it: the
    administrator never got another notice, while the dry run kept counting one."""
    build_store([account("a1", "ops@x.test")])
    runner("suppress", "add", "ops@x.test")
    notify_json(runner, "2016-04-05")
    assert runner("suppress", "remove", "ops@x.test").exit_code == 0
    dry = notify_json(runner, "2016-04-07", "--dry-run")
    real = notify_json(runner, "2016-04-07")
    assert dry["notices"]["planned"] == real["notices"]["planned"] == real["notices"]["sent"] == 1
    assert [str(m["X-Migctl-Kind"]) for m in mail_by_recipient()["ops@x.test"]] == ["announcement"]
    notify_json(runner, "2016-04-11")
    assert sorted(str(m["X-Migctl-Kind"]) for m in mail_by_recipient()["ops@x.test"]) == [
        "announcement",
        "reminder",
    ]
    assert runner("outbox", "list", "--state", "suppressed", "--json").exit_code == 0
    assert outbox("state = 'suppressed'") == []


# --------------------------------------------------------------------------- bad templates


def broken_templates(repo_root: Path, name: str, line: int, text: str) -> Path:
    folder = Path("tpl")
    shutil.copytree(repo_root / "email_templates", folder)
    shutil.copytree(repo_root / "examples" / MIG, folder / MIG)  # the demo's override
    lines = (folder / name).read_text().splitlines(keepends=True)
    lines.insert(line - 1, text + "\n")
    (folder / name).write_text("".join(lines))
    return folder


@pytest.mark.parametrize(
    ("name", "line", "text"),
    [
        ("reminder.html", 4, "{% if %}"),  # a syntax error, in a kind not due today
        ("announcement.txt", 5, "{{ migration.no_such_field }}"),  # fails only when rendered
        ("email-delivery-changes/reminder.txt", 11, "{{ 1 / 0 }}"),  # a per-migration override
        ("layout.html", 3, "{% endblock %}"),  # the shared layout
    ],
)
def test_a_template_that_fails_stops_notify_before_anything_is_sent(
    runner: RunCli, repo_root: Path, name: str, line: int, text: str
) -> None:
    build_store([account("a1", "ops@x.test")])
    broken_templates(repo_root, name, line, text)
    write_config(extra='templates_dir = "tpl"')
    before = files_digest(DB)
    result = runner("--now", "2016-04-20", "notify")
    assert result.exit_code == 1
    err = flat(result.stderr)
    assert f"{name}:{line}" in err, err
    assert "nothing was sent" in err
    assert outbox() == []
    assert not emls()
    assert files_digest(DB) == before


def test_the_working_copy_of_the_templates_sends(runner: RunCli, repo_root: Path) -> None:
    # The same setup with an intact copy works, so the tests above fail for their reason.
    build_store([account("a1", "ops@x.test")])
    shutil.copytree(repo_root / "email_templates", "tpl")
    Path("tpl/announcement.subject.txt").write_text("Custom subject for {{ migration.title }}\n")
    write_config(extra='templates_dir = "tpl"')
    notify_json(runner, "2016-04-20")
    (path,) = emls()
    assert str(parse_eml(path)["Subject"]) == "Custom subject for Email Delivery Changes"


# --------------------------------------------------------------------------- production refusal


@pytest.mark.parametrize("provider", ["console", "file"])
def test_development_providers_refuse_production_and_write_nothing(
    runner: RunCli, provider: str
) -> None:
    build_store([account("a1", "ops@x.test")])
    sql("UPDATE outbox SET state = state")  # (no rows; just proves the db is writable)
    write_config(provider=provider, environment="production")
    before = files_digest(DB)
    result = runner("--now", "2016-04-20", "notify", "--json")
    assert result.exit_code == 1
    err = flat(result.stderr)
    assert provider in err and "production" in err and "smtp, ses or sendgrid" in err
    doc = json.loads(result.stdout)  # --json: exactly one document, the error in it
    assert provider in doc["error"] and "production" in doc["error"]
    assert doc["notices"]["planned"] == doc["notices"]["sent"] == 0
    assert files_digest(DB) == before
    assert outbox() == []
    assert not Path("outbox").exists()


# --------------------------------------------------------------------------- in doubt


def crashed_mid_send() -> dict:
    """Two notices enqueued; the run 'died' after marking ops's row `sending`."""
    build_store([account("a1", "ops@x.test"), account("b1", "other@x.test")])
    assert enqueue_only(at("2016-04-20")) == 2
    sql("UPDATE outbox SET state = 'sending', attempts = 1 WHERE email = 'ops@x.test'")
    (row,) = outbox("email = 'ops@x.test'")
    return row


def test_rows_left_sending_become_in_doubt_are_reported_and_never_resent(runner: RunCli) -> None:
    row = crashed_mid_send()
    doc = notify_json(runner, "2016-04-20T01:00:00", code=3)
    assert doc["notices"]["in_doubt"] == 1 and doc["notices"]["sent"] == 1
    assert sorted(mail_by_recipient()) == ["other@x.test"]
    (after,) = outbox("id = ?", (row["id"],))
    assert after["state"] == "in_doubt" and "interrupted" in after["last_error"]
    # Reported on every run until settled, never sent, no second row for its key.
    again = notify_json(runner, "2016-04-20T02:00:00", code=3)
    assert again["notices"]["in_doubt"] == 1 and again["notices"]["sent"] == 0
    assert "ops@x.test" not in mail_by_recipient()
    # It counts as their last notice: the cadence goes on from it (next slot 04-27) and the
    # in-doubt announcement itself is still not sent.
    later = notify_json(runner, "2016-04-27", code=3)
    assert later["notices"]["in_doubt"] == 1
    ops = [str(m["X-Migctl-Notice"]) for m in mail_by_recipient()["ops@x.test"]]
    assert ops == [f"{MIG}|ops@x.test|reminder|v0-e14d-2016-05-11"]
    assert len(outbox("key = ?", (row["key"],))) == 1
    listed = json.loads(runner("outbox", "list", "--state", "in_doubt", "--json").stdout)
    assert [r["id"] for r in listed["rows"]] == [row["id"]] and listed["counts"]["in_doubt"] == 1


def test_resolve_sent_settles_without_sending(runner: RunCli) -> None:
    row = crashed_mid_send()
    notify_json(runner, "2016-04-20T01:00:00", code=3)
    result = runner("--now", "2016-04-20T03:00:00", "outbox", "resolve", str(row["id"]), "--sent")
    assert result.exit_code == 0, result.stderr
    assert "sent" in result.stdout
    doc = notify_json(runner, "2016-04-20T04:00:00")
    assert doc["notices"]["in_doubt"] == 0
    (after,) = outbox("id = ?", (row["id"],))
    assert after["state"] == "sent" and after["sent_at"]
    assert "ops@x.test" not in mail_by_recipient()


def test_resolve_not_sent_sends_it_on_the_next_run(runner: RunCli) -> None:
    row = crashed_mid_send()
    notify_json(runner, "2016-04-20T01:00:00", code=3)
    assert runner("outbox", "resolve", str(row["id"]), "--not-sent").exit_code == 0
    doc = notify_json(runner, "2016-04-20T04:00:00")
    assert (doc["notices"]["sent"], doc["notices"]["in_doubt"]) == (1, 0)
    (msg,) = mail_by_recipient()["ops@x.test"]
    assert str(msg["X-Migctl-Notice"]) == row["key"]
    assert outbox("id = ?", (row["id"],))[0]["state"] == "sent"


def test_resolve_refuses_rows_that_are_not_in_doubt(runner: RunCli) -> None:
    row = crashed_mid_send()
    assert runner("outbox", "resolve", str(row["id"]), "--sent").exit_code == 1  # still sending
    notify_json(runner, "2016-04-20T01:00:00", code=3)
    (other,) = outbox("email = 'other@x.test'")
    refused = runner("outbox", "resolve", str(other["id"]), "--not-sent")
    assert refused.exit_code == 1 and "not in_doubt" in flat(refused.stderr)
    assert runner("outbox", "resolve", "999", "--sent").exit_code == 1
    both = runner("outbox", "resolve", str(row["id"]), "--sent", "--not-sent")
    assert both.exit_code == 2 and "exactly one" in flat(both.stderr)  # usage error
    assert outbox("id = ?", (other["id"],))[0]["state"] == "sent"


# --------------------------------------------------------------------------- provider errors


def test_a_configuration_error_mid_batch_stops_the_run_and_fails_nothing(
    runner: RunCli, recording: type[RecordingProvider]
) -> None:
    build_store([account(f"a{i}", f"admin{i}@x.test") for i in range(4)])
    write_config(provider="console")
    recording.config_error_after = 2
    result = runner("--now", "2016-04-20", "notify")
    assert result.exit_code == 1
    assert "invalid API key" in flat(result.stderr)
    rows = outbox()
    states = [r["state"] for r in rows]
    assert states.count("sent") == 2 and states.count("pending") == 2
    assert "failed" not in states and "in_doubt" not in states
    sent_keys = {r["key"] for r in rows if r["state"] == "sent"}
    assert sent_keys == set(recording.sent)
    assert all(r["attempts"] == 0 for r in rows if r["state"] == "pending")
    # Every row left waiting says why (outbox list shows it), not only the one in flight.
    errors = [r["last_error"] for r in rows if r["state"] == "pending"]
    assert errors == ["console: invalid API key (test provider)"] * 2, errors
    assert runner("suppress", "list", "--json").stdout.count("@x.test") == 0
    # Fixed: the next run sends the rest, and nothing twice.
    recording.config_error_after = None
    doc = notify_json(runner, "2016-04-20T00:30:00")
    assert doc["notices"]["sent"] == 2 and doc["notices"]["planned"] == 0
    assert len(recording.sent) == 4 == len(set(recording.sent))


def test_a_permanent_failure_fails_that_notice_suppresses_the_address_and_continues(
    runner: RunCli, recording: type[RecordingProvider]
) -> None:
    build_store(
        [account("a1", "gone@x.test"), account("b1", "fine@x.test"), account("c1", "also@x.test")]
    )
    write_config(provider="console")
    recording.permanent_for = {"gone@x.test"}
    doc = notify_json(runner, "2016-04-20", code=3)
    n = doc["notices"]
    assert (n["planned"], n["sent"], n["failed"]) == (3, 2, 1)
    (failed,) = outbox("state = 'failed'")
    assert failed["email"] == "gone@x.test" and "550" in failed["last_error"]
    suppressed = json.loads(runner("suppress", "list", "--json").stdout)["suppressions"]
    assert [(s["email"], s["source"]) for s in suppressed] == [("gone@x.test", "provider:550")]
    # The next slot: the bounced address is not tried again; its notice is recorded suppressed.
    recording.permanent_for = set()
    later = notify_json(runner, "2016-04-27")
    assert later["notices"]["sent"] == 2 and later["notices"]["suppressed"] == 1
    assert [r["email"] for r in outbox("state = 'suppressed'")] == ["gone@x.test"]
    assert not any(k.startswith(f"{MIG}|gone@x.test|reminder") for k in recording.sent)


def test_library_notify_raises_the_configuration_error_after_recording(
    recording: type[RecordingProvider],
) -> None:
    from migrate_cli.delivery.registry import ProviderConfigError

    build_store([account("a1", "a@x.test"), account("b1", "b@x.test")])
    write_config(provider="console")
    recording.config_error_after = 1
    with pytest.raises(ProviderConfigError):
        run_notify(at("2016-04-20"), config())
    assert sorted(r["state"] for r in outbox()) == ["pending", "sent"]


def test_plan_and_dry_run_agree() -> None:
    build_store([account("a1", "ops@x.test"), account("a2", ["ops@x.test", "x@x.test"])])
    planned = plan(at("2016-04-20"))
    summary = dry_run(at("2016-04-20"))
    assert summary.planned == len(planned) == 2
    assert [n.email for n in summary.sample] == [n.email for n in planned]


def test_an_override_folder_of_another_migration_does_not_stop_notify(tmp_path: Path) -> None:
    """An override folder of another migration must not block a store that defines other
    migrations: `validate` warns of strays, sending does not stop for them."""
    from datetime import UTC, datetime

    from migrate_cli.config import Config
    from migrate_cli.definitions.model import load_definitions
    from migrate_cli.notices.notify import check_renderer, make_renderer
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone
    from migrate_cli.store.sync import sync

    templates = tmp_path / "tpl"
    shutil.copytree(Path(__file__).resolve().parent.parent / "email_templates", templates)
    (templates / "some-other-migration").mkdir()
    yaml_path = tmp_path / "m.yaml"
    yaml_path.write_text(
        "migrations:\n  - id: only-one\n    title: Only one\n    severity: low\n"
        "    grace_period_start: 2016-01-01\n    mandatory_opt_in: TBD\n    summary: s\n"
    )
    with Store(tmp_path / "x.db") as store:
        sync(store, load_definitions(yaml_path), now=datetime(2016, 1, 2, tzinfo=UTC), actor="t")
        config = Config(templates_dir=templates)
        catalog = load_catalog(store)
        check_renderer(make_renderer(config), [sm.migration for sm in catalog])  # no exception
        strays = make_renderer(config).unknown_override_folders([sm.migration for sm in catalog])
        assert any("not a known migration id" in p.message for p in strays)
        assert store_timezone(store) is not None


def test_enqueue_counts_only_rows_written(tmp_path: Path) -> None:
    """Planned counts and by_kind agree when keys already exist (review finding)."""
    from datetime import UTC, date, datetime

    from migrate_cli.store.db import Store
    from migrate_cli.store.outbox import PlannedNotice, enqueue

    notice = PlannedNotice(
        "m", "a@x.test", "reminder", "r-x", ("acc",), date(2016, 5, 11), 3, "why", 0
    )
    with Store(tmp_path / "s.db") as store:
        store.conn.execute("PRAGMA foreign_keys = OFF")  # no migration row needed here
        now = datetime(2016, 5, 8, tzinfo=UTC)
        with store.transaction() as conn:
            first = enqueue(conn, [notice], now=now, from_addr="n@x.test")
        with store.transaction() as conn:
            again = enqueue(conn, [notice], now=now, from_addr="n@x.test")
    assert (first.enqueued, first.by_kind) == (1, {"reminder": 1})
    assert (again.enqueued, again.by_kind, again.suppressed) == (0, {}, 0)


def test_waiting_notices_are_not_sent_to_an_address_suppressed_since(runner: RunCli) -> None:
    """A notice queued earlier (here: left pending by a stopped run) and an address suppressed
    afterwards: nothing is sent to it, the row says why (review finding)."""
    build_store([account("a1", "ops@x.test"), account("b1", "other@x.test")])
    assert enqueue_only(at("2016-04-20")) == 2
    assert runner("suppress", "add", "ops@x.test").exit_code == 0
    doc = notify_json(runner, "2016-04-21")
    assert sorted(mail_by_recipient()) == ["other@x.test"]
    (row,) = outbox("email = 'ops@x.test'")
    assert (row["state"], row["error_code"]) == ("suppressed", "suppressed")
    assert doc["notices"]["suppressed"] >= 1


def test_waiting_notices_about_migrated_accounts_are_not_sent(runner: RunCli) -> None:
    """SPEC rule 5: mail stops once every account is migrated, also for a notice that was
    still waiting in the outbox when the last account opted in."""
    build_store([account("a1", "ops@x.test"), account("b1", "other@x.test")])
    assert enqueue_only(at("2016-04-20")) == 2
    opt = runner("--now", "2016-04-21", "opt-in", MIG, "--account", "a1")
    assert opt.exit_code == 0, opt.stderr
    notify_json(runner, "2016-04-21")
    assert sorted(mail_by_recipient()) == ["other@x.test"]
    (row,) = outbox("email = 'ops@x.test'")
    assert (row["state"], row["error_code"]) == ("suppressed", "superseded")


def test_ctrl_c_inside_a_send_leaves_only_that_notice_in_doubt(
    recording: type[RecordingProvider],
) -> None:
    build_store([account(f"a{i}", f"admin{i}@x.test") for i in range(6)])
    write_config(provider="console")
    recording.interrupt_after = 2
    with pytest.raises(KeyboardInterrupt):
        run_notify(at("2016-04-20"))
    states = sorted(r["state"] for r in outbox())
    # two sent; the one interrupted may have been handed over (the next run marks it in
    # doubt); the rest of its batch never reached the provider and waits as pending
    assert states == ["pending"] * 3 + ["sending"] + ["sent"] * 2
