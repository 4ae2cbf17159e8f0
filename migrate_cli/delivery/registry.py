"""Email providers: a registry of name -> adapter class, imported lazily."""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any

from migrate_cli.delivery.base import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    SendResult,
    SendStatus,
)

# Built-in adapters are registered exactly like external ones would be: a dotted path.
REGISTRY: dict[str, str] = {
    "console": "migrate_cli.delivery.console:ConsoleProvider",
    "file": "migrate_cli.delivery.file:FileProvider",
    "null": "migrate_cli.delivery.null:NullProvider",
    "smtp": "migrate_cli.delivery.smtp:SmtpProvider",
    "ses": "migrate_cli.delivery.ses:SesProvider",
    "sendgrid": "migrate_cli.delivery.sendgrid:SendgridProvider",
}


def provider_class(name: str) -> type[Provider]:
    """Resolve a provider name to its class (SDKs are imported only when used)."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ProviderConfigError(
            name, f"unknown provider {name!r}; choose one of {', '.join(REGISTRY)}"
        ) from None
    module_name, _, attr = target.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), attr)
    if name == "ses":
        _quiet_botocore()
    return cls


_TOKEN_PATTERNS = (
    # header dicts and canonical requests: X-Amz-Security-Token / x-amz-security-token
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=,]\s*b?['\"]?)([^'\"\s,}\n]+)"),
    re.compile(r"(?i)(signature=)([0-9a-f]{16,})"),
)


def _redact(text: str) -> str:
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def _quiet_botocore() -> None:
    """botocore logs signed request headers (the session token among them) at DEBUG.

    Whoever turns on debug logging for the whole process must not find credentials in the
    log: botocore records are redacted as they are created (a filter on one logger would miss
    its many child loggers), and botocore stays at INFO unless the operator chose a level.
    """
    sdk = logging.getLogger("botocore")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.INFO)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_migctl_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(("botocore", "urllib3")):
            message = record.getMessage()
            redacted = _redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return record

    factory._migctl_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


__all__ = [
    "REGISTRY",
    "OutgoingEmail",
    "Provider",
    "ProviderConfigError",
    "SendResult",
    "SendStatus",
    "provider_class",
]
