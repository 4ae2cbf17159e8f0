"""The switch reaches the platform: signed, ordered, at-least-once events, through the CLI."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from migrate_cli.platform.signature import sign
from tests.fakes.platform_server import SECRET, PlatformServer, documented_receiver, platform_server
from tests.helpers_enforce import (
    HOTFIX,
    MAIL,
    base_env,
    command,
    in_process,
    json_out,
    migctl,
    ok,
    write_config,
    write_yaml,
)

PLATFORM_TOML = '\n[platform]\nbatch_size = {batch}\nretry_for = "{retry_for}"\n'


def accounts_csv(n: int, *, admins: int = 10, late: int = 0) -> str:
    """n accounts created before every grace start (pending), plus `late` created after the
    mail migration's grace start (auto-enrolled when first seen)."""
    lines = ["id,name,plan,tags,created_at,status,admins"]
    lines += [
        f"acc-{i:05d},Account {i},free,,2015-01-01,active,admin{i % admins}@x.test"
        for i in range(n)
    ]
    lines += [
        f"new-{i:03d},New {i},free,,2016-04-20,active,admin{i % admins}@x.test" for i in range(late)
    ]
    return "\n".join(lines) + "\n"


def operator_folder(folder: Path, *, batch: int = 100, retry_for: str = "72h") -> None:
    write_yaml(folder, MAIL, HOTFIX)
    write_config(folder, extra=PLATFORM_TOML.format(batch=batch, retry_for=retry_for))
    in_process(folder, "--now", "2016-03-01", "sync")


def endpoint_env(server: PlatformServer) -> dict[str, str]:
    return {"MIGCTL_PLATFORM_WEBHOOK": server.url, "MIGCTL_PLATFORM_SECRET": SECRET}


def export(folder: Path, env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    out = ok(migctl(folder, "flags", "export", *args, env=env)).stdout
    return [json.loads(line) for line in out.splitlines()]


def stored_events(folder: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(folder / "migctl.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "SELECT id_prefix || '-' || seq AS id, * FROM events ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def assert_server_equals_export(server: PlatformServer, rows: list[dict[str, Any]]) -> None:
    """Every exported account with an event is in the server's view with the same state and
    sequence; one without (sequence 0) is pending and unknown to the server."""
    assert rows
    ours = {(r["migration"], r["account"]): (r["state"], r["sequence"]) for r in rows}
    for key, (state, sequence) in ours.items():
        if sequence == 0:
            assert state == "pending", key
            assert key not in server.flags, key
        else:
            assert server.flags.get(key) == (state, sequence), key
    assert set(server.flags) <= set(ours)


def test_every_change_reaches_the_platform_as_recorded(tmp_path: Path) -> None:
    operator_folder(tmp_path)
    (tmp_path / "accounts.csv").write_text(accounts_csv(2000, late=3))
    in_process(tmp_path, "--now", "2016-03-01", "accounts", "import", "accounts.csv")
    with platform_server() as server:
        env = endpoint_env(server)
        in_process(
            tmp_path,
            "--now",
            "2016-04-10",
            "opt-in",
            "mail",
            "--account",
            "acc-00001",
            "--account",
            "acc-00002",
            "--account",
            "acc-00003",
            "--reason",
            "asked",
        )
        in_process(tmp_path, "--now", "2016-04-11", "opt-out", "mail", "--account", "acc-00002")
        # One account gets its own date (rule 3b): an event of its own, its state unchanged.
        extend = ["extend", "mail", "--account", "acc-00004", "--until", "2016-06-01"]
        in_process(tmp_path, "--now", "2016-04-12", *extend, "--reason", "asked for June")
        # The dated enforcement of 2,000 accounts, an immediate one, and late accounts.
        run = json_out(ok(migctl(tmp_path, "--now", "2016-05-12", "run", "--json", env=env)))
        assert run["enforced"] == {"mail": 1997}
        assert run["platform"]["pending"] == 0 and run["platform"]["delivered"] == 2005
        ok(
            migctl(
                tmp_path,
                "--now",
                "2016-05-13",
                "enforce",
                "hotfix",
                "--immediately",
                "--reason",
                "security fix",
                env=env,
            )
        )
        (tmp_path / "late.csv").write_text(
            "id,name,plan,tags,created_at,status,admins\n"
            "late-1,Late,free,,2015-06-01,active,late@x.test\n"
        )
        ok(migctl(tmp_path, "--now", "2016-05-14", "accounts", "import", "late.csv", env=env))
        # A new customer added by hand is enrolled from its creation (rule 2).
        ok(
            migctl(
                tmp_path,
                "--now",
                "2016-05-14",
                "accounts",
                "add",
                "new-by-hand",
                "--plan",
                "free",
                "--admin",
                "n@x.test",
                env=env,
            )
        )
        run = json_out(ok(migctl(tmp_path, "--now", "2016-05-14", "run", "--json", env=env)))
        assert run["enforced"]["mail"] == 1
        # hotfix was enforced immediately, so the two accounts that joined since are late
        # accounts of it and are switched by this run too (rule 3)
        assert run["enforced"]["hotfix"] == 2
        # hotfix's 2003 accounts, the late account enforced in mail, the new one auto-enrolled
        # in mail, and both enforced late in hotfix
        assert run["platform"]["delivered"] == 2003 + 1 + 1 + 2
        assert server.flags[("mail", "new-by-hand")] == ("auto_enrolled", 1)
        assert server.flags[("hotfix", "acc-00001")] == ("enforced", 1)
        assert server.flags[("mail", "late-1")] == ("enforced", 1)
        assert server.refused == 0
        assert_server_equals_export(server, export(tmp_path, env))
        assert server.flags[("mail", "acc-00004")] == ("pending", 1)
        extended = next(e for e in server.events if e["account"] == "acc-00004")
        assert extended["previous_state"] == "pending"
        assert extended["reason"] == "extended until 2016-06-01: asked for June"
        # The opted-out account went pending -> opted_in -> pending -> enforced, in order.
        assert server.flags[("mail", "acc-00002")] == ("enforced", 3)
        assert server.flags[("mail", "acc-00001")] == ("opted_in", 1)
        assert server.flags[("mail", "new-000")] == ("auto_enrolled", 1)
        seen = [
            (e["account"], e["sequence"], e["state"])
            for e in server.events
            if e["migration"] == "mail" and e["account"] == "acc-00002"
        ]
        assert seen == [
            ("acc-00002", 1, "opted_in"),
            ("acc-00002", 2, "pending"),
            ("acc-00002", 3, "enforced"),
        ]
        first = next(e for e in server.events if e["account"] == "new-000")
        assert first["previous_state"] is None and first["effective_at"] == "2016-04-20T04:00:00Z"
        assert {e["type"] for e in server.events} == {"enrollment.changed"}
        assert (
            len({e["id"] for e in server.events})
            == len(server.events)
            == len(stored_events(tmp_path))
        )
        # The extended account is switched by the first run on its own date.
        run = json_out(ok(migctl(tmp_path, "--now", "2016-06-01", "run", "--json", env=env)))
        assert run["enforced"] == {"mail": 1}
        assert server.flags[("mail", "acc-00004")] == ("enforced", 2)
        assert_server_equals_export(server, export(tmp_path, env))
        # The receiver's own view (CSV) matches: exit 0; a flipped account: exit 3, listed.
        view = tmp_path / "view.csv"
        view.write_text(
            "migration,account,state\n"
            + "".join(f"{m},{a},{s}\n" for (m, a), (s, _) in server.flags.items())
        )
        ok(migctl(tmp_path, "flags", "check", str(view), env=env))
        view.write_text(
            view.read_text().replace("mail,acc-00001,opted_in", "mail,acc-00001,pending")
        )
        r = ok(migctl(tmp_path, "flags", "check", str(view), "--json", env=env), 3)
        assert json_out(r)["accounts"] == [
            {
                "migration": "mail",
                "account": "acc-00001",
                "migctl": "opted_in",
                "platform": "pending",
            }
        ]


def test_the_documented_receiver_refuses_a_tampered_body_and_a_stale_timestamp() -> None:
    verify = documented_receiver()["verify"]
    body = b'[{"id":"1","state":"enforced"}]'
    now = int(time.time())
    assert verify(SECRET.encode(), sign(SECRET, body, now), body)
    assert not verify(
        SECRET.encode(), sign(SECRET, body, now), body.replace(b"enforced", b"pending")
    )
    assert not verify(SECRET.encode(), sign(SECRET, body, now - 3600), body)
    assert not verify(b"another secret", sign(SECRET, body, now), body)
    assert not verify(SECRET.encode(), "t=abc,v1=00", body)


def test_endpoint_down_nothing_lost_notices_wait_and_a_later_run_delivers(tmp_path: Path) -> None:
    operator_folder(tmp_path, batch=7)
    (tmp_path / "accounts.csv").write_text(accounts_csv(50))
    in_process(tmp_path, "--now", "2016-03-01", "accounts", "import", "accounts.csv")
    with platform_server() as server:
        env = endpoint_env(server)
        server.status = 503
        r = ok(migctl(tmp_path, "--now", "2016-05-12", "run", "--json", env=env), 3)
        doc = json_out(r)
        assert doc["enforced"] == {"mail": 50}
        assert doc["platform"]["pending"] == 50 and doc["platform"]["error"] == "HTTP 503"
        assert doc["notices"]["sent"] == 0  # nobody is told before the platform knows
        assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").iterdir())
        status = json_out(ok(migctl(tmp_path, "--now", "2016-05-12", "status", "--json", env=env)))
        assert status["platform"]["pending"] == 50
        assert status["platform"]["oldest"] == "2016-05-12T04:00:00Z"
        # A run inside the backoff does not knock on the door again.
        before = len(server.requests)
        ok(migctl(tmp_path, "--now", "2016-05-12T00:00:10", "run", env=env), 3)
        assert len(server.requests) == before
        server.status = 200
        doc = json_out(
            ok(migctl(tmp_path, "--now", "2016-05-12T02:00:00", "run", "--json", env=env))
        )
        assert doc["platform"]["pending"] == 0 and doc["notices"]["sent"] > 0
        got = [(e["account"], e["sequence"]) for e in server.events]
        assert got == sorted(got) and len(got) == 50  # in recording order, none lost
        assert_server_equals_export(server, export(tmp_path, env))
        summary = json_out(ok(migctl(tmp_path, "platform", "status", "--json", env=env)))
        assert summary["pending"] == 0 and summary["delivered"] == 50


def test_a_refusing_endpoint_stops_with_exit_1_and_loses_nothing(tmp_path: Path) -> None:
    operator_folder(tmp_path)
    (tmp_path / "accounts.csv").write_text(accounts_csv(5))
    in_process(tmp_path, "--now", "2016-03-01", "accounts", "import", "accounts.csv")
    in_process(tmp_path, "--now", "2016-05-12", "enforce")
    with platform_server() as server:
        wrong = {**endpoint_env(server), "MIGCTL_PLATFORM_SECRET": "not-the-secret-55"}
        r = ok(migctl(tmp_path, "platform", "push", env=wrong), 1)
        assert "HTTP 401" in r.stderr and "Nothing is lost" in r.stderr
        for text in (r.stdout, r.stderr):
            assert server.url not in text and "not-the-secret-55" not in text
        assert server.refused == 1
        r = ok(migctl(tmp_path, "platform", "push", "--json", env=endpoint_env(server)))
        assert json_out(r)["delivered"] == 5
        store_bytes = (tmp_path / "migctl.db").read_bytes()
        assert SECRET.encode() not in store_bytes and server.url.encode() not in store_bytes
        # replay: the receiver lost its data; the same events (ids, sequences) come again.
        ids = [e["id"] for e in server.events]
        server.events.clear()
        server.flags.clear()
        ok(
            migctl(
                tmp_path,
                "--now",
                "2016-05-12",
                "platform",
                "replay",
                "--since",
                "2016-05-01",
                env=endpoint_env(server),
            )
        )
        assert [e["id"] for e in server.events] == ids
    r = migctl(tmp_path, "platform", "push")
    assert r.returncode == 1 and "MIGCTL_PLATFORM_WEBHOOK" in r.stderr


def test_a_store_from_before_events_upgrades_and_exports_its_enrollments(tmp_path: Path) -> None:
    operator_folder(tmp_path)
    (tmp_path / "accounts.csv").write_text(accounts_csv(3))
    in_process(tmp_path, "--now", "2016-03-01", "accounts", "import", "accounts.csv")
    in_process(tmp_path, "--now", "2016-04-10", "opt-in", "mail", "--account", "acc-00001")
    conn = sqlite3.connect(tmp_path / "migctl.db")
    with conn:  # the store as the previous migctl left it
        conn.execute("DROP TABLE events")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm005_events'")
    conn.close()
    out = ok(migctl(tmp_path, "flags", "export", "mail", "--format", "csv")).stdout
    assert out.splitlines() == [
        "migration,account,state,sequence",
        "mail,acc-00000,pending,0",
        "mail,acc-00001,opted_in,0",
        "mail,acc-00002,pending,0",
    ]
    assert stored_events(tmp_path) == []


def test_flags_check_names_the_bad_line(tmp_path: Path) -> None:
    operator_folder(tmp_path)
    (tmp_path / "view.jsonl").write_text(
        '{"migration":"mail","account":"a","state":"pending"}\n{oops\n'
    )
    r = ok(migctl(tmp_path, "flags", "check", "view.jsonl"), 1)
    assert "view.jsonl:2" in r.stderr
    r = ok(migctl(tmp_path, "flags", "export", "--format", "xml"), 2)


def test_sigkill_while_pushing_loses_nothing_and_never_reorders(tmp_path: Path) -> None:
    """10,000 events; 20 runs killed at random points of the push; then one that finishes."""
    operator_folder(tmp_path, batch=50)
    (tmp_path / "accounts.csv").write_text(accounts_csv(6000, admins=5))
    in_process(tmp_path, "--now", "2016-03-01", "accounts", "import", "accounts.csv")
    ids = [f"acc-{i:05d}" for i in range(3000)]
    (tmp_path / "in.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "out.txt").write_text("\n".join(ids[:2000]) + "\n")
    in_process(tmp_path, "--now", "2016-04-10", "opt-in", "mail", "--from-file", "in.txt")
    in_process(tmp_path, "--now", "2016-04-11", "opt-out", "mail", "--from-file", "out.txt")
    in_process(tmp_path, "--now", "2016-05-12", "enforce")
    stored = stored_events(tmp_path)
    assert len(stored) == 10_000
    rng = random.Random(17)
    killed = 0
    with platform_server() as server:
        env = base_env(endpoint_env(server))
        argv = command(tmp_path, "--now", "2016-05-12", "run", "--json")
        for _ in range(20):
            server.arm(rng.randint(1, 9), rng.choice(["before", "after", "answered"]))
            if server.hang_mode == "answered":  # kill right after an answer went out
                server.hang_at, target = None, rng.randint(1, 9)
            proc = subprocess.Popen(
                argv,
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while proc.poll() is None:
                    if server.reached.wait(0.01):
                        break
                    if server.hang_at is None and server.in_epoch() >= target:
                        break
                proc.kill()
                killed += proc.wait(30) == -9
            finally:
                server.release.set()
        server.arm(None)
        ok(
            subprocess.run(
                argv,
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
        )
    received: dict[str, int] = {}
    order: dict[tuple[str, str], list[int]] = {}
    by_id = {r["id"]: r for r in stored}
    for e in server.events:
        received[e["id"]] = received.get(e["id"], 0) + 1
        if received[e["id"]] == 1:
            order.setdefault((e["migration"], e["account"]), []).append(e["sequence"])
    assert set(received) == set(by_id)  # no event lost
    assert all(seqs == sorted(seqs) for seqs in order.values())  # none out of order
    assert [e["id"] for e in server.events if received[e["id"]] == 1] == [
        i for i in (r["id"] for r in stored) if received[i] == 1
    ]
    # Duplicates only of a batch whose answer was lost: the last batch of a killed run, sent
    # again whole as the first batch of the next run.
    duplicated = {i for i, n in received.items() if n > 1}
    resent: set[str] = set()
    for epoch in range(1, server.epoch + 1):
        mine = [r for r in server.requests if r.epoch == epoch]
        after = [r for r in server.requests if r.epoch == epoch + 1]
        if mine and after and set(mine[-1].ids) & set(after[0].ids):
            assert mine[-1].ids == after[0].ids
            resent |= set(mine[-1].ids)
    assert duplicated == resent
    # The trials really killed runs mid-push, some of them with an answer in flight.
    assert killed >= 15 and duplicated and len(received) < sum(received.values())


def test_failing_for_longer_than_retry_for_stops_the_run_and_keeps_the_events(
    tmp_path: Path,
) -> None:
    operator_folder(tmp_path, retry_for="3h")
    (tmp_path / "accounts.csv").write_text(accounts_csv(4))
    in_process(tmp_path, "--now", "2016-03-01", "accounts", "import", "accounts.csv")
    with platform_server() as server:
        env = endpoint_env(server)
        server.status = 429
        ok(migctl(tmp_path, "--now", "2016-05-12T00:00:00", "run", env=env), 3)
        ok(migctl(tmp_path, "--now", "2016-05-12T02:00:00", "run", env=env), 3)
        r = ok(migctl(tmp_path, "--now", "2016-05-12T04:00:00", "run", env=env), 1)
        assert "more than 3h" in r.stderr and "HTTP 429" in r.stderr
        status = json_out(ok(migctl(tmp_path, "platform", "status", "--json", env=env)))
        assert status["pending"] == 4 and status["failing"] == 4
        r = ok(migctl(tmp_path, "--now", "2016-05-12T04:00:00", "status", env=env))
        assert "4 enrollment event(s) not delivered to the platform" in r.stdout
        server.status = 200
        ok(migctl(tmp_path, "--now", "2016-05-12T04:05:00", "platform", "push", env=env))
        assert sorted(a for _, a in server.flags) == [f"acc-{i:05d}" for i in range(4)]


ENTERPRISE_ONLY = """\
  - id: ent
    title: Enterprise change
    severity: medium
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    applies_to: {plans: [enterprise]}
    summary: s
    description: d
"""


def test_an_account_that_joins_an_audience_later_reaches_the_platform_once(
    tmp_path: Path,
) -> None:
    """Created after the grace start on a plan outside the audience, then moved into it (or
    re-opened inside it): auto-enrolled from that change, and the platform hears it once."""
    write_yaml(tmp_path, ENTERPRISE_ONLY)
    write_config(tmp_path)
    in_process(tmp_path, "--now", "2016-03-01", "sync")
    header = "id,name,plan,tags,created_at,status,admins\n"

    def load(rows: str, now: str) -> None:
        (tmp_path / "a.csv").write_text(header + rows)
        in_process(tmp_path, "--now", now, "accounts", "import", str(tmp_path / "a.csv"))

    def ent_events() -> list[tuple[str, str, str, int]]:
        return [
            (r["account_id"], r["state"], r["effective_at"][:10], r["sequence"])
            for r in stored_events(tmp_path)
            if r["migration_id"] == "ent"
        ]

    load(
        "new-1,N,free,,2016-04-20,active,a@x.test\nold-1,O,enterprise,,2016-04-21,closed,b@x.test\n",
        "2016-04-22",
    )
    assert ent_events() == []  # one outside the audience, one closed
    load(
        "new-1,N,enterprise,,2016-04-20,active,a@x.test\nold-1,O,enterprise,,2016-04-21,active,b@x.test\n",
        "2016-04-25",
    )
    assert ent_events() == [
        ("new-1", "auto_enrolled", "2016-04-25", 1),
        ("old-1", "auto_enrolled", "2016-04-25", 1),
    ]
    # The same file again, then a rename: the platform already knows, nothing new is recorded.
    load(
        "new-1,N,enterprise,,2016-04-20,active,a@x.test\nold-1,O,enterprise,,2016-04-21,active,b@x.test\n",
        "2016-04-26",
    )
    load(
        "new-1,Renamed,enterprise,,2016-04-20,active,a@x.test\nold-1,O,enterprise,,2016-04-21,active,b@x.test\n",
        "2016-04-27",
    )
    assert len(ent_events()) == 2
    rows = [
        json.loads(line)
        for line in in_process(tmp_path, "--now", "2016-04-27", "flags", "export").splitlines()
    ]
    assert {(r["account"], r["state"], r["sequence"]) for r in rows if r["migration"] == "ent"} == {
        ("new-1", "auto_enrolled", 1),
        ("old-1", "auto_enrolled", 1),
    }
