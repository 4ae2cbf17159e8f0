"""`feedback import` and `record_batch`: delivery events matched to notices, suppression, rates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from migrate_cli.delivery.file import eml_filename
from tests.feedback_events import (
    sendgrid,
    ses_bounce,
    ses_complaint,
    ses_delay,
    ses_delivery,
    ses_mail,
    ses_reject,
    sns,
)
from tests.helpers_enforce import MAIL, dump, migctl, ok, query, setup_store


def sent_notices(db: Path) -> dict[str, Any]:
    """email -> its outbox row (one notice each after the first notify)."""
    return {r["email"]: r for r in query(db, "SELECT * FROM outbox ORDER BY id")}


def write_lines(path: Path, values: list[Any | str]) -> Path:
    path.write_text("".join((v if isinstance(v, str) else json.dumps(v)) + "\n" for v in values))
    return path


def import_json(folder: Path, path: Path, *args: str) -> dict[str, Any]:
    r = ok(migctl(folder, "--now", "2016-04-21", "feedback", "import", str(path), "--json", *args))
    return json.loads(r.stdout)


def test_import_of_a_mixed_file(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    rows = sent_notices(db)
    assert set(rows) == {f"{x}@x.test" for x in "abcdef"} | {"shared@x.test"}
    assert {r["state"] for r in rows.values()} == {"sent"}
    a, b, c, d, e = (rows[f"{x}@x.test"] for x in "abcde")

    bounce_a = sns(ses_bounce(ses_mail("a@x.test", notice_key=a["key"]), ["a@x.test"]))
    # Raw SES event (S3/Firehose), matched by our Message-ID header only.
    delivery_b = ses_delivery(
        ses_mail("b@x.test", message_id="unknown-ses-id", header_message_id=b["message_id"]),
        "b@x.test",
    )
    # An identity notification (no tags), matched by SES's MessageId.
    complaint_c = sns(
        ses_complaint(
            ses_mail("c@x.test", message_id=c["provider_message_id"]),
            "c@x.test",
            notification=True,
        )
    )
    batch = [
        sendgrid("delivered", "d@x.test", key=d["key"], sg_event_id="ev-d-1", response="250 OK"),
        sendgrid("processed", "d@x.test", key=d["key"], sg_event_id="ev-d-0"),
        sendgrid(
            "bounce",
            "e@x.test",
            key=e["key"],
            sg_event_id="ev-e-1",
            type="blocked",
            status="4.2.2",
            reason="452 4.2.2 mailbox full",
        ),
        sendgrid("open", "d@x.test", key=d["key"], sg_event_id="ev-d-2", useragent="Mozilla"),
    ]
    orphan = sendgrid("delivered", "zed@x.test", key="gone|zed@x.test|x|y", sg_event_id="ev-z")
    wrong_type = ses_bounce(ses_mail("a@x.test"), ["a@x.test"])
    wrong_type["bounce"]["bouncedRecipients"] = "a@x.test"
    events = write_lines(
        tmp_path / "events.jsonl",
        [bounce_a, delivery_b, complaint_c, batch, "{not json", orphan, bounce_a, wrong_type],
    )
    before = query(db, "SELECT count(*) AS n FROM audit")[0]["n"]

    doc = import_json(tmp_path, events)

    counts = {k: doc[k] for k in ("received", "recorded", "duplicates", "orphans")}
    assert counts == {"received": 11, "recorded": 5, "duplicates": 1, "orphans": 1}
    assert (doc["malformed"], doc["ignored"]) == (2, 2)
    assert sorted(doc["suppressed"]) == ["a@x.test", "c@x.test"]
    assert doc["problems"] == [
        f"{events}:5: not JSON (Expecting property name enclosed in double quotes, column 2)",
        f"{events}:8: field 'bounce.bouncedRecipients': expected a list, got a string",
    ]
    assert doc["orphaned"] == [f"{events}:6: sendgrid delivery for zed@x.test"]

    suppressed = {
        s["email"]: s
        for s in json.loads(ok(migctl(tmp_path, "suppress", "list", "--json")).stdout)[
            "suppressions"
        ]
    }
    assert suppressed["a@x.test"]["reason"] == "hard bounce: 550 5.1.1 user unknown"
    assert suppressed["a@x.test"]["source"] == "feedback:ses"
    assert suppressed["c@x.test"]["reason"] == "complaint: abuse"
    assert set(suppressed) == {"a@x.test", "c@x.test"}  # one soft bounce suppresses nothing
    audit = query(db, "SELECT action, detail FROM audit WHERE id > ? ORDER BY id", (before,))
    assert [r["action"] for r in audit] == ["suppression.added", "suppression.added"]
    assert json.loads(audit[0]["detail"])["notice"] == a["key"]

    stored = {
        r["email"]: (r["notice_key"], r["outcome"], r["bounce_type"])
        for r in query(db, "SELECT * FROM delivery_events")
    }
    assert stored == {
        "a@x.test": (a["key"], "bounced", "hard"),
        "b@x.test": (b["key"], "delivered", None),
        "c@x.test": (c["key"], "complained", None),
        "d@x.test": (d["key"], "delivered", None),
        "e@x.test": (e["key"], "bounced", "soft"),
        "zed@x.test": (None, "delivered", None),
    }

    # The same file again changes nothing: every event is a duplicate.
    store_before = dump(db)
    again = import_json(tmp_path, events)
    assert (again["recorded"], again["duplicates"], again["suppressed"]) == (0, 7, [])
    assert dump(db) == store_before

    status = json.loads(ok(migctl(tmp_path, "--now", "2016-04-21", "status", "--json")).stdout)
    (mail,) = status["migrations"]
    assert mail["delivery"] == {
        "sent": 7,
        "delivered": 2,
        "deferred": 0,
        "bounced": 2,
        "bounced_hard": 1,
        "bounced_soft": 1,
        "complained": 1,
        "rejected": 0,
        "rates": {"delivered": 0.2857, "bounced": 0.2857, "complained": 0.1429, "rejected": 0.0},
    }
    assert status["delivery_orphans"] == 1
    listed = json.loads(ok(migctl(tmp_path, "outbox", "list", "--json")).stdout)["rows"]
    delivery = {r["email"]: r["delivery"] for r in listed}
    assert delivery["a@x.test"]["outcome"] == "bounced"
    assert delivery["a@x.test"]["detail"] == "550 5.1.1 user unknown"
    assert delivery["e@x.test"]["bounce_type"] == "soft"
    assert delivery["f@x.test"] is None
    assert (
        'delivery="complained 2016-04-20T10:05"'
        in ok(migctl(tmp_path, "outbox", "list", "--email", "c@x.test")).stdout
    )
    shown = json.loads(ok(migctl(tmp_path, "admins", "show", "c@x.test", "--json")).stdout)
    assert shown["suppressed"]["reason"] == "complaint: abuse"
    assert [n["delivery"]["outcome"] for n in shown["notices"]] == ["complained"]

    # The next notices skip the suppressed addresses, as for any suppression.
    ok(migctl(tmp_path, "--now", "2016-05-04", "notify"))
    later = query(db, "SELECT * FROM outbox WHERE created_at > ?", (a["created_at"],))
    by_email = {r["email"]: r for r in later}
    assert by_email["a@x.test"]["state"] == by_email["c@x.test"]["state"] == "suppressed"
    assert by_email["b@x.test"]["state"] == by_email["e@x.test"]["state"] == "sent"
    written = {p.name for p in (tmp_path / "outbox").iterdir()}
    assert eml_filename(by_email["b@x.test"]["key"]) in written
    assert eml_filename(by_email["a@x.test"]["key"]) not in written


def test_soft_bounces_suppress_only_at_the_limit_within_the_window(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    (tmp_path / "migctl.toml").write_text(
        (tmp_path / "migctl.toml").read_text()
        + '\n[feedback]\nsoft_bounce_limit = 3\nsoft_bounce_window = "7d"\n'
    )
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    e = sent_notices(db)["e@x.test"]
    mail = ses_mail("e@x.test", notice_key=e["key"])

    def soft(day: int) -> dict[str, Any]:
        return sns(
            ses_bounce(
                mail,
                ["e@x.test"],
                bounce_type="Transient",
                feedback_id=f"soft-{day}",
                timestamp=f"2016-04-{day:02d}T09:00:00.000Z",
                diagnostic=f"smtp; 452 4.2.2 mailbox full (day {day})",
            )
        )

    def suppressed() -> dict[str, str]:
        return {r["email"]: r["reason"] for r in query(db, "SELECT * FROM suppressions")}

    # Days 20 and 28 are 8 days apart: never two within 7 days.
    assert (
        import_json(tmp_path, write_lines(tmp_path / "1.jsonl", [soft(20), soft(28)]))["suppressed"]
        == []
    )
    # 28 and 29: two within 7 days, one short of the limit.
    import_json(tmp_path, write_lines(tmp_path / "2.jsonl", [soft(29)]))
    assert suppressed() == {}
    # An undetermined bounce is soft too; 28, 29 and 30 make three within 7 days.
    undetermined = soft(30)
    inner = json.loads(undetermined["Message"])
    inner["bounce"]["bounceType"] = "Undetermined"
    undetermined["Message"] = json.dumps(inner)
    doc = import_json(tmp_path, write_lines(tmp_path / "3.jsonl", [undetermined]))
    assert doc["suppressed"] == ["e@x.test"]
    assert suppressed() == {
        "e@x.test": "3 soft bounces within 7d (last: 452 4.2.2 mailbox full (day 30))"
    }


def test_an_event_counts_only_for_the_notice_sent_to_its_recipient(tmp_path: Path) -> None:
    """Every notice goes to one address: an event about another address under a notice's id
    (a second recipient in an SES bounce, a mistagged SendGrid event) is an orphan, marks no
    notice and suppresses nobody."""
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    rows = sent_notices(db)
    # An identity notification matched by SES's MessageId of a@'s notice, bouncing a@ and b@.
    event = ses_bounce(
        ses_mail("a@x.test", message_id=rows["a@x.test"]["provider_message_id"]),
        ["a@x.test", "B@X.test"],
        notification=True,
    )
    mistagged = sendgrid(
        "bounce", "c@x.test", key=rows["d@x.test"]["key"], sg_event_id="ev-c", type="bounce"
    )
    by_message_id = ses_complaint(
        ses_mail("e@x.test", message_id="x", header_message_id=rows["f@x.test"]["message_id"]),
        "e@x.test",
    )
    doc = import_json(
        tmp_path, write_lines(tmp_path / "e.json", [event, [mistagged], by_message_id])
    )
    assert (doc["received"], doc["recorded"], doc["orphans"]) == (4, 1, 3)
    assert doc["suppressed"] == ["a@x.test"]
    assert [r["email"] for r in query(db, "SELECT email FROM suppressions")] == ["a@x.test"]
    outcomes = {
        r["email"]: r["delivery"]
        for r in json.loads(
            ok(migctl(tmp_path, "--now", "2016-04-21", "outbox", "list", "--json")).stdout
        )["rows"]
    }
    assert (outcomes["a@x.test"]["outcome"], outcomes["a@x.test"]["bounce_type"]) == (
        "bounced",
        "hard",
    )
    assert [outcomes[f"{x}@x.test"] for x in "bcdef"] == [None] * 5  # nothing marked the others
    text = ok(migctl(tmp_path, "--now", "2016-04-21", "status")).stdout
    assert 'migration=mail sent=7 delivered="0 (0.0%)" bounced="1 (14.3%)" hard=1 soft=0' in text


def test_hostile_payloads_are_counted_never_a_traceback(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    a = sent_notices(db)["a@x.test"]
    deep_inside = sns(ses_bounce(ses_mail("a@x.test", notice_key=a["key"]), ["a@x.test"]))
    deep_inside["Message"] = "[" * 100_000 + "]" * 100_000
    huge = sendgrid("bounce", "x" * 5_000_000 + "@x.test", key=a["key"])
    bad_time = sendgrid("delivered", "a@x.test", key=a["key"], timestamp="yesterday")
    bad_tag = ses_bounce(ses_mail("a@x.test", notice_key=a["key"]), ["a@x.test"])
    bad_tag["mail"]["tags"]["migctl-notice"] = [{"$ne": 1}]
    lines: list[Any] = [
        "[" * 200_000,  # deeper than any JSON parser recurses
        deep_inside,
        huge,
        bad_time,
        bad_tag,
        None,
        [1, "two", {"event": 3}],
        "9" * 10_000,  # an integer longer than Python converts
        {"Type": "Notification", "Message": 12},
        {"eventType": "Bounce"},
        sendgrid("delivered", "a@x.test", key=a["key"], sg_event_id="fine"),
    ]
    path = write_lines(tmp_path / "hostile.jsonl", lines)
    r = ok(migctl(tmp_path, "--now", "2016-04-21", "feedback", "import", str(path), "--json"))
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert (doc["received"], doc["recorded"], doc["malformed"]) == (13, 1, 12)
    problems = "\n".join(doc["problems"])
    for expected in (
        f"{path}:1: nested too deeply",
        f"{path}:2: nested too deeply",
        f"{path}:3: field 'email': longer than 320 characters",
        f"{path}:4: field 'timestamp': expected a Unix time in seconds",
        f"{path}:5: field 'mail.tags.migctl-notice': expected a list with one tag value",
        f"{path}:6: expected an event or an SNS envelope, got nothing",
        f"{path}:7[1]: expected an event or an SNS envelope, got a number",
        f"{path}:7[3]: field 'event': expected a string, got a number",
        f"{path}:8: not JSON (Exceeds the limit",
        f"{path}:9: field 'Message': expected a string, got a number",
        f"{path}:10: field 'mail': expected a JSON object, got nothing",
    ):
        assert expected in problems, (expected, problems)
    assert max(len(p) for p in doc["problems"]) < 300  # nothing of the payload echoed
    assert query(db, "SELECT count(*) AS n FROM delivery_events")[0]["n"] == 1


def test_a_file_that_is_not_json_changes_nothing(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    before = dump(db)
    (tmp_path / "events.csv").write_text("email,event\na@x.test,bounce\n")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "latin1.json").write_bytes(b'{"email": "caf\xe9"}')
    (tmp_path / "folder").mkdir()
    for name, message in (
        ("events.csv", "events.csv:1: not JSON (Expecting value, column 1)"),
        ("empty.json", "empty.json: the file is empty"),
        ("latin1.json", "latin1.json: not UTF-8 text (byte 14)"),
        ("missing.json", "missing.json: cannot read the file (No such file or directory)"),
        ("folder", "folder: cannot read the file (Is a directory)"),
    ):
        r = migctl(tmp_path, "feedback", "import", str(tmp_path / name))
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
    assert dump(db) == before


def test_import_needs_an_existing_store(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text("[]")
    (tmp_path / "migctl.toml").write_text('environment = "development"\n')
    r = migctl(tmp_path, "feedback", "import", str(tmp_path / "e.json"))
    assert r.returncode == 1 and "no store" in r.stderr
    assert not (tmp_path / "migctl.db").exists()


def test_human_output_lists_counts_suppressions_and_orphans(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    a = sent_notices(db)["a@x.test"]
    path = write_lines(
        tmp_path / "sg.json",
        [
            [
                sendgrid("spamreport", "a@x.test", key=a["key"], sg_event_id="s1"),
                sendgrid("dropped", "q@x.test", sg_event_id="s2", reason="Bounced Address"),
                {"event": "bounce"},
            ]
        ],
    )
    r = ok(migctl(tmp_path, "--now", "2016-04-21", "feedback", "import", str(path)))
    assert r.stdout.splitlines() == [
        "events: 3 received, 1 recorded, 0 duplicates, 1 orphans, 0 ignored, 1 malformed",
        "suppressed a@x.test",
        f"orphan (no notice in this store): {path}[2]: sendgrid rejection for q@x.test",
    ]
    assert r.stderr == f"warning: {path}[3]: field 'timestamp': expected a Unix time in seconds\n"


def test_the_demo_s_feedback_step_suppresses_the_bounced_address(
    tmp_path: Path, repo_root: Path
) -> None:
    """`make demo` step 5, on the demo's own set-up: the shipped SNS notification matches the
    announcement the demo's notify sent to bill@initech.test (by its SES tag)."""
    makefile = (repo_root / "Makefile").read_text()
    step = "$(MIGCTL) --now 2016-04-21 feedback import examples/feedback/ses-bounce.json"
    assert step in makefile
    (tmp_path / "migctl.toml").write_text(
        'templates_dir = "email_templates"\n' + (repo_root / "examples" / "migctl.toml").read_text()
    )
    shutil.copytree(repo_root / "email_templates", tmp_path / "email_templates")
    shutil.copytree(
        repo_root / "examples" / "email-delivery-changes",
        tmp_path / "email_templates" / "email-delivery-changes",
    )
    ok(
        migctl(
            tmp_path, "--now", "2016-04-20", "sync", "--file", str(repo_root / "migrations.yaml")
        )
    )
    ok(migctl(tmp_path, "accounts", "import", str(repo_root / "examples" / "accounts.csv")))
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    sample = repo_root / "examples" / "feedback" / "ses-bounce.json"
    r = ok(migctl(tmp_path, "--now", "2016-04-21", "feedback", "import", str(sample)))
    assert r.stdout.splitlines() == [
        "events: 1 received, 1 recorded, 0 duplicates, 0 orphans, 0 ignored, 0 malformed",
        "suppressed bill@initech.test",
    ]
    listed = ok(migctl(tmp_path, "suppress", "list")).stdout
    assert "email=bill@initech.test" in listed and "source=feedback:ses" in listed
    status = json.loads(ok(migctl(tmp_path, "--now", "2016-04-21", "status", "--json")).stdout)
    assert status["unreachable_accounts"] == ["initech"]  # bill is its only administrator


def test_delays_rejections_and_provider_message_ids(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    rows = sent_notices(db)
    a, b, d = rows["a@x.test"], rows["b@x.test"], rows["d@x.test"]
    events = [
        sns(ses_delay(ses_mail("a@x.test", notice_key=a["key"]), "a@x.test")),
        ses_reject(ses_mail("b@x.test", message_id="x", header_message_id=b["message_id"])),
        # No custom arg: matched by sg_message_id, the X-Message-Id stored at the send plus
        # SendGrid's `.filter…` suffix.
        sendgrid(
            "bounce",
            "d@x.test",
            sg_message_id=d["provider_message_id"] + ".filterdrecv-5bd8.1.5F5FC76C.0",
            type="bounce",
            status="5.0.0",
            reason="550 unknown recipient",
        ),
    ]
    doc = import_json(tmp_path, write_lines(tmp_path / "e.jsonl", events))
    assert (doc["recorded"], doc["orphans"], doc["suppressed"]) == (3, 0, ["d@x.test"])
    stored = {
        r["email"]: (r["notice_key"], r["outcome"], r["bounce_type"], r["detail"])
        for r in query(db, "SELECT * FROM delivery_events")
    }
    assert stored == {
        "a@x.test": (
            a["key"],
            "deferred",
            None,
            "421 4.4.1 Unable to connect to remote host",
        ),
        "b@x.test": (b["key"], "rejected", None, "Bad content"),
        "d@x.test": (d["key"], "bounced", "hard", "5.0.0 550 unknown recipient"),
    }
    reasons = {r["email"]: r["reason"] for r in query(db, "SELECT * FROM suppressions")}
    assert reasons == {"d@x.test": "hard bounce: 5.0.0 550 unknown recipient"}


def test_status_under_now_counts_the_sends_events_and_suppressions_of_that_instant(
    tmp_path: Path,
) -> None:
    """Sent on 04-20, a bounce imported on 04-21: asked about the 20th's noon, status counts the
    sends but neither the bounce nor the suppression; about the 19th, nothing sent at all."""
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    rows = sent_notices(db)
    event = ses_bounce(ses_mail("a@x.test", notice_key=rows["a@x.test"]["key"]), ["a@x.test"])
    doc = import_json(tmp_path, write_lines(tmp_path / "e.json", [sns(event)]))
    assert doc["suppressed"] == ["a@x.test"]
    ok(migctl(tmp_path, "--now", "2016-04-21", "suppress", "add", "shared@x.test"))

    def status(now: str) -> tuple[dict[str, Any], int, list[str]]:
        d = json.loads(ok(migctl(tmp_path, "--now", now, "status", "--json")).stdout)
        (m,) = [x for x in d["migrations"] if x["id"] == "mail"]
        delivery = {k: m["delivery"][k] for k in ("sent", "bounced", "bounced_hard")}
        return delivery, d["accounts_all_admins_suppressed"], d["unreachable_accounts"]

    assert status("2016-04-22") == ({"sent": 7, "bounced": 1, "bounced_hard": 1}, 1, ["ent-1"])
    assert status("2016-04-20T12:00:00") == ({"sent": 7, "bounced": 0, "bounced_hard": 0}, 0, [])
    assert status("2016-04-19") == ({"sent": 0, "bounced": 0, "bounced_hard": 0}, 0, [])
    # Asking about the past left the cached figures of today as they were.
    assert status("2016-04-22")[1:] == (1, ["ent-1"])


def test_a_sendgrid_drop_for_an_address_it_knows_is_bad_suppresses_it(tmp_path: Path) -> None:
    """SendGrid drops mail to addresses on its own bounce and spam-report lists (and invalid
    ones): rejected, and suppressed. A drop for the content or an unsubscribe is rejected only."""
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    rows = sent_notices(db)
    reasons = {
        "a": "Bounced Address",
        "b": "Spam Reporting Address",
        "c": "Invalid",
        "d": "Spam Content",
        "e": "Unsubscribed Address",
    }
    batch = [
        sendgrid(
            "dropped",
            f"{x}@x.test",
            key=rows[f"{x}@x.test"]["key"],
            sg_event_id=f"drop-{x}",
            reason=reason,
        )
        for x, reason in reasons.items()
    ]
    doc = import_json(tmp_path, write_lines(tmp_path / "drops.json", [batch]))
    assert (doc["recorded"], doc["orphans"]) == (5, 0)
    assert doc["suppressed"] == ["a@x.test", "b@x.test", "c@x.test"]
    listed = {r["email"]: r["reason"] for r in query(db, "SELECT * FROM suppressions")}
    assert listed == {
        "a@x.test": "rejection: Bounced Address",
        "b@x.test": "rejection: Spam Reporting Address",
        "c@x.test": "rejection: Invalid",
    }
    status = json.loads(ok(migctl(tmp_path, "--now", "2016-04-21", "status", "--json")).stdout)
    (mail,) = [m for m in status["migrations"] if m["id"] == "mail"]
    assert (mail["delivery"]["rejected"], mail["delivery"]["bounced"]) == (5, 0)
