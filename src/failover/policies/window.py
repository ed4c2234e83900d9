"""Counts over a sliding time window: the retry budget's attempts and the breaker's verdicts.

The window is a ring of `SLOTS` buckets, so each call is O(1) and the memory constant; a count
leaves the window in steps of `window / SLOTS` seconds. Not thread-safe: its owner holds a lock.
Every method takes `now` (time.monotonic()), so it runs on a fake clock in tests.
"""

from __future__ import annotations

SLOTS = 10


class SlidingCounts:
    """`width` counters (say, calls and failures) summed over the last `window` seconds."""

    __slots__ = ("_epoch", "_slot_width", "_slots", "totals", "window")

    def __init__(self, window: float, width: int) -> None:
        self.window = window
        self._slot_width = window / SLOTS
        self._slots = [[0] * width for _ in range(SLOTS)]
        self.totals = [0] * width  # sums over the ring, as of the last `advance`
        self._epoch: int | None = None  # index of the newest slot, in units of `_slot_width` since 0

    def clear(self) -> None:
        for slot in self._slots:
            slot[:] = [0] * len(slot)
        self.totals = [0] * len(self.totals)
        self._epoch = None

    def advance(self, now: float) -> list[int]:
        """Expire the slots that left the window; the counters of the slot `now` falls in."""
        epoch = int(now // self._slot_width)
        last = self._epoch
        if last is None or epoch - last >= SLOTS:
            self.clear()
        elif epoch > last:
            totals = self.totals
            for e in range(last + 1, epoch + 1):
                slot = self._slots[e % SLOTS]
                for i, n in enumerate(slot):
                    totals[i] -= n
                    slot[i] = 0
        else:
            epoch = last  # the clock never goes back; a caller's slightly older `now` counts as current
        self._epoch = epoch
        return self._slots[epoch % SLOTS]

    def add(self, now: float, index: int, n: int = 1) -> None:
        self.advance(now)[index] += n
        self.totals[index] += n
