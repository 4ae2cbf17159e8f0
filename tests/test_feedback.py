"""`feedback import` and `record_batch`: delivery events matched to notices, suppression, rates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrate_cli.delivery.file import eml_filename
from tests.feedback_events import (
    sendgrid,
    ses_bounce,
    ses_complaint,
    ses_delivery,
    ses_mail,
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

    # The next notices skip the suppressed addresses, as for any suppression.
    ok(migctl(tmp_path, "--now", "2016-05-04", "notify"))
    later = query(db, "SELECT * FROM outbox WHERE created_at > ?", (a["created_at"],))
    by_email = {r["email"]: r for r in later}
    assert by_email["a@x.test"]["state"] == by_email["c@x.test"]["state"] == "suppressed"
    assert by_email["b@x.test"]["state"] == by_email["e@x.test"]["state"] == "sent"
    written = {p.name for p in (tmp_path / "outbox").iterdir()}
    assert eml_filename(by_email["b@x.test"]["key"]) in written
    assert eml_filename(by_email["a@x.test"]["key"]) not in written
