"""`migctl run`, the cron entry point: its one-line summary, exit codes and dry runs."""

from __future__ import annotations

import json
from pathlib import Path

from helpers_enforce import (
    MAIL,
    TBD,
    fingerprint,
    json_out,
    migctl,
    ok,
    query,
    read_log,
    setup_store,
    write_yaml,
)

SUMMARY_KEYS = {"now", "dry_run", "notices", "enforced"}
NOTICE_KEYS = {"planned", "sent", "failed", "in_doubt", "suppressed", "by_kind"}


def one_line_summary(stdout: str) -> dict:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    doc = json.loads(lines[0])
    assert set(doc) >= SUMMARY_KEYS
    assert set(doc["notices"]) >= NOTICE_KEYS
    return doc


def test_summary_is_one_json_line_with_the_spec_keys(tmp_path: Path) -> None:
    setup_store(tmp_path, TBD, MAIL)
    r = ok(migctl(tmp_path, "--now", "2016-05-11T08:00:00", "run", "--json"))
    doc = one_line_summary(r.stdout)
    assert doc["now"] == "2016-05-11T12:00:00Z"  # 08:00 in New York, whatever the host
    assert doc["dry_run"] is False
    assert doc["enforced"] == {"mail": 6}
    n = doc["notices"]
    # mail: 7 administrators of the 6 enforced accounts; someday: 7 admins of 6 pending accounts.
    assert n["by_kind"] == {"announcement": 7, "enforced": 7}
    assert n["planned"] == n["sent"] == 14
    assert (n["failed"], n["in_doubt"], n["suppressed"]) == (0, 0, 0)
    assert r.stderr == ""

    again = one_line_summary(
        ok(migctl(tmp_path, "--now", "2016-05-11T08:00:00", "run", "--json")).stdout
    )
    assert again["enforced"] == {} and again["notices"]["planned"] == 0


def test_plain_output_without_a_terminal(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    out = ok(migctl(tmp_path, "--now", "2016-05-11", "run")).stdout
    assert "\x1b[" not in out  # no colour, no animation for cron
    assert "enforced: mail 6 account(s)" in out
    assert "notices: planned 7 (enforced 7), sent 7, failed 0, in doubt 0, suppressed 0" in out


def test_run_syncs_only_when_migrations_yaml_changed(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL)
    first = one_line_summary(ok(migctl(tmp_path, "--now", "2016-04-10", "run", "--json")).stdout)
    assert first["synced"] is None
    write_yaml(tmp_path, MAIL.replace("title: Mail delivery change", "title: Mail delivery v2"))
    second = one_line_summary(ok(migctl(tmp_path, "--now", "2016-04-11", "run", "--json")).stdout)
    assert second["synced"] is not None
    assert "mail" in json.dumps(second["synced"])
    third = one_line_summary(ok(migctl(tmp_path, "--now", "2016-04-12", "run", "--json")).stdout)
    assert third["synced"] is None


def test_bad_yaml_exits_1_and_leaves_the_store_unchanged(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    (tmp_path / "migrations.yaml").write_text(
        "defaults:\n  timezone: America/New_York\nmigrations:\n  - id: mail\n    severity: [oops\n"
    )
    before = fingerprint(db)
    r = migctl(tmp_path, "--now", "2016-05-11", "run", "--json")
    assert r.returncode == 1, r
    assert "migrations.yaml" in r.stderr
    assert fingerprint(db) == before
    # A definition error (not a syntax error) too, and the mandatory date did not pass for it.
    write_yaml(tmp_path, MAIL.replace("severity: medium", "severity: urgent"))
    r = migctl(tmp_path, "--now", "2016-05-11", "run", "--json")
    assert r.returncode == 1, r
    assert "severity" in r.stderr
    assert fingerprint(db) == before


def test_bad_config_exits_1(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    cfg = tmp_path / "migctl.toml"
    cfg.write_text(cfg.read_text() + "\n[surprise]\nkey = 1\n")
    before = fingerprint(db)
    r = migctl(tmp_path, "--now", "2016-05-11", "run", "--json")
    assert r.returncode == 1, r
    assert "migctl.toml" in r.stderr
    assert fingerprint(db) == before


def test_exit_3_when_a_notice_fails(tmp_path: Path) -> None:
    setup_store(tmp_path, MAIL, provider="null")
    log = tmp_path / "sent.log"
    env = {"ENFTEST_LOG": str(log), "ENFTEST_FAIL": "c@x.test"}
    r = migctl(tmp_path, "--now", "2016-05-11", "run", "--json", env=env, wrapper=True)
    assert r.returncode == 3, r
    doc = one_line_summary(r.stdout)
    assert doc["notices"]["failed"] == 1 and doc["notices"]["sent"] == 6
    assert len(read_log(log)) == 6
    # The failure is settled (address suppressed): the next run is clean.
    r = migctl(tmp_path, "--now", "2016-05-12", "run", "--json", env=env, wrapper=True)
    assert r.returncode == 0, r


def test_exit_3_while_a_notice_is_in_doubt_until_resolved(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL, provider="null")
    log = tmp_path / "sent.log"
    env = {"ENFTEST_LOG": str(log)}
    ok(migctl(tmp_path, "--now", "2016-04-20", "run", "--json", env=env, wrapper=True))
    # Simulate a run killed between claiming two rows and recording their outcome.
    conn = __import__("sqlite3").connect(str(db))
    with conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM outbox WHERE kind = 'announcement' ORDER BY id LIMIT 2"
            )
        ]
        conn.execute(f"UPDATE outbox SET state = 'sending' WHERE id IN ({ids[0]}, {ids[1]})")
    conn.close()
    r = migctl(tmp_path, "--now", "2016-04-20", "run", "--json", env=env, wrapper=True)
    assert r.returncode == 3, r
    assert one_line_summary(r.stdout)["notices"]["in_doubt"] == 2
    listed = json_out(ok(migctl(tmp_path, "outbox", "list", "--state", "in_doubt", "--json")))
    assert sorted(row["id"] for row in listed["rows"]) == sorted(ids)
    assert listed["counts"]["in_doubt"] == 2 and listed["counts"]["sending"] == 0
    # In doubt is reported, never resent on its own.
    before = len(read_log(log))
    r = migctl(tmp_path, "--now", "2016-04-21", "run", "--json", env=env, wrapper=True)
    assert r.returncode == 3
    assert len(read_log(log)) == before

    ok(migctl(tmp_path, "outbox", "resolve", str(ids[0]), "--sent"))
    ok(migctl(tmp_path, "outbox", "resolve", str(ids[1]), "--not-sent"))
    r = migctl(tmp_path, "--now", "2016-04-21", "run", "--json", env=env, wrapper=True)
    assert r.returncode == 0, r
    assert one_line_summary(r.stdout)["notices"]["sent"] == 1  # the --not-sent one, once
    (key,) = [row["key"] for row in query(db, "SELECT key FROM outbox WHERE id = ?", (ids[1],))]
    assert read_log(log).count(key) == 2  # the original (unknown to us) and the resend
    assert {r["state"] for r in query(db, "SELECT state FROM outbox")} == {"sent"}
    r = migctl(tmp_path, "outbox", "resolve", str(ids[0]), "--sent")
    assert r.returncode == 1 and "not in_doubt" in r.stderr


def test_run_dry_run_writes_nothing_and_predicts_the_real_run(tmp_path: Path) -> None:
    db = setup_store(tmp_path, TBD, MAIL)
    write_yaml(tmp_path, TBD, MAIL.replace("Mail delivery change", "Mail delivery (renamed)"))
    before = fingerprint(db)
    r = ok(migctl(tmp_path, "--now", "2016-05-11", "run", "--dry-run", "--json"))
    dry = one_line_summary(r.stdout)
    assert fingerprint(db) == before
    assert dry["dry_run"] is True
    assert dry["synced"] is not None  # would sync the changed file
    assert dry["enforced"] == {"mail": 6}
    assert dry["notices"]["sent"] == 0
    assert not (tmp_path / "outbox").exists()  # the file provider wrote nothing

    real = one_line_summary(ok(migctl(tmp_path, "--now", "2016-05-11", "run", "--json")).stdout)
    assert real["enforced"] == dry["enforced"]
    assert real["notices"]["planned"] == dry["notices"]["planned"] == 14
    assert real["notices"]["by_kind"] == dry["notices"]["by_kind"]


def test_a_broken_template_stops_the_run_before_enforcement(tmp_path: Path) -> None:
    db = setup_store(tmp_path, MAIL)
    (tmp_path / "templates" / "enforced.txt").write_text(
        '{% extends "layout.txt" %}{% block intro %}{% if emergency %}unclosed{% endblock %}\n'
    )
    before = fingerprint(db)
    r = migctl(tmp_path, "--now", "2016-05-11", "run", "--json")
    assert r.returncode == 1, r
    assert "enforced.txt" in "".join(r.stderr.split())  # Rich wraps long paths
    assert fingerprint(db) == before  # nobody switched with their notice stuck


def test_a_development_provider_in_production_stops_the_run_before_enforcement(
    tmp_path: Path,
) -> None:
    db = setup_store(tmp_path, MAIL)
    cfg = tmp_path / "migctl.toml"
    cfg.write_text(cfg.read_text().replace('"development"', '"production"'))
    before = fingerprint(db)
    r = migctl(tmp_path, "--now", "2016-05-11", "run", "--json")
    assert r.returncode == 1, r
    assert "production" in r.stderr
    assert json.loads(r.stdout)["error"]
    assert fingerprint(db) == before
