"""Email providers by name: the ``migctl.providers`` entry-point group, loaded lazily."""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from migrate_cli.config import PROVIDER_GROUP
from migrate_cli.delivery.base import (
    OutgoingEmail,
    Provider,
    ProviderConfigError,
    SendResult,
    SendStatus,
)

# Replacements for this process only, name -> "module:Class", consulted before the entry
# points (tests swap a provider without installing a distribution). Empty in normal use.
REGISTRY: dict[str, str] = {}


def _registered() -> dict[str, list[EntryPoint]]:
    # Built-in providers are registered exactly like another package registers its own:
    # [project.entry-points."migctl.providers"] in pyproject.toml (docs/providers.md).
    found: dict[str, list[EntryPoint]] = {}
    for entry in entry_points(group=PROVIDER_GROUP):
        found.setdefault(entry.name, []).append(entry)
    return found


def available_providers() -> list[str]:
    """Every provider name this installation knows, sorted."""
    return sorted({*_registered(), *REGISTRY})


def _origin(entry: EntryPoint) -> str:
    dist = entry.dist
    where = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"{where} ({entry.value})"


def provider_class(name: str) -> type[Provider]:
    """Resolve a provider name to its class; its module (and SDK) is imported only now."""
    if name in REGISTRY:
        module_name, _, attr = REGISTRY[name].partition(":")
        override: type[Provider] = getattr(importlib.import_module(module_name), attr)
        return override
    registered = _registered()
    entries = registered.get(name, [])
    if not registered:
        # Entry points are read from the installed metadata, which an old install lacks.
        raise ProviderConfigError(
            name,
            f"no provider is registered in the {PROVIDER_GROUP!r} entry-point group; "
            "reinstall migctl (pip install -e . in a checkout) so its metadata lists them",
        )
    if not entries:
        raise ProviderConfigError(
            name,
            f"unknown provider {name!r}; choose one of {', '.join(available_providers())} "
            f"(a provider package registers its name in the {PROVIDER_GROUP!r} entry-point group)",
        )
    if len(entries) > 1:
        claims = " and ".join(_origin(entry) for entry in entries)
        raise ProviderConfigError(
            name,
            f"the provider name {name!r} is registered twice, by {claims}; uninstall one of "
            "these distributions",
        )
    (entry,) = entries
    try:
        cls = entry.load()
    except (ImportError, AttributeError) as exc:
        raise ProviderConfigError(
            name, f"cannot load the provider from {_origin(entry)}: {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ProviderConfigError(
            name, f"{_origin(entry)} does not name a subclass of migctl's Provider"
        )
    return cls


__all__ = [
    "REGISTRY",
    "OutgoingEmail",
    "Provider",
    "ProviderConfigError",
    "SendResult",
    "SendStatus",
    "available_providers",
    "provider_class",
]
