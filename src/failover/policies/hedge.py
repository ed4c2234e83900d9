"""When to hedge: the delay after which an attempt that has sent no content gets a second attempt on
the next provider (DESIGN §10).

`after: <seconds>` is used as it is. `after: auto` follows the provider's recent first-chunk times
(`FirstChunks`, the last `SAMPLES` first chunks this process saw from it): their p95, but at most
`MEDIANS` times their median, at least `FLOOR`, at most half of `first_token`; with fewer than
`MIN_SAMPLES` seen, half of `first_token`. So a provider that is slow but healthy is hedged only on
its slowest few percent of calls; one slow on a tenth of them (whose p95 *is* the slow time) is
hedged at three medians; one that never answers costs a caller half its `first_token`, not all.
"""

from __future__ import annotations

import threading
from collections import deque

from failover.config import HedgeSettings

SAMPLES = 100
MIN_SAMPLES = 20
FLOOR = 0.05
MEDIANS = 3.0


class FirstChunks:
    """Recent first-chunk times of one provider (seconds from sending to the first content);
    shared by every call of a router, thread-safe. Percentiles are computed when asked."""

    __slots__ = ("_lock", "_samples")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: deque[float] = deque(maxlen=SAMPLES)

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def __len__(self) -> int:
        return len(self._samples)

    def percentile(self, p: float) -> float | None:
        with self._lock:
            ordered = sorted(self._samples)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def hedge_delay(settings: HedgeSettings, first_chunks: FirstChunks, first_token: float) -> float:
    """Seconds after sending an attempt to start its hedge."""
    if settings.after != "auto":
        return settings.after
    cap = first_token / 2
    if len(first_chunks) < MIN_SAMPLES:
        return cap
    p95, p50 = first_chunks.percentile(95), first_chunks.percentile(50)
    assert p95 is not None and p50 is not None
    return min(max(min(p95, MEDIANS * p50), FLOOR), cap)
