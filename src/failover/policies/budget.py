"""The retry budget of one provider (Envoy's retry budgets, the SRE book's per-client budget).

Retries help a provider that fails now and then; during an outage they multiply the load on a
provider that is already struggling (every caller tries `max_attempts` times). The budget bounds
that: within a sliding window, a retry is allowed only while

    retries < max(min_retries, ratio × first attempts)

where *first attempts* are the calls that reached this provider (attempt number 1 on it) and
*retries* the later attempts on it that the budget allowed. With the defaults (ratio 0.2,
min_retries 3, window 10 s) retries add at most 20 % to the load this router sends, plus 3 per
window so that a lone caller can still retry.

Sans-IO apart from a lock: every method takes `now` (time.monotonic()). The window is a ring of
`SLOTS` buckets, so each call is O(1) and the memory constant; a count leaves the window in steps
of `window / SLOTS` seconds.
"""

from __future__ import annotations

import threading

from failover.config import RetryBudgetSettings

SLOTS = 10


class RetryBudget:
    """Shared by every call of one router to one provider; thread-safe."""

    __slots__ = ("_epoch", "_lock", "_requests", "_retries", "_slot_requests", "_slot_retries", "_width",
                 "settings")

    def __init__(self, settings: RetryBudgetSettings) -> None:
        self._lock = threading.Lock()
        self._configure(settings)

    def _configure(self, settings: RetryBudgetSettings) -> None:
        self.settings = settings
        self._width = settings.window / SLOTS
        self._slot_requests = [0] * SLOTS
        self._slot_retries = [0] * SLOTS
        self._requests = 0  # sums over the ring
        self._retries = 0
        self._epoch: int | None = None  # index of the newest slot, in units of `_width` since time 0

    def update(self, settings: RetryBudgetSettings) -> None:
        """New settings (a config reload). The history is kept unless the window changed."""
        with self._lock:
            if settings.window != self.settings.window:
                self._configure(settings)
            else:
                self.settings = settings

    def _advance(self, now: float) -> int:
        """Expire the slots that left the window; the index of the slot `now` falls in."""
        epoch = int(now // self._width)
        last = self._epoch
        if last is None or epoch - last >= SLOTS:
            self._slot_requests = [0] * SLOTS
            self._slot_retries = [0] * SLOTS
            self._requests = self._retries = 0
        elif epoch > last:
            for e in range(last + 1, epoch + 1):
                i = e % SLOTS
                self._requests -= self._slot_requests[i]
                self._retries -= self._slot_retries[i]
                self._slot_requests[i] = self._slot_retries[i] = 0
        else:
            epoch = last  # the clock never goes back; a caller's slightly older `now` counts as current
        self._epoch = epoch
        return epoch % SLOTS

    def request(self, now: float) -> None:
        """A first attempt was sent to the provider."""
        with self._lock:
            i = self._advance(now)
            self._slot_requests[i] += 1
            self._requests += 1

    def try_retry(self, now: float) -> bool:
        """May one more retry be sent now? If so, it is counted (the caller must send it)."""
        with self._lock:
            i = self._advance(now)
            s = self.settings
            if self._retries >= max(s.min_retries, s.ratio * self._requests):
                return False
            self._slot_retries[i] += 1
            self._retries += 1
            return True

    def counts(self, now: float) -> tuple[int, int]:
        """(first attempts, retries) in the window: for tests and `failover status`."""
        with self._lock:
            self._advance(now)
            return self._requests, self._retries

    def __repr__(self) -> str:
        s = self.settings
        return f"<RetryBudget ratio={s.ratio:g} min_retries={s.min_retries} window={s.window:g}s>"
