"""A provider of the chain with its policies (`Route`), built once per router and shared by its calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from failover.policies.hedge import FirstChunks
from failover.request import CAPABILITIES

if TYPE_CHECKING:
    from failover.config import ProviderConfig
    from failover.policies.breaker import Breaker
    from failover.policies.budget import RetryBudget
    from failover.policies.retry import RetryPolicy
    from failover.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Route:
    """One provider of the chain with its policies; built once per router."""

    provider: Provider
    config: ProviderConfig
    retry: RetryPolicy
    breaker: Breaker
    budget: RetryBudget | None = None  # the provider's retry budget, shared by the router's calls
    capabilities: frozenset[str] = frozenset(CAPABILITIES)  # what requests it can take (DESIGN §2)
    first_chunks: FirstChunks | None = None  # its recent first-chunk times (hedge: after: auto)

    @property
    def name(self) -> str:
        return self.provider.name
