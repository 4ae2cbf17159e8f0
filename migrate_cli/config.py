"""migctl.toml: the operator's configuration, one strict pydantic schema with located errors."""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from migrate_cli.errors import InputError, Problem, did_you_mean
from migrate_cli.timeutil import parse_duration
from migrate_cli.tomlkeys import KeyPath, key_lines, line_of
from migrate_cli.vocabulary import AlertEvent

# Every provider, built-in or from another distribution, registers in this entry-point group.
PROVIDER_GROUP = "migctl.providers"
MAX_SECONDS = 600  # a network timeout above ten minutes is a typo, not a setting
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    # Paths in the file are relative to the file's folder, not to wherever cron starts us.
    base = info.context.get("base") if isinstance(info.context, dict) else None
    return value if base is None else base / value


def _address(value: str) -> str:
    if "@" not in value or any(ch in value for ch in "\r\n"):
        raise PydanticCustomError(
            "address", "{value} is not an email address", {"value": repr(value)}
        )
    return value


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None
    return value


def _env_name(value: str) -> str:
    # The value is not echoed: an operator may have pasted the secret itself here.
    if not _ENV_NAME.fullmatch(value):
        raise PydanticCustomError(
            "env_name",
            "must be the name of an environment variable (letters, digits and _), "
            "not the secret itself",
        )
    return value


def _provider(value: str) -> str:
    known = provider_names()
    if value not in known:
        hint = did_you_mean(value, known, cutoff=0.75)
        raise PydanticCustomError(
            "provider",
            "{value} is not a provider{hint}; choose one of {known}",
            {"value": repr(value), "hint": hint, "known": ", ".join(known)},
        )
    return value


def provider_names() -> list[str]:
    """The providers installed distributions register, migctl's own included."""
    return sorted({ep.name for ep in entry_points(group=PROVIDER_GROUP)})


ConfigPath = Annotated[Path, Field(strict=False), AfterValidator(_relative_to_config)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Address = Annotated[str, AfterValidator(_address)]
Text = Annotated[str, Field(min_length=1)]
Duration = Annotated[str, AfterValidator(_duration)]  # 72h, 3d, 90m (kept as written)


def _table() -> Any:
    # A table left out is an empty table, validated like a written one: its defaults pass the
    # same checks, and its paths join the file's folder.
    return Field(default_factory=dict, validate_default=True)


class _Table(BaseModel):
    # strict: a quoted "25" is not a port; forbid: a misspelled key is an error, never ignored.
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, validate_by_name=True, validate_by_alias=True
    )


class SmtpConfig(_Table):
    host: str = ""  # required when provider = "smtp" (EmailConfig checks)
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # None: by security
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: Text | None = None
    password_env: EnvName | None = None
    timeout: Seconds = 30.0
    local_hostname: Text | None = None  # the name sent in EHLO
    ca_file: ConfigPath | None = None  # extra CA bundle (private relays, tests)

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"starttls": 587, "ssl": 465, "none": 25}[self.security]


class SesConfig(_Table):
    region: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")] = "us-east-1"
    configuration_set: Text | None = None
    endpoint_url: Text | None = None
    timeout: Seconds = 30.0


class SendgridConfig(_Table):
    api_key_env: EnvName = "SENDGRID_API_KEY"
    host: Text = "https://api.sendgrid.com"
    timeout: Seconds = 30.0


class FileConfig(_Table):
    directory: ConfigPath = Field(Path("outbox"), validate_default=True)  # beside the file


class EmailConfig(_Table):
    provider: Annotated[str, AfterValidator(_provider)] = "console"
    from_addr: Address = Field("migctl@example.invalid", alias="from")  # development default
    reply_to: Address | None = None
    rate_per_second: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    daily_quota: Annotated[int, Field(gt=0)] | None = None  # 0 would read as "unlimited"
    concurrency: Annotated[int, Field(ge=1, le=64)] = 1
    max_attempts: Annotated[int, Field(ge=1)] = 5  # tries of one notice within one run
    retry_for: Duration = "72h"  # transient failures for this long, across runs, then failed
    retry_backoff: Seconds = 1.0  # the first retry's delay ceiling; doubles per attempt
    breaker: Annotated[int, Field(ge=2)] = 10  # same rejection for N recipients in a row: stop
    smtp: SmtpConfig = _table()
    ses: SesConfig = _table()
    sendgrid: SendgridConfig = _table()
    file: FileConfig = _table()

    @property
    def retry_window(self) -> timedelta:
        """How long a notice may keep failing transiently before it is failed."""
        return parse_duration(self.retry_for)

    @model_validator(mode="after")
    def _smtp_needs_a_host(self) -> EmailConfig:
        # Without one we would quietly try localhost and retry a refused connection for days.
        if self.provider == "smtp" and not self.smtp.host:
            raise PydanticCustomError(
                "required_with",
                'required with provider = "smtp"',
                {"key": ("smtp", "host"), "located_at": ("provider",)},
            )
        return self


class DashboardConfig(_Table):
    url: Text = "https://dashboard.example.com"  # every notice links here (read-only page)
    product_name: Text = "Platform"  # shown in email headers and subjects


class EnforcementConfig(_Table):
    max_accounts_without_confirm: Annotated[int, Field(ge=0)] = 10_000


class AlertsConfig(_Table):
    webhook_url_env: EnvName | None = None  # the URL is a secret: only its variable is named
    on: list[Annotated[AlertEvent, Strict(False)]] = Field(default_factory=lambda: list(AlertEvent))
    timeout: Seconds = 10.0


class PlatformConfig(_Table):
    """The platform's endpoint for enrollment changes (docs/platform.md); secrets by env name."""

    webhook_url_env: EnvName = "MIGCTL_PLATFORM_WEBHOOK"
    signing_secret_env: EnvName = "MIGCTL_PLATFORM_SECRET"
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100  # events per POST
    timeout: Seconds = 10.0  # one POST; a timeout is retried like a 5xx
    retry_for: Duration = "72h"  # transient failures for longer than this stop `run` (exit 1)

    @property
    def retry_window(self) -> timedelta:
        return parse_duration(self.retry_for)


class FeedbackConfig(_Table):
    """Where delivery events come from (docs/providers.md) and what a soft bounce costs."""

    # Amazon SES events: configuration set -> SNS topic -> this SQS queue (`feedback pull`).
    sqs_queue_url: Text | None = None
    sqs_region: Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")] | None = (
        None  # None: the region of [email.ses]
    )
    endpoint_url: Text | None = None  # an SQS endpoint other than AWS's (tests, VPC endpoints)
    wait_seconds: Annotated[int, Field(ge=0, le=20)] = 20  # SQS long polling, per receive
    max_seconds: Seconds = 300.0  # one pull stops after this long even if events keep coming
    # SendGrid's signed Event Webhook (`feedback serve`): the public key, by variable name.
    sendgrid_verification_key_env: EnvName = "MIGCTL_SENDGRID_WEBHOOK_KEY"
    max_age: Duration = "10m"  # a signed request older (or newer) than this is refused
    max_body_bytes: Annotated[int, Field(ge=1024, le=100_000_000)] = 5_000_000
    # Soft bounces suppress an address only after this many within the window.
    soft_bounce_limit: Annotated[int, Field(ge=1)] = 3
    soft_bounce_window: Duration = "7d"

    @property
    def max_age_window(self) -> timedelta:
        return parse_duration(self.max_age)

    @property
    def soft_bounce_span(self) -> timedelta:
        return parse_duration(self.soft_bounce_window)


class Config(_Table):
    """The whole configuration; defaults make a safe development setup."""

    environment: Literal["development", "staging", "production"] = "development"
    migrations_file: ConfigPath = Path("migrations.yaml")  # default: in the working folder
    templates_dir: ConfigPath | None = None
    dashboard: DashboardConfig = _table()
    enforcement: EnforcementConfig = _table()
    email: EmailConfig = _table()
    alerts: AlertsConfig = _table()
    platform: PlatformConfig | None = None  # absent: events are recorded, not pushed
    feedback: FeedbackConfig = _table()

    def secret(self, env_name: str | None) -> str | None:
        """Read a secret from the environment variable the config names (never from the file)."""
        if not env_name:
            return None
        return os.environ.get(env_name)


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
    try:
        # by_name=False: the file spells keys as documented (`from`), never as Python does.
        return Config.model_validate(data, context={"base": path.parent}, by_name=False)
    except ValidationError as exc:
        lines = key_lines(text)
        problems = sorted(
            (_problem(name, lines, error) for error in exc.errors()),
            key=lambda p: (p.line or 0, p.field or ""),
        )
        raise InputError(
            problems, f"{name}: {len(problems)} problem(s) in the configuration"
        ) from None


# -- wording pydantic's errors the way the YAML loader words its own -----------------------------


def _problem(file: str, lines: dict[KeyPath, int], error: ErrorDetails) -> Problem:
    ctx = error.get("ctx") or {}
    loc = tuple(str(part) for part in error["loc"])
    # A rule about a key that is absent points at the key that made it necessary.
    path = loc + tuple(ctx.get("key", ()))
    line = line_of(lines, loc + tuple(ctx.get("located_at", ctx.get("key", ()))))
    key = path[-1] if path else ""
    return Problem(file, line, ".".join(path) or None, _message(path, key, error))


def _message(path: KeyPath, key: str, error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind == "extra_forbidden":
        return _unknown_key(path)
    if kind == "missing":
        return "required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a table ([{'.'.join(path)}]), got {_shown(key, value)}"
    if kind == "literal_error":
        choices = _choices(path)
        hint = did_you_mean(str(value), choices, cutoff=0.75) if isinstance(value, str) else ""
        return f"{_shown(key, value)} is not one of {', '.join(choices)}{hint}"
    if kind in _WANTED:
        return f"expected {_WANTED[kind]}, got {_shown(key, value)}"
    if kind in _BOUNDS:
        # A float field's bound arrives as 0.0; operators wrote 0.
        bounds = {
            k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in ctx.items()
        }
        return f"must be {_BOUNDS[kind].format(**bounds)}, got {_shown(key, value)}"
    if kind == "finite_number":
        return f"must be a finite number, got {_shown(key, value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{_shown(key, value)} is not a valid {key.replace('_', ' ')}"
    return error["msg"]  # our own validators' messages, and anything pydantic adds later


_WANTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "string_type": "text in quotes",
    "bool_type": "true or false",
    "path_type": "a path in quotes",
}
_BOUNDS = {
    "greater_than": "greater than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
}


def _shown(key: str, value: Any) -> str:
    if key.endswith("_env") or key in ("password", "api_key", "secret", "token"):
        return "a value not shown here"  # it may be a secret pasted into the wrong key
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(path: KeyPath) -> str:
    key, table = path[-1], path[:-1]
    model = _model_at(table)
    allowed = _keys(model) if model else []
    if f"{key}_env" in allowed:
        return (
            f"secrets are never written in migctl.toml; export it in an environment variable "
            f"and give that variable's name as {key}_env"
        )
    hint = did_you_mean(key, allowed, cutoff=0.75)
    if not hint:
        elsewhere = [t for t in _tables_with(key) if t != table]
        if elsewhere:
            place = f"in [{'.'.join(elsewhere[0])}]" if elsewhere[0] else "at the top level"
            hint = f" (it belongs {place})"
    return f"unknown key {key!r}{hint}; allowed here: {', '.join(allowed)}"


def _keys(model: type[BaseModel]) -> list[str]:
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field
    return None


def _table_type(field: FieldInfo) -> type[BaseModel] | None:
    for hint in (field.annotation, *typing.get_args(field.annotation)):  # `Table | None` too
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            return hint
    return None


def _model_at(table: KeyPath) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for key in table:
        field = _field(model, key) if model else None
        model = _table_type(field) if field else None
    return model


def _tables_with(key: str, model: type[BaseModel] = Config, at: KeyPath = ()) -> list[KeyPath]:
    found = [at] if _field(model, key) else []
    for name, field in model.model_fields.items():
        inner = _table_type(field)
        if inner:
            found += _tables_with(key, inner, (*at, field.alias or name))
    return found


def _choices(path: KeyPath) -> list[str]:
    model = _model_at(path[:-1])
    field = _field(model, path[-1]) if model else None
    if field is None:
        return []
    args: list[Any] = []
    for hint in (field.annotation, *typing.get_args(field.annotation)):
        if typing.get_origin(hint) is Literal:
            args += typing.get_args(hint)
    return [str(a) for a in args if not isinstance(a, types.NoneType)]
