"""Deadlines of one attempt: first chunk, gap between chunks, whole call.

`Watch` is sans-IO: it holds the absolute time the attempt's current wait must end, and the
transport (providers/transport.py) clamps every socket operation of the attempt to it. The
per-chunk path only moves one float:

- from sending until the first content: `first_token` after the send (never past `hard`);
- once content arrived, and again each time the caller hands control back after a chunk (`resume`):
  `idle` from then on. Time the caller spends holding a chunk is not provider silence;
- never past `hard`, the call's deadline (`timeouts.total` from the start of the call).
"""

from __future__ import annotations

import socket
from typing import Any

from failover.config import TimeoutSettings

FIRST_TOKEN, IDLE, TOTAL = "first_token", "idle", "total"


class Watch:
    __slots__ = ("deadline", "fired", "first_token_at", "got_content", "hard", "idle", "settings", "stream")

    def __init__(self, settings: TimeoutSettings, first_token_at: float, hard: float) -> None:
        self.settings = settings
        self.idle = settings.idle
        self.first_token_at = first_token_at
        self.hard = hard
        self.deadline = min(first_token_at, hard)
        self.got_content = False
        self.fired: str | None = None  # which deadline cut the attempt, once one did
        self.stream: Any = None  # the connection reading for this attempt (set by the transport)

    def content(self, now: float) -> None:
        """The provider sent content: from now on the gap to the next one is what counts."""
        self.got_content = True
        deadline = now + self.idle
        self.deadline = deadline if deadline < self.hard else self.hard

    resume = content  # the caller handed control back after a chunk: the same rule from now

    def kind(self) -> str:
        if self.deadline >= self.hard:
            return TOTAL
        return IDLE if self.got_content else FIRST_TOKEN

    def seconds(self, kind: str) -> float:
        return {IDLE: self.idle, FIRST_TOKEN: self.settings.first_token, TOTAL: self.settings.total}[kind]

    # ---- the transport's Deadline protocol

    def remaining(self, now: float) -> float:
        return self.deadline - now

    def expire(self) -> None:
        if self.fired is None:
            self.fired = self.kind()

    def abort(self) -> None:
        """Cut the attempt now from another thread: its socket is shut down, which wakes a blocked read."""
        self.deadline = self.hard = 0.0
        stream = self.stream
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
