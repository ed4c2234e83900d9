"""The verdict on each call (text, time, error type) and the running tally of one phase."""

from __future__ import annotations

import difflib
import math
import threading
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from failover import AllProvidersFailed, FailoverError, RequestRejected, StreamInterrupted

# The documented errors a call may end with; anything else is a broken promise.
EXPECTED = (AllProvidersFailed, StreamInterrupted, RequestRejected)

Api = Literal["async", "sync"]
TextVerdict = Literal["exact", "prefix", "truncated", "duplicated", "lost", "garbled"]
DEFECTS: tuple[TextVerdict, ...] = ("truncated", "duplicated", "lost", "garbled")


@dataclass(frozen=True)
class Call:
    """What one caller saw."""

    api: Api
    wall: float  # seconds from calling stream() to the end of the stream or the error
    streamed: str  # the text a consumer that honours chunk.restart holds at the end
    reported: str | None = None  # Result.text, or StreamInterrupted.partial_text
    error: BaseException | None = None
    hung: bool = False  # the soak gave up waiting: the call was still running long past its deadline
    discard_ok: bool = True  # every restart chunk's `discard` was exactly the text held before it


def judge_text(text: str, answer: str, complete: bool) -> TextVerdict:
    """`complete`: the call claims the whole answer (a success); otherwise a prefix is what it owes."""
    if text == answer:
        return "exact"
    if answer.startswith(text):
        return "truncated" if complete else "prefix"
    matcher = difflib.SequenceMatcher(None, answer, text, autojunk=False)
    if sum(b.size for b in matcher.get_matching_blocks() if b.size >= 3) < len(text) / 2:
        return "garbled"  # mostly text that is not the answer's: stray letters match, nothing more
    inserted = deleted_inside = False
    for op, _a1, a2, b1, b2 in matcher.get_opcodes():
        piece = text[b1:b2]
        if op in ("insert", "replace") and len(piece) >= 3 and piece in answer:
            inserted = True  # text the answer has once, seen twice
        if op == "delete" and a2 < len(answer):
            deleted_inside = True  # a piece of the answer missing, with text after it
    if inserted:
        return "duplicated"
    if deleted_inside:
        return "lost"
    return "garbled"


def failure_key(error: FailoverError) -> str:
    """`AllProvidersFailed: openai:server_error, anthropic:skipped, …`: how each provider ended, in
    the order they were last tried, to see at a glance why calls failed."""
    last: dict[str, str] = {}
    for a in error.attempts:
        last.pop(a.provider, None)
        last[a.provider] = a.error_type or a.outcome
    return f"{type(error).__name__}: " + ", ".join(f"{p}:{e}" for p, e in last.items())


@dataclass
class Tally:
    """Counts of one phase; `add` is safe from any thread."""

    answer: str
    total: float  # timeouts.total
    tolerance: float
    calls: Counter[str] = field(default_factory=Counter)  # by api
    successes: int = 0
    exact: int = 0
    defects: Counter[str] = field(default_factory=Counter)  # DEFECTS + "reported ≠ streamed"
    samples: dict[str, str] = field(default_factory=dict)  # one example per defect
    failures: Counter[str] = field(default_factory=Counter)  # failure_key -> count
    unexpected: Counter[str] = field(default_factory=Counter)  # exception type -> count
    tracebacks: dict[str, str] = field(default_factory=dict)
    past_deadline: int = 0
    hung: int = 0
    worst_overrun: float = -math.inf  # wall - total, the largest seen
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def count(self) -> int:
        return sum(self.calls.values())

    def add(self, call: Call) -> None:
        with self._lock:
            self._add(call)

    def _add(self, call: Call) -> None:
        self.calls[call.api] += 1
        self.worst_overrun = max(self.worst_overrun, call.wall - self.total)
        if call.hung or call.wall > self.total + self.tolerance:
            self.past_deadline += 1
        if call.hung:
            self.hung += 1
            return
        error = call.error
        if error is not None and not isinstance(error, EXPECTED):
            name = f"{type(error).__module__}.{type(error).__qualname__}"
            self.unexpected[name] += 1
            self.tracebacks.setdefault(name, "".join(traceback.format_exception(error)))
            return
        if isinstance(error, FailoverError):
            self.failures[failure_key(error)] += 1
            # AllProvidersFailed after text reached the caller would hide a cut: still owes a prefix.
            judged = error.partial_text if isinstance(error, StreamInterrupted) else call.streamed
        else:
            self.successes += 1
            judged = call.streamed
        verdict = judge_text(judged, self.answer, complete=error is None)
        if verdict == "exact":
            self.exact += error is None
        elif verdict != "prefix":
            self._defect(verdict, call, judged)
        if (call.reported is not None and call.reported != call.streamed) or not call.discard_ok:
            self._defect("reported ≠ streamed", call, call.reported or "")

    def merge(self, other: Tally) -> None:
        """Add `other`'s counts (another phase) to these."""
        self.calls.update(other.calls)
        self.successes += other.successes
        self.exact += other.exact
        self.defects.update(other.defects)
        self.failures.update(other.failures)
        self.unexpected.update(other.unexpected)
        for mine, theirs in ((self.samples, other.samples), (self.tracebacks, other.tracebacks)):
            for key, value in theirs.items():
                mine.setdefault(key, value)
        self.past_deadline += other.past_deadline
        self.hung += other.hung
        self.worst_overrun = max(self.worst_overrun, other.worst_overrun)

    def _defect(self, what: str, call: Call, judged: str) -> None:
        self.defects[what] += 1
        if what not in self.samples:
            how = "success" if call.error is None else type(call.error).__name__
            self.samples[what] = (f"{call.api} call, {how}, restart discards ok: {call.discard_ok}\n"
                                  f"    judged:   {judged!r}\n    streamed: {call.streamed!r}\n"
                                  f"    reported: {call.reported!r}")
