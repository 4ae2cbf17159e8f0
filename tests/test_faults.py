"""Provider faults end to end through the CLI, against real local servers (SPEC section 6):
retries by time across runs, provider-wide rejections and the circuit breaker, echoed secrets."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunCli
from tests.fakes.sendgrid_server import FakeSendgrid, Reply
from tests.fakes.ses_server import FakeSes, SesReply
from tests.fakes.smtp_server import RecordingHandler, SmtpServer
from tests.helpers_notices import account, at, build_store, enqueue_only, outbox

# The local relay asks for AUTH over plain text: the password it checks is the one echoed back.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
NOW = "2016-04-20"  # every administrator is due an announcement then
SMTP_PASSWORD = "canary-smtp-password-7f3a"
SG_KEY = "SG.canary-sendgrid-key-91c2"
AWS_SECRET = "canary-aws-secret-key-55d0"
AWS_TOKEN = "canary-aws-session-token-e03b"
# Compressed durations: retries a hundredth of a second apart, given up on the second failure.
FAST = {"retry_backoff": 0.001, "max_attempts": 3}


def _admins(n: int) -> list[str]:
    emails = [f"admin{i:03d}@customer.example" for i in range(n)]
    build_store([account(f"acc-{i:03d}", e) for i, e in enumerate(emails)])
    return emails


def _email_table(provider: str, email: dict[str, object]) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in email.items())
    return (
        f'environment = "production"\n[email]\nprovider = "{provider}"\n'
        f'from = "notices@platform.example"\n{extra}'
    )


def _smtp_config(port: int, **email: object) -> None:
    Path("migctl.toml").write_text(
        _email_table("smtp", email) + f'[email.smtp]\nhost = "127.0.0.1"\nport = {port}\n'
        'security = "none"\nusername = "migctl"\npassword_env = "MIGCTL_TEST_SMTP_PASSWORD"\n'
        "timeout = 2\n",
        encoding="utf-8",
    )


def _sendgrid_config(server: FakeSendgrid, **email: object) -> None:
    Path("migctl.toml").write_text(
        _email_table("sendgrid", email) + '[email.sendgrid]\napi_key_env = "MIGCTL_TEST_SG_KEY"\n'
        f'host = "{server.url}"\ntimeout = 5\n',
        encoding="utf-8",
    )


def _notify(runner: RunCli, *, code: int) -> dict[str, int]:
    result = runner("--now", NOW, "notify", "--json")
    assert result.exit_code == code, (result.stdout, result.stderr)
    return json.loads(result.stdout)["notices"]  # type: ignore[no-any-return]


def _states() -> dict[str, int]:
    out: dict[str, int] = {}
    for row in outbox():
        out[row["state"]] = out.get(row["state"], 0) + 1
    return out


def _suppressed(runner: RunCli) -> list[object]:
    result = runner("suppress", "list", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    return doc["suppressions"] if isinstance(doc, dict) else doc  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGCTL_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("MIGCTL_TEST_SG_KEY", SG_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCANARY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)


# --------------------------------------------------------------------------- 1. retry by time


def test_a_relay_down_leaves_notices_pending_and_a_later_run_delivers_them(
    runner: RunCli,
) -> None:
    emails = _admins(25)  # more than one claimed batch
    handler = RecordingHandler()
    server = SmtpServer(handler, auth=(("migctl", SMTP_PASSWORD)))
    _smtp_config(server.port, breaker=100, **FAST)  # the breaker has its own test
    # The relay is down: every connection is refused.
    notices = _notify(runner, code=3)
    assert (notices["sent"], notices["failed"], notices["retry_later"]) == (0, 0, 25)
    assert _states() == {"pending": 25}
    listed = runner("outbox", "list", "--json")
    rows = json.loads(listed.stdout)["rows"]
    assert all(r["next_attempt_at"] and r["failing_since"] for r in rows)
    assert all(r["attempts"] == FAST["max_attempts"] for r in rows)  # not more within one run
    table = runner("outbox", "list")
    assert table.stdout.count("next_attempt=20") == 25  # plain lines, as cron sees them

    with server:  # the relay is back: the next run delivers by itself, no `outbox retry`
        notices = _notify(runner, code=0)
    assert (notices["sent"], notices["failed"], notices["retry_later"]) == (25, 0, 0)
    assert sorted(r for m in handler.messages for r in m.rcpt_tos) == emails
    assert _states() == {"sent": 25}
    assert all(r["failing_since"] is None for r in outbox())


@pytest.mark.parametrize(
    "handler",
    [
        RecordingHandler(data_reply="451 4.3.0 try again later"),
        RecordingHandler(mail_reply="421 4.3.2 shutting down"),
    ],
    ids=["451-at-data", "421-at-mail-from"],
)
def test_transient_replies_are_retried_across_runs_and_failed_only_after_retry_for(
    runner: RunCli, handler: RecordingHandler
) -> None:
    _admins(4)
    with SmtpServer(handler, auth=("migctl", SMTP_PASSWORD)) as server:
        _smtp_config(server.port, retry_for="72h", **FAST)
        first = _notify(runner, code=3)
        assert (first["failed"], first["retry_later"]) == (0, 4)  # notices, not retry events
        again = _notify(runner, code=3)
        assert (again["failed"], again["retry_later"]) == (0, 4)
        assert _states() == {"pending": 4}
        # retry_for = 0m: the next transient failure is past the window.
        _smtp_config(server.port, retry_for="0m", **FAST)
        last = _notify(runner, code=3)
    assert (last["failed"], last["retry_later"]) == (4, 0)  # never both for one notice
    assert _states() == {"failed": 4}
    assert all("kept failing since" in r["last_error"] for r in outbox())
    assert handler.messages == []


@dataclass
class HangingHandler(RecordingHandler):
    """A relay that accepts the connection and then never answers MAIL FROM."""

    released: threading.Event = field(default_factory=threading.Event)

    async def handle_MAIL(self, *args: Any) -> str:  # type: ignore[override]
        while not self.released.is_set():
            await asyncio.sleep(0.01)
        return "421 4.3.2 going away"


def test_a_hanging_relay_pauses_the_run_after_a_few_recipients(runner: RunCli) -> None:
    _admins(30)
    handler = HangingHandler()
    with SmtpServer(handler, auth=("migctl", SMTP_PASSWORD)) as server:
        _smtp_config(server.port, breaker=4, **FAST)
        config = Path("migctl.toml").read_text(encoding="utf-8")
        Path("migctl.toml").write_text(config.replace("timeout = 2", "timeout = 0.2"))
        try:
            result = runner("--now", NOW, "notify", "--json")
        finally:
            handler.released.set()
    assert result.exit_code == 3, (result.stdout, result.stderr)
    notices = json.loads(result.stdout)["notices"]
    assert (notices["sent"], notices["failed"], notices["retry_later"]) == (0, 0, 4)
    assert "4 recipients in a row failed the same transient way" in notices["paused"]
    assert "smtp:timeout" in notices["paused"]
    assert _states() == {"pending": 30}
    assert sum(r["attempts"] for r in outbox()) == 4  # the other 26 were never tried


# --------------------------------------------------------------------------- 2. provider-wide


@pytest.mark.parametrize(
    "handler",
    [
        RecordingHandler(data_reply="554 5.7.1 message rejected as spam"),
        RecordingHandler(
            rcpt_replies={
                f"admin{i:03d}@customer.example": "554 5.7.1 Service unavailable; Client host "
                "[127.0.0.1] blocked using zen.spamhaus.org"
                for i in range(12)
            }
        ),
    ],
    ids=["554-end-of-data", "554-rcpt-blocklist"],
)
def test_a_rejection_of_the_relay_or_message_stops_the_run_and_suppresses_nobody(
    runner: RunCli, handler: RecordingHandler
) -> None:
    _admins(12)
    with SmtpServer(handler, auth=("migctl", SMTP_PASSWORD)) as server:
        _smtp_config(server.port, **FAST)
        result = runner("--now", NOW, "notify")
    assert result.exit_code == 1, result.stdout
    assert "554 5.7.1" in result.stderr and "nothing was suppressed" in result.stderr
    assert _states() == {"pending": 12}
    assert _suppressed(runner) == []


def test_a_recipient_rejection_suppresses_only_that_address(runner: RunCli) -> None:
    emails = _admins(3)
    handler = RecordingHandler(rcpt_replies={emails[1]: "550 5.1.1 no such user"})
    with SmtpServer(handler, auth=("migctl", SMTP_PASSWORD)) as server:
        _smtp_config(server.port, **FAST)
        notices = _notify(runner, code=3)
    assert (notices["sent"], notices["failed"]) == (2, 1)
    assert len(_suppressed(runner)) == 1


def test_the_circuit_breaker_stops_a_storm_of_one_rejection(runner: RunCli) -> None:
    _admins(15)
    with FakeSendgrid(SG_KEY) as server:
        _sendgrid_config(server, breaker=5, **FAST)
        server.script(
            *[Reply(400, body={"errors": [{"message": "Bad Request", "field": None}]})] * 40
        )
        result = runner("--now", NOW, "notify", "--json")
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert "5 different recipients in a row" in result.stderr
        assert "nothing was suppressed" in result.stderr
        assert _states() == {"pending": 15}
        assert _suppressed(runner) == []
        assert server.attempts == 5  # stopped at once, the rest never tried


def test_the_breaker_lets_scattered_rejections_through(runner: RunCli) -> None:
    _admins(6)
    with FakeSendgrid(SG_KEY) as server:
        _sendgrid_config(server, breaker=3, **FAST)
        bad = Reply(400, body={"errors": [{"message": "invalid email", "field": "to"}]})
        server.script(bad, bad, Reply(202), bad, bad, Reply(202))
        notices = _notify(runner, code=3)
    assert (notices["sent"], notices["failed"]) == (2, 4)
    assert len(_suppressed(runner)) == 4


# --------------------------------------------------------------------------- 7. echoed secrets


def _assert_nowhere(runner: RunCli, stderr: str, *secrets: str) -> None:
    stored = json.dumps(outbox()) + json.dumps(_suppressed(runner))
    audit = runner("audit", "--json").stdout
    for secret in secrets:
        assert secret not in stderr
        assert secret not in stored
        assert secret not in audit
    assert Path("migctl.db").read_bytes().count(secrets[0].encode()) == 0


def test_an_smtp_server_echoing_the_password_never_gets_it_printed_or_stored(
    runner: RunCli,
) -> None:
    emails = _admins(3)
    handler = RecordingHandler(
        rcpt_replies={
            emails[0]: f"550 5.1.1 no such user (auth was {SMTP_PASSWORD})",
            emails[1]: f"451 4.3.0 later, {SMTP_PASSWORD}",
        }
    )
    with SmtpServer(handler, auth=("migctl", SMTP_PASSWORD)) as server:
        _smtp_config(server.port, **FAST)
        result = runner("--now", NOW, "notify")
    assert result.exit_code == 3
    errors = [r["last_error"] for r in outbox() if r["last_error"]]
    assert len(errors) == 2 and all("***" in e for e in errors)
    _assert_nowhere(runner, result.stderr, SMTP_PASSWORD)


def test_a_sendgrid_server_echoing_the_key_never_gets_it_printed_or_stored(
    runner: RunCli,
) -> None:
    _admins(3)
    with FakeSendgrid(SG_KEY) as server:
        _sendgrid_config(server, **FAST)
        echo = {"errors": [{"message": f"bad request for Bearer {SG_KEY}", "field": "to"}]}
        server.script(Reply(400, body=echo), Reply(503, body=echo), Reply(503, body=echo))
        result = runner("--now", NOW, "notify")
    assert result.exit_code == 3
    _assert_nowhere(runner, result.stderr, SG_KEY)


@pytest.mark.parametrize("status", [400, 503])
def test_an_ses_endpoint_echoing_the_session_token_never_gets_it_printed_or_stored(
    runner: RunCli, status: int
) -> None:
    _admins(4)
    with FakeSes() as fake:
        Path("migctl.toml").write_text(
            _email_table("ses", FAST) + f'[email.ses]\nendpoint_url = "{fake.url}"\n',
            encoding="utf-8",
        )
        fake.always(
            SesReply(
                status,
                "MessageRejected" if status == 400 else "InternalFailure",
                message=f"X-Amz-Security-Token={AWS_TOKEN} secret {AWS_SECRET} rejected",
            )
        )
        result = runner("--now", NOW, "notify")
        assert fake.requests[0].headers.get("X-Amz-Security-Token") == AWS_TOKEN
    assert result.exit_code in (1, 3), result.stderr
    _assert_nowhere(runner, result.stderr, AWS_TOKEN, AWS_SECRET)


# --------------------------------------------------------------------------- 8. a full disk


def test_a_store_filling_up_mid_send_reports_what_was_sent(
    runner: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_cli.store.db import Store

    build_store([account(f"acc-{i:03d}", f"admin{i:03d}@customer.example") for i in range(300)])
    queued = enqueue_only(at(NOW))
    assert queued == 300
    opened = Store.__init__

    def full_disk(self: Store, *args: object, **kwargs: object) -> None:
        opened(self, *args, **kwargs)  # type: ignore[arg-type]
        # SQLite's own "database or disk is full": not one more page than the store has now.
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages}")

    with monkeypatch.context() as patch:
        patch.setattr(Store, "__init__", full_disk)
        result = runner("--now", NOW, "notify", "--json")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "database or disk is full" in result.stderr
    doc = json.loads(result.stdout)
    assert "database or disk is full" in doc["error"]
    sent = doc["notices"]["sent"]
    assert 0 < sent < 300
    states = _states()
    # Every send the JSON reports is recorded, except the batch whose record hit the full disk.
    assert sent - 10 <= states.get("sent", 0) <= sent
    assert states.get("sending", 0) <= 10
    # The next run (disk freed) marks the unrecorded batch in doubt and sends only the rest.
    doc = json.loads(runner("--now", NOW, "notify", "--json").stdout)
    states = _states()
    assert states.get("sending", 0) == 0 and states.get("pending", 0) == 0
    assert states["sent"] + states.get("in_doubt", 0) == 300
    assert len(list(Path("outbox").glob("*.eml"))) == 300  # the file provider: once each
