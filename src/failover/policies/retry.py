"""Full-jitter exponential backoff that honours Retry-After as a floor."""

from __future__ import annotations

import random
from dataclasses import dataclass

from failover.config import RetrySettings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    settings: RetrySettings

    def allows(self, attempts_made: int) -> bool:
        return attempts_made < self.settings.max_attempts

    def backoff(self, attempts_made: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds to wait before the next attempt on the same provider, or None when the provider
        asked for a wait longer than `max_retry_after` (then failing over beats sleeping)."""
        s = self.settings
        if retry_after is not None and retry_after > s.max_retry_after:
            return None
        cap = min(s.max_backoff, s.initial_backoff * s.multiplier ** (attempts_made - 1))
        delay = rng.uniform(0.0, cap)
        return delay if retry_after is None else max(delay, retry_after)
