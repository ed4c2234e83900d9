"""Provider types by their YAML `type`."""

from __future__ import annotations

from failover.config import ProviderConfig
from failover.providers.anthropic import AnthropicProvider
from failover.providers.base import Provider
from failover.providers.openai import OpenAIProvider

PROVIDER_TYPES: dict[str, type[Provider]] = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}


def make_provider(config: ProviderConfig) -> Provider:
    return PROVIDER_TYPES[config.type](config)


__all__ = ["PROVIDER_TYPES", "Provider", "make_provider"]
