"""Timers that enforce each open attempt's `Watch`: a thread for sync streams, the event loop for
async ones. Neither knows a policy; they only wake up when a watch says to look again."""

from __future__ import annotations

import asyncio
import threading
import time

from failover.policies.timeouts import Watch


class ThreadWatchdog:
    """One daemon thread per router, started on first use and stopped by `close()`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        # When the sleeping thread will look next (None: not before it is notified). Waking it only
        # for a deadline earlier than that saves two thread switches per call.
        self._wake: float | None = None

    def add(self, watch: Watch) -> None:
        with self._cond:
            self._watches.add(watch)
            if self._thread is None:
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="failover-watchdog", daemon=True)
                self._thread.start()
            self._notify_before(watch.deadline)

    def poke(self, deadline: float) -> None:
        """A watch's deadline moved earlier, to `deadline`."""
        with self._cond:
            self._notify_before(deadline)

    def _notify_before(self, deadline: float) -> None:
        if self._wake is None or deadline < self._wake:
            self._wake = deadline
            self._cond.notify()

    def remove(self, watch: Watch) -> None:
        with self._cond:
            self._watches.discard(watch)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                wake = None
                for watch in list(self._watches):
                    again = watch.check(now)
                    if again is None:
                        self._watches.discard(watch)
                    elif wake is None or again < wake:
                        wake = again
                self._wake = wake
                self._cond.wait(None if wake is None else max(0.0, wake - now))


class LoopWatchdog:
    """Schedules one `call_at` per watch on the running loop, re-armed only when it fires or when the
    deadline moves earlier than the time it is set for."""

    __slots__ = ("_handle", "_loop", "_watch", "_when")

    def __init__(self, watch: Watch) -> None:
        self._watch = watch
        self._loop = asyncio.get_running_loop()
        self._when = watch.deadline
        self._handle = self._loop.call_at(self._at(watch.deadline), self._fire)

    def _at(self, deadline: float) -> float:
        # Watch deadlines are time.monotonic(); the loop has a clock of its own.
        return self._loop.time() + (deadline - time.monotonic())

    def _fire(self) -> None:
        again = self._watch.check(time.monotonic())
        if again is not None:
            self._when = again
            self._handle = self._loop.call_at(self._at(again), self._fire)

    def poke(self, deadline: float) -> None:
        if deadline < self._when:  # a later deadline is found when the timer fires and looks again
            self._handle.cancel()
            self._when = deadline
            self._handle = self._loop.call_at(self._at(deadline), self._fire)

    def cancel(self) -> None:
        self._handle.cancel()
