"""`admins show EMAIL` and `outbox show ID`: what one administrator has and was told."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

from tests.helpers_enforce import (
    MAIL,
    PER_PLAN,
    migctl,
    ok,
    query,
    setup_store,
)


def test_admins_show_lists_accounts_per_migration_notices_and_suppression(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, PER_PLAN, opt_in=[("mail", "ent-1", "2016-04-10")])
    ok(migctl(tmp_path, "--now", "2016-04-20", "notify"))
    ok(migctl(tmp_path, "suppress", "add", "SHARED@x.test", "--reason", "bounced"))
    doc = json.loads(ok(migctl(tmp_path, "admins", "show", "Shared@X.test", "--json")).stdout)
    assert doc["email"] == "shared@x.test"
    assert doc["suppressed"]["reason"] == "bounced"
    by_id = {a["id"]: a["migrations"] for a in doc["accounts"]}
    assert set(by_id) == {"ent-1", "free-1"}
    assert {"migration": "mail", "state": "opted_in", "deadline": "2016-05-11"} in by_id["ent-1"]
    assert {"migration": "perplan", "state": "pending", "deadline": "2016-06-01"} in by_id["ent-1"]
    assert {"migration": "perplan", "state": "pending", "deadline": "2016-05-01"} in by_id["free-1"]
    stored = query(db, "SELECT id, kind, state FROM outbox WHERE email = 'shared@x.test'")
    assert stored and sorted(n["id"] for n in doc["notices"]) == sorted(r["id"] for r in stored)
    assert all(n["why"] for n in doc["notices"])

    text = ok(migctl(tmp_path, "admins", "show", "shared@x.test")).stdout
    assert "suppressed: yes" in text and "bounced" in text
    assert "account=free-1" in text and "migration=perplan" in text


def test_admins_show_of_an_unknown_address_is_an_error(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    r = migctl(tmp_path, "admins", "show", "nobody@x.test")
    assert r.returncode == 1 and "no administrator 'nobody@x.test'" in r.stderr


def test_outbox_show_prints_the_notice_as_the_file_provider_wrote_it(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    ok(migctl(tmp_path, "--now", "2016-05-04", "notify"))
    (row,) = query(db, "SELECT id, key FROM outbox WHERE email = 'shared@x.test'")
    (eml,) = [p for p in (tmp_path / "outbox").iterdir() if "shared" in p.name]
    sent = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    shown = ok(migctl(tmp_path, "--now", "2016-05-04", "outbox", "show", str(row["id"]))).stdout
    head, _, body = shown.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    for name in ("From", "To", "Subject", "Message-ID", "X-Migctl-Notice", "X-Migctl-Kind"):
        assert headers[name] == str(sent[name]), name
    text_part = sent.get_body(preferencelist=("plain",))
    assert text_part is not None
    assert body.rstrip("\n") == text_part.get_content().replace("\r\n", "\n").rstrip("\n")
    assert "7 days" in body or "in 7 day" in body, body  # days left as of the run's --now

    doc = json.loads(
        ok(
            migctl(tmp_path, "--now", "2016-05-04", "outbox", "show", str(row["id"]), "--json")
        ).stdout
    )
    assert doc["key"] == row["key"] and doc["text"].rstrip("\n") == body.rstrip("\n")
    assert migctl(tmp_path, "outbox", "show", "99999").returncode == 1
