"""Canary secrets (SMTP password, SendGrid key, AWS keys) never appear anywhere we can see:
stdout, stderr, log records at DEBUG, exception messages, the store and the outbox files —
neither raw nor base64 (including AUTH PLAIN's ``\\0user\\0password``)."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import fuzz_settings
from tests.fakes.sendgrid_server import FakeSendgrid
from tests.fakes.ses_server import FakeSes, SesReply
from tests.fakes.smtp_server import SmtpServer
from tests.fuzz_settings import count
from tests.test_fuzz_loaders import REPO, make_store

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SMTP_USER = "relay-user"
SMTP_PW = "canary-smtp-Pw-5d1f0c"
SG_KEY = "SG.canary-sendgrid-0b7e94"
AWS_KEY_ID = "AKIACANARY00KEYID42"
AWS_SECRET = "canary/aws+secret-9c2e71aa"
AWS_TOKEN = "canary-aws-session-token-e03b"


def forms(secret: str, user: str = SMTP_USER) -> list[str]:
    out = [secret]
    for raw in (secret, f"\0{user}\0{secret}", f"{user}\0{secret}"):
        b = base64.b64encode(raw.encode()).decode()
        out += [b, b.rstrip("=")]
    return out


def leaks(haystack: str | bytes, secrets: list[str]) -> list[str]:
    text = haystack.decode("utf-8", "replace") if isinstance(haystack, bytes) else haystack
    return [s for secret in secrets for s in forms(secret) if s in text]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    root = logging.getLogger()
    old = root.level
    logging.basicConfig(level=logging.DEBUG)
    root.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3", "python_http_client", "smtplib", "mail.log"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        root.setLevel(old)
        logging.getLogger("mail.log").setLevel(logging.WARNING)


COMMANDS = [
    ["validate", "--file", REPO / "migrations.yaml"],
    ["sync", "--file", REPO / "migrations.yaml"],
    ["status", "--json"],
    ["accounts", "list", "--json"],
    ["notify", "--dry-run", "--json"],
    ["notify", "--json"],
    ["run", "--json"],
    ["preview", "email-delivery-changes"],
    ["notify", "email-delivery-changes", "--test-to", "someone@customer.example"],
    ["outbox", "list", "--json"],
    ["audit"],
]


def _everything(
    tmp_path: Path,
    runner: Any,
    config: Path,
    env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    secrets: list[str],
) -> dict[str, int]:
    db = make_store(tmp_path)
    seen: list[str] = []
    codes: dict[str, int] = {}
    for cmd in COMMANDS:
        r = runner("--db", db, "--config", config, "--now", "2016-04-20", *cmd, env=env)
        codes[" ".join(map(str, cmd[:2]))] = r.exit_code
        count("secrets: command runs with canaries")
        seen += [r.stdout, r.stderr]
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            seen.append(repr(r.exception) + str(r.exception))
    seen.append(caplog.text)
    seen += [f"{rec.getMessage()} {rec.exc_text or ''}" for rec in caplog.records]
    for f in tmp_path.rglob("*"):
        if f.is_file():
            seen.append(f.read_bytes().decode("utf-8", "replace"))
    found = [hit for text in seen for hit in leaks(text, secrets)]
    assert found == [], f"secret material found: {found}"
    return codes


def test_smtp_password_with_failed_auth(
    tmp_path: Path, runner: Any, debug_logs: pytest.LogCaptureFixture
) -> None:
    with SmtpServer(auth=(SMTP_USER, "the-right-password")) as server:
        cfg = tmp_path / "migctl.toml"
        cfg.write_text(
            f'[email]\nprovider = "smtp"\nfrom = "notices@platform.example"\n[email.smtp]\nhost = "127.0.0.1"\n'
            f'port = {server.port}\nsecurity = "none"\nusername = "{SMTP_USER}"\npassword_env = "CANARY_SMTP_PASSWORD"\n'
        )
        codes = _everything(
            tmp_path, runner, cfg, {"CANARY_SMTP_PASSWORD": SMTP_PW}, debug_logs, [SMTP_PW]
        )
    assert codes["notify --json"] == 1, codes  # the failed AUTH stops the run (config error)
    assert server.messages == []


def test_smtp_password_with_successful_auth(
    tmp_path: Path, runner: Any, debug_logs: pytest.LogCaptureFixture
) -> None:
    with SmtpServer(auth=(SMTP_USER, SMTP_PW)) as server:
        cfg = tmp_path / "migctl.toml"
        cfg.write_text(
            f'[email]\nprovider = "smtp"\nfrom = "notices@platform.example"\n[email.smtp]\nhost = "127.0.0.1"\n'
            f'port = {server.port}\nsecurity = "none"\nusername = "{SMTP_USER}"\npassword_env = "CANARY_SMTP_PASSWORD"\n'
        )
        codes = _everything(
            tmp_path, runner, cfg, {"CANARY_SMTP_PASSWORD": SMTP_PW}, debug_logs, [SMTP_PW]
        )
    assert codes["notify --json"] == 0, codes
    assert server.messages


@pytest.mark.parametrize("accepted", [False, True], ids=["401", "202"])
def test_sendgrid_key(
    tmp_path: Path, runner: Any, debug_logs: pytest.LogCaptureFixture, accepted: bool
) -> None:
    with FakeSendgrid(api_key=SG_KEY if accepted else "SG.some-other-key") as fake:
        cfg = tmp_path / "migctl.toml"
        cfg.write_text(
            f'[email]\nprovider = "sendgrid"\nfrom = "notices@platform.example"\n[email.sendgrid]\n'
            f'api_key_env = "CANARY_SENDGRID_KEY"\nhost = "{fake.url}"\n'
        )
        codes = _everything(
            tmp_path, runner, cfg, {"CANARY_SENDGRID_KEY": SG_KEY}, debug_logs, [SG_KEY]
        )
    assert codes["notify --json"] == (0 if accepted else 1), codes


@pytest.mark.parametrize(
    "reply",
    [
        None,
        SesReply(
            403, "InvalidClientTokenId", "The security token included in the request is invalid."
        ),
    ],
    ids=["ok", "bad-token"],
)
def test_aws_keys(
    tmp_path: Path,
    runner: Any,
    debug_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    reply: SesReply | None,
) -> None:
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    env = {
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with FakeSes() as fake:
        fake.always(reply)
        cfg = tmp_path / "migctl.toml"
        cfg.write_text(
            f'[email]\nprovider = "ses"\nfrom = "notices@platform.example"\n[email.ses]\nendpoint_url = "{fake.url}"\n'
        )
        codes = _everything(tmp_path, runner, cfg, env, debug_logs, [AWS_SECRET])
    assert codes["notify --json"] == (0 if reply is None else 1), codes


def test_aws_session_token_not_logged(
    tmp_path: Path,
    runner: Any,
    debug_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    env = {
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_SESSION_TOKEN": AWS_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    with FakeSes() as fake:
        cfg = tmp_path / "migctl.toml"
        cfg.write_text(
            f'[email]\nprovider = "ses"\nfrom = "notices@platform.example"\n[email.ses]\nendpoint_url = "{fake.url}"\n'
        )
        db = make_store(tmp_path)
        r = runner("--db", db, "--config", cfg, "--now", "2016-04-20", "notify", env=env)
        assert r.exit_code == 0
    assert AWS_TOKEN not in debug_logs.text


def test_subprocess_failed_auth_prints_no_secret(tmp_path: Path) -> None:
    """A real process (no PYTHONVERBOSE), as cron runs it: the failed AUTH error path."""
    with SmtpServer(auth=(SMTP_USER, "the-right-password")) as server:
        cfg = tmp_path / "migctl.toml"
        cfg.write_text(
            f'[email]\nprovider = "smtp"\nfrom = "notices@platform.example"\n[email.smtp]\nhost = "127.0.0.1"\n'
            f'port = {server.port}\nsecurity = "none"\nusername = "{SMTP_USER}"\npassword_env = "CANARY_SMTP_PASSWORD"\n'
        )
        db = make_store(tmp_path)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("MIGCTL_", "PYTHONVERBOSE"))
        }
        env["CANARY_SMTP_PASSWORD"] = SMTP_PW
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "migrate_cli",
                "--db",
                str(db),
                "--config",
                str(cfg),
                "--now",
                "2016-04-20",
                "notify",
            ],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
    count("secrets: subprocess runs")
    assert p.returncode == 1, p.stderr
    assert b"authentication" in p.stderr
    assert leaks(p.stdout + p.stderr, [SMTP_PW]) == []
    assert leaks(db.read_bytes(), [SMTP_PW]) == []


def test_secret_in_config_file_is_refused(tmp_path: Path) -> None:
    """Secrets only through environment variables: a password key in the file is an error."""
    from migrate_cli.config import load_config
    from migrate_cli.errors import InputError

    cfg = tmp_path / "migctl.toml"
    cfg.write_text(f'[email.smtp]\npassword = "{SMTP_PW}"\n')
    with pytest.raises(InputError) as info:
        load_config(cfg, explicit=True)
    assert SMTP_PW not in str(info.value)


assert fuzz_settings.PROFILE
