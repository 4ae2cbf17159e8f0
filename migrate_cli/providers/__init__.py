"""Email providers: a registry of name -> adapter class, imported lazily."""

from __future__ import annotations

import importlib

from migrate_cli.providers.base import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    SendResult,
    SendStatus,
)

# Built-in adapters are registered exactly like external ones would be: a dotted path.
REGISTRY: dict[str, str] = {
    "console": "migrate_cli.providers.console:ConsoleProvider",
    "file": "migrate_cli.providers.file:FileProvider",
    "null": "migrate_cli.providers.null:NullProvider",
    "smtp": "migrate_cli.providers.smtp:SmtpProvider",
    "ses": "migrate_cli.providers.ses:SesProvider",
    "sendgrid": "migrate_cli.providers.sendgrid:SendgridProvider",
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
    return cls


__all__ = [
    "REGISTRY",
    "OutgoingEmail",
    "Provider",
    "ProviderConfigError",
    "SendResult",
    "SendStatus",
    "provider_class",
]
