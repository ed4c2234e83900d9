"""Provider types by their YAML `type`."""

from __future__ import annotations

from collections.abc import Iterable

from failover.config import ProviderConfig
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


__all__ = ["PROVIDER_TYPES", "Provider", "make_provider", "unknown_params"]
