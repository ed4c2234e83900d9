"""The retry budget of one provider (Envoy's retry budgets, the SRE book's per-client budget).

Retries help a provider that fails now and then; during an outage they multiply the load on a
provider that is already struggling (every caller tries `max_attempts` times). The budget bounds
that: within a sliding window, a retry is allowed only while

    retries < max(min_retries, ratio × first attempts)

where *first attempts* are the calls that reached this provider (attempt number 1 on it) and
*retries* the later attempts on it that the budget allowed. With the defaults (ratio 0.2,
min_retries 3, window 10 s) retries add at most 20 % to the load this router sends, plus 3 per
window so that a lone caller can still retry.

Sans-IO apart from a lock: every method takes `now` (time.monotonic()); the window is
`policies.window.SlidingCounts`.
"""

from __future__ import annotations

import threading

from failover.config import RetryBudgetSettings
from failover.policies.window import SlidingCounts

_REQUESTS, _RETRIES = 0, 1


class RetryBudget:
    """Shared by every call of one router to one provider; thread-safe."""

    __slots__ = ("_counts", "_lock", "settings")

    def __init__(self, settings: RetryBudgetSettings) -> None:
        self._lock = threading.Lock()
        self.settings = settings
        self._counts = SlidingCounts(settings.window, 2)

    def update(self, settings: RetryBudgetSettings) -> None:
        """New settings (a config reload). The history is kept unless the window changed."""
        with self._lock:
            if settings.window != self.settings.window:
                self._counts = SlidingCounts(settings.window, 2)
            self.settings = settings

    def request(self, now: float) -> None:
        """A first attempt was sent to the provider."""
        with self._lock:
            self._counts.add(now, _REQUESTS)

    def try_retry(self, now: float) -> bool:
        """May one more retry be sent now? If so, it is counted (the caller must send it)."""
        with self._lock:
            counts = self._counts
            counts.advance(now)
            s = self.settings
            if counts.totals[_RETRIES] >= max(s.min_retries, s.ratio * counts.totals[_REQUESTS]):
                return False
            counts.add(now, _RETRIES)
            return True

    def counts(self, now: float) -> tuple[int, int]:
        """(first attempts, retries) in the window: for tests and `failover status`."""
        with self._lock:
            self._counts.advance(now)
            requests, retries = self._counts.totals
            return requests, retries

    def __repr__(self) -> str:
        s = self.settings
        return f"<RetryBudget ratio={s.ratio:g} min_retries={s.min_retries} window={s.window:g}s>"
