"""One attempt in progress, and what the caller has received so far.

`LiveAttempt` holds what the driver sends (request, timeouts, deadlines) and the per-chunk path:
body bytes → the provider's decoder → the continuation's seam → `Chunk`s for the caller, appended to
the call's `Transcript`. It decides nothing beyond that path; the planner decides what an ended or
failed attempt means.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from failover.errors import Attempt, Outcome
from failover.outcome import summary
from failover.policies.breaker import Admission, Judgement, Verdict
from failover.policies.classify import ErrorClass, Failure, classify
from failover.policies.resume import Seam
from failover.policies.timeouts import TOTAL, Watch
from failover.providers.base import Fault
from failover.types import Chunk, ToolCallDelta

if TYPE_CHECKING:
    from failover.providers.base import CallTimeout, Decoder, Piece
    from failover.redact import Scrubber
    from failover.request import Request
    from failover.route import Route

@dataclass(frozen=True, slots=True)
class Judge:
    """A breaker verdict for the driver to record (the planner's `Judge` action)."""

    route: Route
    admission: Admission
    verdict: Verdict
    decided: bool = False  # the attempt's first content was its success verdict already
    first_chunk_s: float | None = None  # a first content's time from sending (kept with a shared breaker)

    def record(self, now: float) -> Judgement:
        return self.route.breaker.record(self.admission, self.verdict, now, decided=self.decided,
                                         first_chunk_s=self.first_chunk_s)

    async def arecord(self, now: float) -> Judgement:
        return await self.route.breaker.arecord(self.admission, self.verdict, now, decided=self.decided,
                                                first_chunk_s=self.first_chunk_s)


_NO_CHUNKS: list[Chunk] = []  # returned (never modified) when bytes complete no text


class Transcript:
    """What the caller has received: the text in order, the attempts whose text it kept (usage counts
    those), and whether a continuation delivered any of it."""

    __slots__ = ("parts", "resumed", "served", "tool_calls")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.served: list[LiveAttempt] = []
        self.resumed = False
        self.tool_calls = False  # pieces of tool calls reached the caller (the answer is never stitched)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def delivered(self) -> bool:
        """Something of the answer reached the caller (text, or pieces of a tool call)."""
        return bool(self.parts) or self.tool_calls


class AttemptTimeout(Exception):
    """Our own deadline for this attempt passed: `kind` is first_token, idle or total."""

    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__(f"call deadline of {seconds:g}s reached" if kind == TOTAL else
                         f"no {'first chunk' if kind == 'first_token' else 'chunk'} within {seconds:g}s")
        self.kind = kind


class Truncated(Exception):
    """The stream ended without its terminal event."""


# ---- one attempt ------------------------------------------------------------------------------


class LiveAttempt:
    """An attempt in progress: what to send, its deadlines, and its body's per-chunk path.

    The driver sends `request` with `timeout` and `watch` through `route.provider`, then passes every
    block of the body's bytes to `feed` and yields the chunks it returns, calling `resume` when the
    caller hands control back after a chunk.
    """

    __slots__ = (
        "_transcript",
        "admission",
        "backoff",
        "continuing",
        "decoder",
        "delivered",
        "discard",
        "due",
        "first_chunk_at",
        "hedge",
        "index",
        "model",
        "name",
        "number",
        "quiet_since",
        "racing",
        "received",
        "request",
        "route",
        "seam",
        "started",
        "started_wall",
        "state",
        "stopped",
        "timeout",
        "watch",
    )

    def __init__(self, transcript: Transcript, route: Route, index: int, number: int, admission: Admission,
                 request: Request, timeout: CallTimeout, watch: Watch, now: float, backoff: float) -> None:
        self._transcript = transcript
        self.route = route
        self.index = index  # the route's place in the call's chain
        self.name, self.model = route.provider.name, route.provider.model
        self.number = number
        self.admission = admission
        self.request = request
        self.timeout = timeout
        self.watch = watch
        self.decoder: Decoder = route.provider.decoder()
        self.started = now
        self.started_wall = time.time()
        self.backoff = backoff
        self.continuing = False  # this attempt continues text another attempt delivered
        self.seam: Seam | None = None  # filters a continuation's repeat of delivered text
        self.discard: str | None = None  # a restart: text the caller must throw away at our first chunk
        self.first_chunk_at: float | None = None
        self.quiet_since = now  # since when we wait on the provider (content, or the caller resuming)
        self.received = 0  # characters of content received (a repeated fault is recognised by its place)
        self.delivered = False  # text of this attempt reached the caller
        self.due: Judge | None = None  # the success verdict of its first content, for the driver to record
        self.state: str | None = None  # the breaker's state after that verdict
        self.hedge = False  # started because another attempt was slow to send content
        self.stopped = False  # the planner is done with it: a driver drops what it still reads
        self.racing = False  # read alongside other attempts (Open with race) until the planner adopts it

    def feed(self, data: bytes, now: float) -> list[Chunk]:
        """Bytes of the body in; the chunks for the caller out. Raises what the decoder raises for
        garbage or an in-band error (report it with `Planner.failed`)."""
        pieces = self.decoder.feed(data)
        if not pieces:
            return _NO_CHUNKS
        return self.deliver(pieces, now)

    def resume(self, now: float) -> None:
        """The caller handed control back: waiting on the provider starts again now."""
        self.quiet_since = now
        self.watch.resume(now)

    def deliver(self, pieces: list[Piece], now: float) -> list[Chunk]:
        """Content from the provider: the chunks for the caller (a continuation's seam may hold some
        text back)."""
        self.watch.content(now)
        self.quiet_since = now
        if self.first_chunk_at is None:
            self.first_chunk_at = now
            self.due = Judge(self.route, self.admission, Verdict.SUCCESS, first_chunk_s=now - self.started)
        chunks: list[Chunk] = []
        parts = self._transcript.parts
        for piece in pieces:
            if isinstance(piece, ToolCallDelta):
                chunks += self.flush(now)  # text held back comes before the tool call that follows it
                self._transcript.tool_calls = True
                chunks.append(self._first("", (piece,)) if not self.delivered else
                              Chunk("", self.name, self.model, tool_calls=(piece,)))
                continue
            text = piece
            self.received += len(text)
            seam = self.seam
            if seam is not None:
                text = seam.feed(text)
                if seam.done:
                    self.seam = None
                if not text:
                    continue
            chunks.append(self._first(text) if not self.delivered else Chunk(text, self.name, self.model))
            parts.append(text)
        return chunks

    def flush(self, now: float) -> list[Chunk]:
        """What the seam still holds is decided now (the stream completed, or a tool call follows)."""
        seam, self.seam = self.seam, None
        rest = seam.flush() if seam is not None else ""
        return self.deliver([rest], now) if rest else _NO_CHUNKS

    def _first(self, text: str, tool_calls: tuple[ToolCallDelta, ...] = ()) -> Chunk:
        self.delivered = True
        transcript = self._transcript
        if self.continuing:
            transcript.resumed = True
        if self.discard is None:
            return Chunk(text, self.name, self.model, tool_calls=tool_calls)
        # A restart: only now, when the new answer arrives, is the old one gone for the caller.
        transcript.parts.clear()
        transcript.served.clear()
        transcript.tool_calls = bool(tool_calls)
        return Chunk(text, self.name, self.model, restart=True, discard=self.discard, tool_calls=tool_calls)

    # ---- how it ended, as the taxonomy and the record see it

    def failure(self, exc: BaseException, now: float, scrubber: Scrubber) -> Failure:
        """The taxonomy's verdict on this attempt's failure, with what only the attempt knows: which of
        its deadlines cut it, how long it was quiet before a cut, whether it was a continuation."""
        scrubber.scrub_exception(exc)  # before it is chained, logged or shown anywhere
        watch = self.watch
        if watch.fired is not None:
            timeout = AttemptTimeout(watch.fired, watch.seconds(watch.fired))
            timeout.__cause__ = exc
            silent = ErrorClass.SILENT if watch.fired != TOTAL else ErrorClass.TRANSIENT
            return Failure(silent, f"timeout_{watch.fired}", str(timeout), exception=timeout)
        fault = Fault("cut", str(exc)) if isinstance(exc, Truncated) else self.route.provider.fault(exc)
        failure = classify(replace(fault, message=summary(scrubber.scrub(fault.message))), exc)
        if failure.error_type == "cut":
            # A stream that went quiet for more than half its allowance and was then closed is a
            # stall (next provider), not a cut to retry on the same provider.
            quiet = now - self.quiet_since
            allowance = watch.idle if watch.got_content else watch.settings.first_token
            if quiet > allowance / 2:
                failure = Failure(ErrorClass.SILENT, "stalled",
                                  f"no content for {quiet:.1f}s, then the connection was closed", exception=exc)
        if self.continuing and failure.error_class is ErrorClass.REJECTED:
            # The provider refused our continuation (an assistant prefill, say): a failure of this
            # attempt, never the final error that would hide the original cut.
            failure = Failure(ErrorClass.WRONG_FIT, "continuation_rejected", failure.message,
                              failure.status_code, None, failure.exception)
        return failure

    def record(self, now: float, failure: Failure | None, state: str | None, *, outcome: Outcome | None = None,
               retry_refused: str | None = None) -> Attempt:
        first = None if self.first_chunk_at is None else self.first_chunk_at - self.started
        return Attempt(
            provider=self.name, model=self.model, number=self.number,
            outcome=outcome or ("ok" if failure is None else "error"),
            error_type=failure.error_type if failure else None,
            status_code=failure.status_code if failure else None,
            message=failure.message if failure else None,
            retry_after=failure.retry_after if failure else None,
            started_at=self.started_wall, duration_s=now - self.started, first_chunk_s=first,
            backoff_s=self.backoff, error_class=failure.error_class.value if failure else None,
            breaker_state=state, retry_refused=retry_refused, hedge=self.hedge)
