"""`migctl feedback pull`: SES events through moto's SNS -> SQS, recorded, then deleted."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers_notices import DB, account, build_store, files_digest, outbox

from migrate_cli.config import load_config
from migrate_cli.feedback import sqs
from migrate_cli.store.db import Store
from tests.fakes.common import free_port
from tests.fakes.ses_events import SENDER, bounce, complaint, delivery, identity_notification
from tests.fakes.ses_server import (
    FakeSes,
    SesReply,
    isolate_aws,
    moto_with_dummy_credentials,
    publish_events,
    queue_depth,
    ses_event_queue,
    sqs_error,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
GRACE = "2016-04-04T12:00:00"  # the announcement is due (helpers_notices.ONE_MIGRATION)
ADMINS = ["gone@customer.example", "angry@customer.example", "happy@customer.example"]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_with_dummy_credentials() as endpoint:
        boto3.client("sesv2", region_name="us-east-1", endpoint_url=endpoint).create_email_identity(
            EmailIdentity=SENDER
        )
        yield endpoint


_queues = iter(range(1_000_000))


def new_queue(moto: str, visibility_timeout: int = 30) -> tuple[str, str]:
    """A fresh topic + queue per test (the moto server is shared by the module)."""
    return ses_event_queue(
        moto, name=f"migctl-events-{next(_queues)}", visibility_timeout=visibility_timeout
    )


def write_ses_config(
    moto: str, queue_url: str | None, *, wait_seconds: int = 0, sqs_endpoint: str | None = None
) -> Path:
    feedback = (
        f'\n[feedback]\nsqs_queue_url = "{queue_url}"\nendpoint_url = "{sqs_endpoint or moto}"\n'
        f"wait_seconds = {wait_seconds}\n"
        if queue_url
        else ""
    )
    path = Path("migctl.toml")
    path.write_text(
        'environment = "development"\n'
        "[email]\n"
        'provider = "ses"\n'
        f'from = "Platform Notices <{SENDER}>"\n'
        "[email.ses]\n"
        f'endpoint_url = "{moto}"\n' + feedback,
        encoding="utf-8",
    )
    return path


def operator_folder(moto: str, queue_url: str | None, **kw: Any) -> None:
    """migrations.yaml, migctl.toml (SES to moto) and a store with three administrators."""
    build_store([account(f"acc-{i}", admin) for i, admin in enumerate(ADMINS)])
    write_ses_config(moto, queue_url, **kw)


def send_announcements(runner: Any) -> dict[str, dict[str, Any]]:
    """`notify` through SES (moto): each administrator's sent row, by address."""
    result = runner("--now", GRACE, "notify", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["email"]: row for row in outbox("state = 'sent'")}
    assert set(rows) == set(ADMINS)
    assert all(row["provider_message_id"] for row in rows.values())
    return rows


def events_for(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A hard bounce, a complaint and a delivery for the three notices, as SES publishes them."""

    def facts(address: str) -> dict[str, Any]:
        row = rows[address]
        return {"message_id": row["provider_message_id"], "to": address, "key": row["key"]}

    return [
        bounce(**facts("gone@customer.example")),
        complaint(**facts("angry@customer.example")),
        delivery(**facts("happy@customer.example")),
    ]


def pull_json(runner: Any, *args: str) -> dict[str, Any]:
    result = runner("--now", "2016-04-04T13:00:00", "feedback", "pull", "--json", *args)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def audit_count() -> int:
    with sqlite3.connect(DB) as conn:
        (n,) = conn.execute("SELECT count(*) FROM audit").fetchone()
    return int(n)


def send_raw(moto: str, url: str, *bodies: str) -> None:
    client = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto)
    for body in bodies:
        client.send_message(QueueUrl=url, MessageBody=body)


# -- the pull, end to end ---------------------------------------------------------------------


def test_pull_records_events_suppresses_and_empties_the_queue(runner: Any, moto: str) -> None:
    topic, url = new_queue(moto)
    operator_folder(moto, url)
    rows = send_announcements(runner)
    publish_events(moto, topic, *events_for(rows))
    assert queue_depth(moto, url) == (3, 0)

    doc = pull_json(runner)

    assert doc["queue_url"] == url and doc["stopped_by"] == "empty"
    assert (doc["messages"], doc["deleted"], doc["not_deleted"]) == (3, 3, 0)
    assert (doc["received"], doc["recorded"], doc["duplicates"]) == (3, 3, 0)
    assert (doc["orphans"], doc["malformed"]) == (0, 0)
    assert sorted(doc["suppressed"]) == ["angry@customer.example", "gone@customer.example"]
    assert queue_depth(moto, url) == (0, 0)
    listed = runner("suppress", "list", "--json")
    assert listed.exit_code == 0, listed.output
    suppressed = {row["email"] for row in json.loads(listed.stdout)["suppressions"]}
    assert suppressed == {"angry@customer.example", "gone@customer.example"}


def test_identity_notifications_match_by_message_id_and_strangers_are_orphans(
    runner: Any, moto: str
) -> None:
    topic, url = new_queue(moto)
    operator_folder(moto, url)
    rows = send_announcements(runner)
    gone = rows["gone@customer.example"]
    publish_events(
        moto,
        topic,
        identity_notification(
            bounce(message_id=gone["provider_message_id"], to=gone["email"], key=None)
        ),
        # Sent by some other tool through the same configuration set: no notice of ours.
        delivery(message_id="0100018c-other-tool", to="someone@else.example", key=None),
    )
    doc = pull_json(runner)
    assert (doc["received"], doc["recorded"], doc["orphans"], doc["malformed"]) == (2, 1, 1, 0)
    assert doc["suppressed"] == ["gone@customer.example"]
    assert "someone@else.example" in doc["orphaned"][0]
    assert queue_depth(moto, url) == (0, 0)


def test_max_seconds_must_not_be_negative(runner: Any, moto: str) -> None:
    _, url = new_queue(moto)
    operator_folder(moto, url)
    result = runner("feedback", "pull", "--max-seconds", "-1")
    assert result.exit_code == 2
    assert "--max-seconds" in result.stderr


def test_plain_output_names_the_counts_and_the_suppressed(runner: Any, moto: str) -> None:
    topic, url = new_queue(moto)
    operator_folder(moto, url)
    publish_events(moto, topic, *events_for(send_announcements(runner))[:1])
    result = runner("--now", "2016-04-04T13:00:00", "feedback", "pull")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "feedback: 1 message(s) from the SQS queue, 1 deleted (stopped: empty)",
        "events: 1 received, 1 recorded, 0 duplicates, 0 orphans, 0 ignored, 0 malformed",
        "suppressed gone@customer.example",
    ]
    assert result.stderr == ""


def test_empty_queue_exits_after_one_long_poll(runner: Any, moto: str) -> None:
    _, url = new_queue(moto)
    operator_folder(moto, url, wait_seconds=1)
    started = time.monotonic()
    doc = pull_json(runner)
    elapsed = time.monotonic() - started
    assert doc["stopped_by"] == "empty" and doc["messages"] == 0
    # moto honours WaitTimeSeconds: one poll of 1 s, then the pull stops (no second poll).
    assert 0.9 <= elapsed < 5, elapsed


def test_bodies_that_are_not_events_are_counted_and_deleted(runner: Any, moto: str) -> None:
    _, url = new_queue(moto)
    operator_folder(moto, url)
    send_raw(moto, url, "this is not JSON", "[" * 100_000, json.dumps({"eventType": 42}))
    doc = pull_json(runner)
    assert (doc["messages"], doc["malformed"], doc["recorded"], doc["deleted"]) == (3, 3, 0, 3)
    # Each problem names the SQS message it came from (the queue has forgotten it by now).
    assert len(doc["problems"]) == 3
    assert all(p.startswith("SQS message ") for p in doc["problems"]), doc["problems"]
    assert sum("not JSON" in p for p in doc["problems"]) == 1
    assert sum("nested too deeply" in p for p in doc["problems"]) == 1
    assert queue_depth(moto, url) == (0, 0)


KILL_AFTER_RECORD = """\
import os, sys
from migrate_cli.feedback import sqs

recorded = sqs.record_batch


def record_then_die(*args, **kwargs):
    recorded(*args, **kwargs)  # committed
    os._exit(137)  # killed before the delete, as by SIGKILL: no cleanup, no finally


sqs.record_batch = record_then_die
from migrate_cli.cli.app import main

sys.argv = ["migctl", *sys.argv[1:]]
main()
"""


def test_a_kill_between_commit_and_delete_redelivers_and_changes_nothing_twice(
    runner: Any, moto: str, tmp_path: Path
) -> None:
    # Visibility timeout 0: a message received by the killed pull is visible again at once.
    topic, url = new_queue(moto, visibility_timeout=0)
    operator_folder(moto, url)
    publish_events(moto, topic, *events_for(send_announcements(runner)))
    audit_before = audit_count()

    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_AFTER_RECORD,
            "--now",
            "2016-04-04T13:00:00",
            "feedback",
            "pull",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert killed.returncode == 137, killed.stderr
    recorded_once = audit_count()
    assert recorded_once > audit_before  # the batch was committed before the kill
    with Store(DB) as store:
        suppressed_once = sorted(r["email"] for r in store.db["suppressions"].rows)
    assert suppressed_once == ["angry@customer.example", "gone@customer.example"]
    assert queue_depth(moto, url) == (3, 0)  # nothing was deleted: the queue has them again

    doc = pull_json(runner)
    assert (doc["messages"], doc["received"], doc["recorded"], doc["duplicates"]) == (3, 3, 0, 3)
    assert doc["suppressed"] == [] and doc["deleted"] == 3
    assert audit_count() == recorded_once  # nothing changed twice
    assert queue_depth(moto, url) == (0, 0)


# -- run ------------------------------------------------------------------------------------


def test_run_pulls_first_so_its_notices_skip_the_bounced(runner: Any, moto: str) -> None:
    topic, url = new_queue(moto)
    operator_folder(moto, url)
    publish_events(moto, topic, *events_for(send_announcements(runner)))

    # 2016-04-11: the 30-day escalation reminder is due for every administrator.
    result = runner("--now", "2016-04-11T12:00:00", "run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["feedback"]["recorded"] == 3 and doc["feedback"]["deleted"] == 3
    reminders = {r["email"]: r["state"] for r in outbox("kind = 'reminder'")}
    assert reminders.get("happy@customer.example") == "sent"
    assert "gone@customer.example" not in {e for e, s in reminders.items() if s == "sent"}
    assert "angry@customer.example" not in {e for e, s in reminders.items() if s == "sent"}
    assert queue_depth(moto, url) == (0, 0)


def test_run_plain_output_shows_the_pull(runner: Any, moto: str) -> None:
    topic, url = new_queue(moto)
    operator_folder(moto, url)
    publish_events(moto, topic, *events_for(send_announcements(runner))[:1])
    result = runner("--now", "2016-04-05T12:00:00", "run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "feedback: 1 message(s) from the SQS queue, 1 deleted (stopped: empty)" in lines
    assert "suppressed gone@customer.example" in lines
    assert result.stderr == ""


def test_run_without_a_queue_reports_no_feedback(runner: Any, moto: str) -> None:
    operator_folder(moto, None)
    result = runner("--now", "2016-04-04T12:00:00", "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["feedback"] is None


def test_a_dry_run_leaves_the_queue_alone(runner: Any, moto: str) -> None:
    _, url = new_queue(moto)
    operator_folder(moto, url)
    send_raw(moto, url, json.dumps({"note": 1}))
    result = runner("--now", "2016-04-04T12:00:00", "run", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["feedback"] is None
    assert queue_depth(moto, url) == (1, 0)


def test_a_queue_outage_does_not_stop_enforcement_or_notices(runner: Any, moto: str) -> None:
    with FakeSes() as fake:
        url = f"{fake.url}/123456789012/migctl-events"
        operator_folder(moto, url, sqs_endpoint=fake.url)
        fake.script(sqs_error(503, "ServiceUnavailable", "later"))
        # The mandatory date: every account is enforced and each administrator told.
        result = runner("--now", "2016-05-11T12:00:00", "run", "--json")
    assert result.exit_code == 3, result.output  # partial: the pull waits for the next run
    doc = json.loads(result.stdout)
    assert "HTTP 503" in doc["feedback"]["error"]
    assert doc["enforced"] == {"email-delivery-changes": 3}
    assert doc["notices"]["sent"] == doc["notices"]["planned"] > 0
    assert "warning: feedback pull failed, the run went on without it" in result.stderr


# -- stopping -------------------------------------------------------------------------------


class StepClock:
    """A clock that moves ``step`` seconds each time it is read (no real waiting)."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_max_seconds_stops_a_pull_while_events_keep_coming(moto: str, tmp_path: Path) -> None:
    _, url = new_queue(moto)
    operator_folder(moto, url)
    send_raw(moto, url, *(json.dumps({"note": i}) for i in range(35)))
    config = load_config(Path("migctl.toml"), explicit=True)
    with Store(DB) as store:
        # The clock is read once for the deadline, then once per batch: 10 s a read and a
        # 25 s budget leave room for two batches of ten.
        summary = sqs.pull(
            store,
            config,
            now=sqs_now(),
            clock=StepClock(10),
            max_seconds=25,
            actor="test",
        )
    assert summary.stopped_by == "max_seconds"
    assert (summary.messages, summary.deleted) == (20, 20)
    assert queue_depth(moto, url) == (15, 0)


def test_a_stop_signal_ends_the_pull_before_the_next_receive(moto: str) -> None:
    import threading

    _, url = new_queue(moto)
    operator_folder(moto, url)
    send_raw(moto, url, json.dumps({"note": 1}))
    stop = threading.Event()
    stop.set()
    with Store(DB) as store:
        summary = sqs.pull(
            store,
            load_config(Path("migctl.toml"), explicit=True),
            now=sqs_now(),
            clock=time.monotonic,
            actor="test",
            stop=stop,
        )
    assert (summary.stopped_by, summary.messages) == ("stop", 0)
    assert queue_depth(moto, url) == (1, 0)


def sqs_now() -> Any:
    from helpers_notices import at

    return at("2016-04-04T13:00:00")


# -- failures -------------------------------------------------------------------------------


def test_a_refused_delete_is_reported_not_fatal(
    runner: Any, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS answers a batch delete with one entry Failed (here: a receipt handle it does not
    know, which moto refuses exactly as SQS does)."""
    _, url = new_queue(moto)
    operator_folder(moto, url)
    send_raw(moto, url, json.dumps({"note": 1}), json.dumps({"note": 2}))
    make = sqs.sqs_client

    def spoil_one_handle(params: dict[str, Any], **_: Any) -> None:
        params["Entries"][0]["ReceiptHandle"] = "not-a-receipt-handle"

    def client(config: Any) -> Any:
        made = make(config)
        made.meta.events.register("before-parameter-build.sqs.DeleteMessageBatch", spoil_one_handle)
        return made

    monkeypatch.setattr(sqs, "sqs_client", client)
    result = runner("--now", "2016-04-04T13:00:00", "feedback", "pull", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["messages"], doc["deleted"], doc["not_deleted"]) == (2, 1, 1)
    assert "ReceiptHandleIsInvalid" in doc["delete_errors"][0]
    assert "warning: SQS message" in result.stderr and "duplicate" in result.stderr
    assert queue_depth(moto, url) == (0, 1)  # in flight; it comes back and counts as duplicate


def test_a_delete_that_cannot_reach_sqs_exits_1_and_the_next_pull_changes_nothing(
    runner: Any, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network drops between the store commit and the delete: exit 1, and the recorded
    batch comes back as duplicates (visibility timeout 0: at once)."""
    from botocore.exceptions import EndpointConnectionError

    topic, url = new_queue(moto, visibility_timeout=0)
    operator_folder(moto, url)
    publish_events(moto, topic, *events_for(send_announcements(runner)))
    before = audit_count()
    make = sqs.sqs_client

    def drop(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url=moto)

    def client(config: Any) -> Any:
        made = make(config)
        made.meta.events.register("before-call.sqs.DeleteMessageBatch", drop)
        return made

    with monkeypatch.context() as mp:
        mp.setattr(sqs, "sqs_client", client)
        failed = runner("--now", "2016-04-04T13:00:00", "feedback", "pull")
    assert failed.exit_code == 1
    assert "could not be reached (delete_message_batch" in failed.stderr
    assert "nothing was lost" in failed.stderr
    recorded = audit_count()
    assert recorded > before  # the batch was committed before the delete failed

    doc = pull_json(runner)
    assert (doc["messages"], doc["recorded"], doc["duplicates"], doc["deleted"]) == (3, 0, 3, 3)
    assert audit_count() == recorded
    assert queue_depth(moto, url) == (0, 0)


def test_no_queue_configured_says_which_key_to_set(runner: Any, moto: str) -> None:
    operator_folder(moto, None)
    before = files_digest(DB)
    result = runner("feedback", "pull")
    assert result.exit_code == 1
    assert "[feedback] sqs_queue_url" in result.stderr
    assert "Traceback" not in result.output
    assert files_digest(DB) == before


def test_a_missing_queue_is_a_configuration_error_naming_it(runner: Any, moto: str) -> None:
    url = f"{moto}/123456789012/no-such-queue"
    operator_folder(moto, url)
    before = files_digest(DB)
    result = runner("feedback", "pull")
    assert result.exit_code == 1
    assert f"the SQS queue {url} does not exist in region us-east-1" in result.stderr
    assert "Traceback" not in result.output
    assert files_digest(DB) == before


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            sqs_error(400, "AccessDenied", "denied"),
            "may not use the SQS queue",
        ),
        (
            sqs_error(400, "KmsAccessDenied", "kms"),
            "KMS key",
        ),
        (
            sqs_error(400, "RequestThrottled", "Rate exceeded"),
            "throttled",
        ),
        (sqs_error(500, "InternalError", "oops"), "HTTP 500"),
        (sqs_error(503, "ServiceUnavailable", "later"), "HTTP 503"),
    ],
)
def test_aws_errors_exit_1_with_a_clear_message(
    runner: Any, moto: str, reply: SesReply, expected: str
) -> None:
    with FakeSes() as fake:
        url = f"{fake.url}/123456789012/migctl-events"
        operator_folder(moto, url, sqs_endpoint=fake.url)
        before = files_digest(DB)
        fake.script(reply)
        result = runner("feedback", "pull")
    assert result.exit_code == 1, result.output
    assert expected in result.stderr and url in result.stderr
    assert "Traceback" not in result.output
    # One request: no SDK retries.
    assert [r.headers["X-Amz-Target"] for r in fake.requests] == ["AmazonSQS.ReceiveMessage"]
    assert files_digest(DB) == before


def test_credentials_are_never_printed(
    runner: Any, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAVERYSECRETKEYID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very/secret+access/key")
    with FakeSes() as fake:
        url = f"{fake.url}/123456789012/migctl-events"
        operator_folder(fake.url, url)
        fake.script(
            sqs_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match. The canonical string "
                "was Credential=AKIAVERYSECRETKEYID/20161201/us-east-1/sqs",
            )
        )
        result = runner("feedback", "pull")
    assert result.exit_code == 1
    assert "AWS rejected the credentials" in result.stderr
    assert "AKIAVERYSECRETKEYID" not in result.output and "very/secret" not in result.output


def test_connection_refused_exits_1_and_changes_nothing(runner: Any, moto: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    operator_folder(dead, f"{dead}/123456789012/migctl-events")
    before = files_digest(DB)
    result = runner("feedback", "pull")
    assert result.exit_code == 1
    assert "could not be reached" in result.stderr and "nothing was lost" in result.stderr
    assert files_digest(DB) == before
