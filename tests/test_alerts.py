"""Alerts: after a run with a listed event, one POST a Slack/Mattermost incoming webhook accepts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers_enforce import MAIL, migctl, ok, setup_store, write_config

SECRET_PATH = "/hooks/T000-secret-token"


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.received.append(  # type: ignore[attr-defined]
            (self.path, self.headers.get("Content-Type"), json.loads(self.rfile.read(length)))
        )
        status = self.server.status  # type: ignore[attr-defined]
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"no")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"


def _store(
    folder: Path, on: str = '["enforced", "failed", "in_doubt", "provider_stopped"]'
) -> None:
    setup_store(folder, MAIL)
    write_config(folder, extra=f'\n[alerts]\nwebhook_url_env = "MIGCTL_ALERT_WEBHOOK"\non = {on}\n')


def test_an_enforcing_run_posts_one_slack_compatible_alert(tmp_path: Path, hook: Any) -> None:
    _store(tmp_path)
    env = {"MIGCTL_ALERT_WEBHOOK": _url(hook)}
    r = ok(migctl(tmp_path, "--now", "2016-05-11T09:00:00", "run", env=env))
    assert len(hook.received) == 1
    path, content_type, body = hook.received[0]
    assert path == SECRET_PATH and content_type == "application/json"
    assert isinstance(body["text"], str) and "enforced" in body["text"]
    (attachment,) = body["attachments"]
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["enforced"].startswith("mail: ")
    assert all(isinstance(f["value"], str) for f in attachment["fields"])
    assert "secret-token" not in r.stdout + r.stderr


def test_a_run_without_a_listed_event_posts_nothing(tmp_path: Path, hook: Any) -> None:
    _store(tmp_path, on='["enforced"]')
    env = {"MIGCTL_ALERT_WEBHOOK": _url(hook)}
    ok(migctl(tmp_path, "--now", "2016-04-20", "run", env=env))  # notices only
    assert hook.received == []
    ok(migctl(tmp_path, "--now", "2016-05-11", "run", "--dry-run", env=env))  # a rehearsal
    assert hook.received == []


def test_a_failing_webhook_is_a_warning_and_the_url_stays_secret(tmp_path: Path, hook: Any) -> None:
    _store(tmp_path)
    hook.status = 500
    env = {"MIGCTL_ALERT_WEBHOOK": _url(hook)}
    r = migctl(tmp_path, "--now", "2016-05-11", "run", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert len(hook.received) == 1
    assert "warning: alert not sent: the webhook answered HTTP 500" in r.stderr
    json.loads(r.stdout)  # still exactly one JSON document
    assert "secret-token" not in r.stdout + r.stderr


def test_an_unreachable_webhook_is_a_warning(tmp_path: Path, hook: Any) -> None:
    _store(tmp_path)
    url = _url(hook)
    hook.shutdown()
    hook.server_close()
    r = migctl(tmp_path, "--now", "2016-05-11", "run", env={"MIGCTL_ALERT_WEBHOOK": url})
    assert r.returncode == 0, r.stderr
    assert "warning: alert not sent: the webhook could not be reached" in r.stderr
    assert "secret-token" not in r.stdout + r.stderr and str(hook.server_address[1]) not in r.stderr


def test_a_provider_stop_is_alerted_and_the_run_still_fails(tmp_path: Path, hook: Any) -> None:
    _store(tmp_path)
    (tmp_path / "outbox").write_text("a file where the folder should be")
    r = migctl(tmp_path, "--now", "2016-04-20", "run", env={"MIGCTL_ALERT_WEBHOOK": _url(hook)})
    assert r.returncode == 1, r.stderr
    (_, _, body) = hook.received[0]
    assert "provider_stopped" in body["text"]


def test_unknown_alert_events_are_config_errors(tmp_path: Path) -> None:
    _store(tmp_path, on='["enforce"]')
    r = migctl(tmp_path, "--now", "2016-04-20", "run")
    assert r.returncode == 1
    assert "alerts.on.0" in r.stderr and "'enforced'" in r.stderr


def test_a_date_held_back_by_min_notice_is_alerted(tmp_path: Path, hook: Any) -> None:
    _store(tmp_path, on='["held"]')
    env = {"MIGCTL_ALERT_WEBHOOK": _url(hook)}
    ok(migctl(tmp_path, "--now", "2016-04-20", "run", env=env))  # announcements: no alert
    assert hook.received == []
    # A typo moves the date into the past; the next run syncs it and must not switch anyone.
    yaml = tmp_path / "migrations.yaml"
    yaml.write_text(yaml.read_text().replace("2016-05-11", "2016-04-21"))
    r = ok(migctl(tmp_path, "--now", "2016-04-22", "run", "--json", env=env))
    doc = json.loads(r.stdout)
    assert doc["enforced"] == {} and doc["held"][0]["migration"] == "mail"
    (_, _, body) = hook.received[0]
    assert len(hook.received) == 1 and "held" in body["text"]


def test_a_failed_feedback_pull_is_alerted_and_the_run_goes_on(tmp_path: Path, hook: Any) -> None:
    """The SQS queue cannot be reached (nothing listens on the endpoint): the run enforces and
    sends anyway, exits 3, and the operators hear that the delivery events were not pulled."""
    setup_store(tmp_path, MAIL)
    write_config(
        tmp_path,
        extra=(
            '\n[alerts]\nwebhook_url_env = "MIGCTL_ALERT_WEBHOOK"\non = ["feedback_failed"]\n'
            '\n[feedback]\nsqs_queue_url = "http://127.0.0.1:9/123456789012/migctl-events"\n'
            'endpoint_url = "http://127.0.0.1:9"\nsqs_region = "eu-west-1"\n'
        ),
    )
    env = {
        "MIGCTL_ALERT_WEBHOOK": _url(hook),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    r = migctl(tmp_path, "--now", "2016-05-11T09:00:00", "run", "--json", env=env)
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    assert doc["feedback"]["error"] and any(doc["enforced"].values())
    (_, _, body) = hook.received[0]
    assert body["text"].endswith(": feedback_failed")
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert fields["feedback"] == doc["feedback"]["error"]
    assert "testing" not in json.dumps(body)
