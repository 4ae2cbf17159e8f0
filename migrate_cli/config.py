"""migctl.toml: the operator's configuration, validated strictly (unknown keys are errors)."""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from migrate_cli.errors import InputError, Problem

# Providers, built-in or from another package, register in this entry-point group.
PROVIDER_GROUP = "migctl.providers"
ENVIRONMENTS = ("development", "staging", "production")


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int | None = None  # default by security: 587 starttls, 465 ssl, 25 none
    security: str = "starttls"
    username: str | None = None
    password_env: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None
    ca_file: str | None = None  # extra CA bundle (private relays, tests)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"starttls": 587, "ssl": 465, "none": 25}[self.security]


@dataclass(frozen=True)
class SesConfig:
    region: str = "us-east-1"
    configuration_set: str | None = None
    endpoint_url: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class SendgridConfig:
    api_key_env: str = "SENDGRID_API_KEY"
    host: str = "https://api.sendgrid.com"
    timeout: float = 30.0


@dataclass(frozen=True)
class FileConfig:
    directory: Path = Path("outbox")


@dataclass(frozen=True)
class EmailConfig:
    provider: str = "console"
    from_addr: str = "migctl@example.invalid"  # development default; set [email] from
    reply_to: str | None = None
    rate_per_second: float | None = None
    daily_quota: int | None = None
    concurrency: int = 1
    max_attempts: int = 5
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    ses: SesConfig = field(default_factory=SesConfig)
    sendgrid: SendgridConfig = field(default_factory=SendgridConfig)
    file: FileConfig = field(default_factory=FileConfig)


@dataclass(frozen=True)
class Config:
    """The whole configuration; defaults make a safe development setup."""

    path: Path | None = None
    environment: str = "development"
    migrations_file: Path = Path("migrations.yaml")
    templates_dir: Path | None = None
    dashboard_url: str = "https://dashboard.example.com"
    product_name: str = "Platform"  # shown in email headers and subjects
    max_accounts_without_confirm: int = 10_000
    email: EmailConfig = field(default_factory=EmailConfig)

    def secret(self, env_name: str | None) -> str | None:
        """Read a secret from the environment variable the config names (never from the file)."""
        if not env_name:
            return None
        return os.environ.get(env_name)


_SCHEMA: dict[str, Any] = {
    "environment": str,
    "migrations_file": str,
    "templates_dir": str,
    "dashboard": {"url": str, "product_name": str},
    "enforcement": {"max_accounts_without_confirm": int},
    "email": {
        "provider": str,
        "from": str,
        "reply_to": str,
        "rate_per_second": (int, float),
        "daily_quota": int,
        "concurrency": int,
        "max_attempts": int,
        "smtp": {
            "host": str,
            "port": int,
            "security": str,
            "username": str,
            "password_env": str,
            "timeout": (int, float),
            "local_hostname": str,
            "ca_file": str,
        },
        "ses": {
            "region": str,
            "configuration_set": str,
            "endpoint_url": str,
            "timeout": (int, float),
        },
        "sendgrid": {"api_key_env": str, "host": str, "timeout": (int, float)},
        "file": {"directory": str},
    },
}


def _check(
    data: dict[str, Any],
    schema: dict[str, Any],
    prefix: str,
    file: str,
    problems: list[Problem],
    lines: dict[str, int],
) -> None:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in schema:
            problems.append(
                Problem(
                    file,
                    lines.get(name),
                    name,
                    f"unknown key; allowed: {', '.join(sorted(schema))}",
                )
            )
            continue
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                problems.append(Problem(file, lines.get(name), name, "expected a table"))
            else:
                _check(value, expected, name + ".", file, problems, lines)
        elif isinstance(value, bool) or not isinstance(value, expected):
            want = (
                "a number"
                if expected == (int, float)
                else {str: "text", int: "a whole number"}[expected]
            )
            problems.append(Problem(file, lines.get(name), name, f"expected {want}, got {value!r}"))


def _key_lines(text: str) -> dict[str, int]:
    # tomllib gives no positions; a light scan maps dotted keys to lines for messages.
    lines: dict[str, int] = {}
    table = ""
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            table = line.strip("[]").strip()
            lines.setdefault(table, n)
        elif "=" in line and not line.startswith("#"):
            key = line.split("=", 1)[0].strip().strip('"')
            lines.setdefault(f"{table}.{key}" if table else key, n)
    return lines


def load_config(path: Path | None, *, explicit: bool = False) -> Config:
    """Load migctl.toml (or defaults when absent and not explicitly asked for)."""
    if path is None or (not explicit and not path.exists()):
        return Config()
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError([Problem(name, None, None, "config file not found")]) from None
    except UnicodeDecodeError:
        raise InputError([Problem(name, None, None, "config file is not valid UTF-8")]) from None
    except OSError as exc:
        raise InputError([Problem(name, None, None, f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise InputError([Problem(name, line, None, f"invalid TOML: {exc}")]) from None
    except RecursionError:
        raise InputError([Problem(name, None, None, "invalid TOML: nested too deeply")]) from None
    lines = _key_lines(text)
    problems: list[Problem] = []
    _check(data, _SCHEMA, "", name, problems, lines)
    if problems:
        raise InputError(problems, f"{name}: {len(problems)} problem(s) in the configuration")
    base = path.parent

    def where(key: str) -> int | None:
        return lines.get(key)

    env = data.get("environment", "development")
    if env not in ENVIRONMENTS:
        problems.append(
            Problem(
                name,
                where("environment"),
                "environment",
                f"{env!r} is not one of {', '.join(ENVIRONMENTS)}",
            )
        )
    email = data.get("email", {})
    provider = email.get("provider", "console")
    providers = sorted({entry.name for entry in entry_points(group=PROVIDER_GROUP)})
    if provider not in providers:
        problems.append(
            Problem(
                name,
                where("email.provider"),
                "email.provider",
                f"{provider!r} is not one of {', '.join(providers)}",
            )
        )
    smtp = email.get("smtp", {})
    security = smtp.get("security", "starttls")
    if security not in ("starttls", "ssl", "none"):
        problems.append(
            Problem(
                name,
                where("email.smtp.security"),
                "email.smtp.security",
                f"{security!r} is not one of starttls, ssl, none",
            )
        )
    for key, low in (
        ("rate_per_second", 0),
        ("daily_quota", 0),
        ("concurrency", 0),
        ("max_attempts", 0),
    ):
        if key in email and email[key] <= low:
            problems.append(
                Problem(name, where(f"email.{key}"), f"email.{key}", "must be greater than 0")
            )
    for key in ("rate_per_second",):
        if key in email and not math.isfinite(email[key]):
            problems.append(
                Problem(name, where(f"email.{key}"), f"email.{key}", "must be a finite number")
            )
    for table in ("smtp", "ses", "sendgrid"):
        value = email.get(table, {}).get("timeout")
        if value is not None and not (math.isfinite(value) and 0 < value <= 600):
            problems.append(
                Problem(
                    name,
                    where(f"email.{table}.timeout"),
                    f"email.{table}.timeout",
                    f"must be a number of seconds above 0 and at most 600, got {value!r}",
                )
            )
    if email.get("concurrency", 1) > 64:
        problems.append(
            Problem(name, where("email.concurrency"), "email.concurrency", "must be at most 64")
        )
    for key in ("from", "reply_to"):
        value = email.get(key)
        if value is not None and ("@" not in value or any(ch in value for ch in "\r\n")):
            problems.append(
                Problem(
                    name,
                    where(f"email.{key}"),
                    f"email.{key}",
                    f"{value!r} is not an email address",
                )
            )
    limit = data.get("enforcement", {}).get("max_accounts_without_confirm", 10_000)
    if limit < 0:
        problems.append(
            Problem(
                name,
                where("enforcement.max_accounts_without_confirm"),
                "enforcement.max_accounts_without_confirm",
                "must be 0 or more",
            )
        )
    if problems:
        raise InputError(problems, f"{name}: {len(problems)} problem(s) in the configuration")

    def opt_path(value: str | None) -> Path | None:
        return None if value is None else (base / value)

    return Config(
        path=path,
        environment=env,
        migrations_file=opt_path(data.get("migrations_file")) or Path("migrations.yaml"),
        templates_dir=opt_path(data.get("templates_dir")),
        dashboard_url=data.get("dashboard", {}).get("url", Config.dashboard_url),
        product_name=data.get("dashboard", {}).get("product_name", Config.product_name),
        max_accounts_without_confirm=limit,
        email=EmailConfig(
            provider=provider,
            from_addr=email.get("from", EmailConfig.from_addr),
            reply_to=email.get("reply_to"),
            rate_per_second=float(email["rate_per_second"]) if "rate_per_second" in email else None,
            daily_quota=email.get("daily_quota"),
            concurrency=email.get("concurrency", 1),
            max_attempts=email.get("max_attempts", 5),
            smtp=SmtpConfig(
                host=smtp.get("host", "localhost"),
                port=smtp.get("port"),
                security=security,
                username=smtp.get("username"),
                password_env=smtp.get("password_env"),
                timeout=float(smtp.get("timeout", 30.0)),
                local_hostname=smtp.get("local_hostname"),
                ca_file=str(base / smtp["ca_file"]) if "ca_file" in smtp else None,
            ),
            ses=SesConfig(**email.get("ses", {})),
            sendgrid=SendgridConfig(**email.get("sendgrid", {})),
            file=FileConfig(directory=base / email.get("file", {}).get("directory", "outbox")),
        ),
    )
