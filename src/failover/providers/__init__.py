"""Provider types by their YAML `type`."""

from __future__ import annotations

from collections.abc import Iterable

from failover.config import Config, ProviderConfig
from failover.providers.anthropic import AnthropicProvider
from failover.providers.base import Provider
from failover.providers.openai import OpenAIProvider

PROVIDER_TYPES: dict[str, type[Provider]] = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}


def make_provider(config: ProviderConfig) -> Provider:
    return PROVIDER_TYPES[config.type](config)


def unknown_params(kind: str, params: Iterable[str]) -> list[str]:
    """The `params:` keys the installed SDK of this provider type does not accept."""
    accepted = PROVIDER_TYPES[kind].accepted_params()
    return sorted(key for key in params if key not in accepted)


def check_params(config: Config) -> None:
    """A `ConfigError` (file, line, key path) for `params:` keys the installed SDK's create() does not
    accept: each would fail every call with a TypeError, so it is said at load, not at request time.
    The SDK is imported only for providers that set `params`."""
    for index, p in enumerate(config.providers):
        unknown = unknown_params(p.type, p.params) if p.params else []
        if unknown:
            raise config.error(("providers", index, "params"),
                               f"{', '.join(repr(k) for k in unknown)} not accepted by the installed {p.type} SDK's "
                               "create() (put raw request fields under params.extra_body)")


__all__ = ["PROVIDER_TYPES", "Provider", "check_params", "make_provider", "unknown_params"]
