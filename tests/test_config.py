"""migctl.toml as the operator writes it: every mistake is one located message and exit 1."""

from __future__ import annotations

import json
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from migrate_cli.config import Config, load_config

SECRET = "hunter2-canary-7f3a"

# (name, migctl.toml text, line, key, what the message says)
BAD_CONFIGS = [
    (
        "unknown-key-with-suggestion",
        '[email]\nprovider = "file"\nprovder = "smtp"\n',
        3,
        "email.provder",
        "unknown key 'provder' (did you mean 'provider'?); allowed here: breaker, concurrency,",
    ),
    (
        "unknown-table-key-with-suggestion",
        '[dashboard]\nurl = "https://d.example"\nprodcut_name = "X"\n',
        3,
        "dashboard.prodcut_name",
        "(did you mean 'product_name'?)",
    ),
    (
        "key-in-the-wrong-table",
        '[dashboard]\nprovider = "smtp"\n',
        2,
        "dashboard.provider",
        "unknown key 'provider' (it belongs in [email])",
    ),
    (
        "python-spelling-of-from",
        '[email]\nfrom_addr = "n@platform.example"\n',
        2,
        "email.from_addr",
        "unknown key 'from_addr'",
    ),
    (
        "port-out-of-range",
        '[email.smtp]\nhost = "relay.example"\nport = 99999\n',
        3,
        "email.smtp.port",
        "must be at most 65535, got 99999",
    ),
    ("port-zero", "[email.smtp]\nport = 0\n", 2, "email.smtp.port", "must be at least 1, got 0"),
    (
        "port-as-text",
        '[email.smtp]\nport = "25"\n',
        2,
        "email.smtp.port",
        "expected a whole number, got '25'",
    ),
    (
        "port-dotted-key",
        "email.smtp.port = 70000\n",
        1,
        "email.smtp.port",
        "must be at most 65535",
    ),
    (
        "port-inline-table",
        'environment = "staging"\nemail = { smtp = { port = -1 } }\n',
        2,
        "email.smtp.port",
        "must be at least 1, got -1",
    ),
    (
        "concurrency-as-text",
        '[email]\nconcurrency = "4"\n',
        2,
        "email.concurrency",
        "expected a whole number, got '4'",
    ),
    (
        "concurrency-too-high",
        "[email]\nconcurrency = 65\n",
        2,
        "email.concurrency",
        "must be at most 64",
    ),
    (
        "concurrency-zero",
        "[email]\nconcurrency = 0\n",
        2,
        "email.concurrency",
        "must be at least 1",
    ),
    (
        "quota-as-boolean",
        "[email]\ndaily_quota = true\n",
        2,
        "email.daily_quota",
        "expected a whole number, got True",
    ),
    (
        "quota-fractional",
        "[email]\ndaily_quota = 1.5\n",
        2,
        "email.daily_quota",
        "expected a whole number, got 1.5",
    ),
    ("quota-zero", "[email]\ndaily_quota = 0\n", 2, "email.daily_quota", "greater than 0"),
    ("rate-zero", "[email]\nrate_per_second = 0\n", 2, "email.rate_per_second", "greater than 0"),
    (
        "rate-negative",
        "[email]\nrate_per_second = -2.5\n",
        2,
        "email.rate_per_second",
        "must be greater than 0, got -2.5",
    ),
    (
        "rate-as-text",
        '[email]\nrate_per_second = "14"\n',
        2,
        "email.rate_per_second",
        "expected a number, got '14'",
    ),
    (
        "rate-nan",
        "[email]\nrate_per_second = nan\n",
        2,
        "email.rate_per_second",
        "must be a finite number",
    ),
    ("attempts-zero", "[email]\nmax_attempts = 0\n", 2, "email.max_attempts", "at least 1"),
    ("retry-for-words", '[email]\nretry_for = "3 days"\n', 2, "email.retry_for", "a duration"),
    ("breaker-one", "[email]\nbreaker = 1\n", 2, "email.breaker", "at least 2"),
    (
        "timeout-too-long",
        "[email.ses]\ntimeout = 601\n",
        2,
        "email.ses.timeout",
        "must be at most 600, got 601",
    ),
    (
        "confirm-limit-negative",
        "[enforcement]\nmax_accounts_without_confirm = -1\n",
        2,
        "enforcement.max_accounts_without_confirm",
        "must be at least 0, got -1",
    ),
    (
        "bad-environment",
        'environment = "prod"\n',
        1,
        "environment",
        "'prod' is not one of development, staging, production",
    ),
    (
        "bad-security-with-suggestion",
        '[email.smtp]\nhost = "relay.example"\nsecurity = "startls"\n',
        3,
        "email.smtp.security",
        "'startls' is not one of starttls, ssl, none (did you mean 'starttls'?)",
    ),
    (
        "bad-provider-with-suggestion",
        '[email]\nprovider = "sess"\n',
        2,
        "email.provider",
        "'sess' is not a provider (did you mean 'ses'?); choose one of ",
    ),
    (
        "smtp-without-host",
        '# relay settings\n[email]\nfrom = "n@platform.example"\nprovider = "smtp"\n',
        4,
        "email.smtp.host",
        'required with provider = "smtp"',
    ),
    (
        "smtp-empty-host",
        '[email]\nprovider = "smtp"\n[email.smtp]\nhost = ""\n',
        2,
        "email.smtp.host",
        'required with provider = "smtp"',
    ),
    (
        "table-given-as-text",
        '[email]\nsmtp = "relay.example"\n',
        2,
        "email.smtp",
        "expected a table ([email.smtp]), got 'relay.example'",
    ),
    (
        "unknown-nested-table",
        '[email.smtp]\nhost = "relay.example"\n\n[email.smtp.tls]\nverify = false\n',
        4,
        "email.smtp.tls",
        "unknown key 'tls'; allowed here: ca_file, host,",
    ),
    (
        "unknown-top-level-table",
        '[emial]\nprovider = "file"\n',
        1,
        "emial",
        "unknown key 'emial' (did you mean 'email'?)",
    ),
    (
        "sender-not-an-address",
        '[email]\nfrom = "Platform Notices"\n',
        2,
        "email.from",
        "'Platform Notices' is not an email address",
    ),
    (
        "path-as-number",
        "migrations_file = 5\n",
        1,
        "migrations_file",
        "expected a path in quotes, got 5",
    ),
    (
        "empty-product-name",
        '[dashboard]\nproduct_name = ""\n',
        2,
        "dashboard.product_name",
        "empty",
    ),
    (
        "password-in-the-file",
        f'[email.smtp]\nhost = "relay.example"\npassword = "{SECRET}"\n',
        3,
        "email.smtp.password",
        "secrets are never written in migctl.toml; export it in an environment variable "
        "and give that variable's name as password_env",
    ),
    (
        "api-key-in-the-file",
        f'[email.sendgrid]\napi_key = "{SECRET}"\n',
        2,
        "email.sendgrid.api_key",
        "give that variable's name as api_key_env",
    ),
    (
        "secret-pasted-into-the-env-name",
        f'[email.smtp]\nhost = "relay.example"\npassword_env = "{SECRET}"\n',
        3,
        "email.smtp.password_env",
        "must be the name of an environment variable",
    ),
]


@pytest.fixture
def operator(tmp_path: Path, repo_root: Path) -> Path:
    """The operator's own folder with the shipped migrations.yaml; configs go in ops/."""
    (tmp_path / "migrations.yaml").write_text((repo_root / "migrations.yaml").read_text())
    (tmp_path / "ops").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_a_bad_config_is_one_located_message(
    runner: Any, operator: Path, text: str, line: int, key: str, message: str
) -> None:
    cfg = operator / "ops" / "migctl.toml"
    cfg.write_text(text)
    r = runner("--config", "ops/migctl.toml", "validate")
    assert r.exit_code == 1, r.output
    problems = [ln.strip() for ln in r.stderr.splitlines() if ln.startswith("  ")]
    assert len(problems) == 1, r.stderr
    assert problems[0].startswith(f"ops/migctl.toml:{line}: {key}: "), problems
    assert message in problems[0]
    assert "Input should" not in r.stderr and "Traceback" not in r.output
    assert SECRET not in r.output


def test_every_problem_is_listed_at_once_in_file_order(runner: Any, operator: Path) -> None:
    (operator / "migctl.toml").write_text(
        'environment = "prod"\n'
        "[email]\n"
        'provider = "file"\n'
        "concurrency = 0\n"
        "[email.smtp]\n"
        "port = 99999\n"
        "[dashboard]\n"
        'ulr = "https://d.example"\n'
    )
    r = runner("validate", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    got = [(p["file"], p["line"], p["field"]) for p in doc["problems"]]
    assert got == [
        ("migctl.toml", 1, "environment"),
        ("migctl.toml", 4, "email.concurrency"),
        ("migctl.toml", 6, "email.smtp.port"),
        ("migctl.toml", 8, "dashboard.ulr"),
    ]


def test_a_bad_config_stops_sync_before_anything_is_written(runner: Any, operator: Path) -> None:
    (operator / "migctl.toml").write_text("[email.smtp]\nport = 99999\n")
    r = runner("--db", "state/migctl.db", "sync")
    assert r.exit_code == 1
    assert "migctl.toml:2: email.smtp.port: must be at most 65535" in r.stderr
    assert not (operator / "state").exists()
    assert sorted(p.name for p in operator.iterdir()) == ["migctl.toml", "migrations.yaml", "ops"]


def test_the_shipped_example_loads_with_paths_beside_it(runner: Any, repo_root: Path) -> None:
    example = repo_root / "examples" / "migctl.toml"
    r = runner("--config", example, "validate", "--file", repo_root / "migrations.yaml")
    assert r.exit_code == 0, r.output
    config = load_config(example, explicit=True)
    assert config.email.provider == "file"
    assert config.email.file.directory == example.parent / "outbox"
    assert config.dashboard.url == "https://dashboard.platform.example/migrations"


WRONG = "## When the file is wrong"


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("doc", ["configuration.md", "providers.md"])
def test_every_toml_example_in_the_docs_is_valid(tmp_path: Path, repo_root: Path, doc: str) -> None:
    text = (repo_root / "docs" / doc).read_text()
    wrong = _toml_blocks(text.split(WRONG)[1])[:1] if WRONG in text else []
    blocks = [block for block in _toml_blocks(text) if block not in wrong]
    assert blocks
    for n, block in enumerate(blocks):
        path = tmp_path / f"example{n}.toml"
        path.write_text(block)
        load_config(path, explicit=True)  # raises with the located problem if the docs drift


def test_the_docs_show_what_migctl_says_about_a_wrong_file(runner: Any, repo_root: Path) -> None:
    section = (repo_root / "docs" / "configuration.md").read_text().split(WRONG)[1]
    Path("migctl.toml").write_text(_toml_blocks(section)[0])
    shown = re.findall(r"```text\n(.*?)```", section, flags=re.DOTALL)[0]
    r = runner("sync")
    assert r.exit_code == 1
    assert r.stderr == shown


def test_every_key_of_the_reference_is_documented(repo_root: Path) -> None:
    """The reference table in docs/configuration.md names every key the schema accepts."""
    text = (repo_root / "docs" / "configuration.md").read_text()

    def walk(model: type[BaseModel], at: str) -> list[tuple[str, str]]:
        out = []
        for name, field in model.model_fields.items():
            key = field.alias or name
            # An optional table (`[platform]`) is documented like any other.
            tables = [
                t
                for t in (field.annotation, *typing.get_args(field.annotation))
                if isinstance(t, type) and issubclass(t, BaseModel)
            ]
            if tables:
                inner = tables[0]
                out += walk(inner, f"{at}.{key}" if at else key)
            else:
                out.append((at, key))
        return out

    missing = []
    for table, key in walk(Config, ""):
        cell = f"`[{table}] {key}`" if table else f"`{key}`"
        if cell not in text:
            missing.append(cell)
    assert missing == []
    assert len(walk(Config, "")) > 25  # the walk saw the whole schema


def test_defaults_are_the_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "migctl.toml"
    path.write_text("# nothing set\n")
    loaded = load_config(path, explicit=True)
    # Written once: an empty file gives the model's defaults, the outbox beside the file and
    # the definitions in the working folder (where cron runs).
    defaults = Config()
    assert loaded.migrations_file == defaults.migrations_file == Path("migrations.yaml")
    assert loaded.email.file.directory == tmp_path / "outbox"
    assert loaded.model_copy(update={"email": defaults.email}) == defaults
    assert loaded.email.model_copy(update={"file": defaults.email.file}) == defaults.email
    assert load_config(tmp_path / "absent.toml") == defaults
    assert (defaults.email.provider, defaults.email.concurrency, defaults.email.max_attempts) == (
        "console",
        1,
        5,
    )
    assert defaults.email.smtp.effective_port == 587


def test_a_full_config_loads_every_value(tmp_path: Path) -> None:
    text = """
environment = "production"
migrations_file = "defs/migrations.yaml"
templates_dir = "templates"
dashboard = { url = "https://d.example/m", product_name = "Example Cloud" }

[enforcement]
max_accounts_without_confirm = 0

[email]
provider = "smtp"
from = "Platform <n@platform.example>"
reply_to = "support@platform.example"
rate_per_second = 14
daily_quota = 50000
concurrency = 8
max_attempts = 3

[email.smtp]
host = "relay.example"
port = 2525
security = "ssl"
username = "migctl"
password_env = "MIGCTL_SMTP_PASSWORD"
timeout = 12.5
local_hostname = "migctl.platform.example"
ca_file = "relay-ca.pem"
"""
    path = tmp_path / "migctl.toml"
    path.write_text(text)
    config = load_config(path, explicit=True)
    assert config.environment == "production"
    assert config.migrations_file == tmp_path / "defs" / "migrations.yaml"
    assert config.templates_dir == tmp_path / "templates"
    assert config.dashboard.product_name == "Example Cloud"
    assert config.enforcement.max_accounts_without_confirm == 0
    email = config.email
    assert (email.from_addr, email.rate_per_second, email.daily_quota) == (
        "Platform <n@platform.example>",
        14.0,
        50000,
    )
    assert isinstance(email.rate_per_second, float)
    assert (email.concurrency, email.max_attempts) == (8, 3)
    smtp = email.smtp
    assert (smtp.host, smtp.effective_port, smtp.security, smtp.timeout) == (
        "relay.example",
        2525,
        "ssl",
        12.5,
    )
    assert smtp.ca_file == tmp_path / "relay-ca.pem"
    assert tomllib.loads(text)["email"]["smtp"]["password_env"] == smtp.password_env
