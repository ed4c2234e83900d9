"""Deadlines of one attempt: first chunk, gap between chunks, whole call.

`Watch` is the sans-IO part of enforcing them: both drivers keep one per open attempt and ask it
`check(now)` when their timer fires; it answers when to look again, or aborts the attempt. On the
per-chunk path the driver only moves `deadline` forward and flips `reading`, so no timer is touched
per chunk. `reading` is false while the caller holds a chunk: a slow consumer is not a silent
provider.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from failover.config import TimeoutSettings


class Watch:
    __slots__ = ("_abort", "deadline", "fired", "first_token_at", "got_text", "hard", "idle", "reading",
                 "settings")

    def __init__(self, settings: TimeoutSettings, first_token_at: float, hard: float) -> None:
        self.settings = settings
        self.idle = settings.idle
        self.first_token_at = first_token_at
        self.hard = hard  # the attempt may not outlive the call's deadline
        self.deadline = min(first_token_at, hard)
        self.reading = True
        self.got_text = False
        self.fired: str | None = None
        self._abort: Callable[[], None] = _nothing

    def attach(self, sock: socket.socket | None) -> None:
        """The connection to cut when the deadline passes (shutdown wakes a blocked read)."""
        if sock is not None:
            self._abort = lambda: _shutdown(sock)

    def kind(self) -> str:
        if self.deadline >= self.hard:
            return "total"
        return "idle" if self.got_text else "first_token"

    def seconds(self, kind: str) -> float:
        return {"idle": self.idle, "first_token": self.settings.first_token, "total": self.settings.total}[kind]

    def check(self, now: float) -> float | None:
        """Abort if the deadline passed while reading; else return when to check again."""
        if self.fired is not None:
            return None
        if now < self.deadline:
            return self.deadline
        if not self.reading:
            return now + self.idle
        self.fired = self.kind()
        self._abort()
        return None


def _nothing() -> None:
    return None


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the attempt is over anyway
