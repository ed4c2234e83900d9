"""The attempt loop's decisions, written once and shared by the sync and the async driver.

The planner is sans-IO: it never sleeps, never touches a socket, Redis or a span, and never reads a
clock (every method takes `now`). A driver asks `next(now)` what to do and performs it:

    Sleep(seconds)        wait (a backoff, or a Retry-After)
    Admit(route)          ask the route's breaker; report with `admitted(admission, now)`
    Open(attempt, race)   send the attempt's request; feed its body to `attempt.feed(bytes, now)` and
                          yield the chunks it returns; report the end with `ended(attempt, now)` or
                          `failed(attempt, exc, now)`. With `race`, read it alongside other attempts
                          (a hedge may start) and ask `next` again after each block
    Read(until)           the attempts opened with `race` go on: wait for the next block or end of
                          one of them, or until `until` (a hedge is due), then ask `next` again
    Cancel(attempt)       stop it now, closing its connection (it lost a hedge race)
    Adopt(attempt)        the race is over and this attempt is the one left: read it on inline, as an
                          attempt opened without `race` (same reports), until its body ends
    Judge(route, ...)     record a breaker verdict; report with `judged(judgement, now)`
    Probe(route, ...)     start the breaker's background probe (failover.probe); do not wait for it
    Done(result, last)    yield the last chunks (what a continuation's seam held back), then finish
    Raise(error)

While an attempt streams, its first content is the provider's success verdict: when `attempt.due`
is set after a `feed`, the driver records it and reports it with `serving(attempt, judgement, now)`.
The driver hands `take_events()` to its observers. The policies compose in a visible order: the
call's deadline ⊃ failover over the chain (and hedging) ⊃ retry on one provider ⊃ its breaker ⊃ the
attempt's timeouts. Every decision is here, so both drivers share one loop body and decide nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from typing import TYPE_CHECKING

from failover import outcome
from failover.actions import Action, Admit, Adopt, Cancel, Done, Open, Probe, Raise, Read, Sleep
from failover.attempt import Judge, LiveAttempt, Transcript, Truncated
from failover.errors import Attempt, FailoverError, RequestRejected
from failover.events import (
    AttemptEnded,
    AttemptStarted,
    BreakerChanged,
    CallEnded,
    CallStarted,
    Event,
    ProviderSkipped,
)
from failover.policies.breaker import CLOSED, Admission, Judgement, Verdict
from failover.policies.classify import ErrorClass, Failure
from failover.policies.hedge import FirstChunks, hedge_delay
from failover.policies.resume import Seam, continuation
from failover.policies.timeouts import Watch
from failover.providers.base import CallTimeout
from failover.redact import Scrubber
from failover.request import IMAGES, JSON_SCHEMA, TOOLS
from failover.route import Route
from failover.types import Chunk, Result

if TYPE_CHECKING:
    from failover.policies.breaker import Change
    from failover.request import Request

__all__ = ["Action", "Admit", "Adopt", "Cancel", "Done", "Open", "Planner", "Probe", "Raise", "Read", "Route", "Sleep"]

log = logging.getLogger("failover")

# One generator for every call: seeding a new one from os.urandom costs ~10 µs and 2.5 KiB a call.
_RNG = random.Random()
_warned_kinds: set[tuple[str, str]] = set()
_NEEDS = {TOOLS: "tools", IMAGES: "images", JSON_SCHEMA: "a JSON schema output"}
# Params that make the answer structured (JSON, tool calls): such an answer is never stitched from
# two generations, because a seam inside JSON or a tool call's arguments breaks it silently.
STRUCTURED_PARAMS = frozenset({"response_format", "tools", "tool_choice", "functions", "output_format",
                               "output_config"})


# ---- the planner ------------------------------------------------------------------------------


class Planner:
    def __init__(self, routes: list[Route], request: Request, *, now: float, scrubber: Scrubber | None = None,
                 rng: random.Random | None = None) -> None:
        self.routes = routes
        self.request = request
        self.attempts: list[Attempt] = []
        self.transcript = Transcript()  # what the caller has received
        self.parts = self.transcript.parts
        self.result: Result | None = None
        self._events: list[Event] = []
        self._scrubber = scrubber or Scrubber()
        self._rng = rng or _RNG
        self._start = now
        self._deadline = now + max(r.config.timeouts.total for r in routes)
        self._started = False
        self._ended = False  # CallEnded was emitted
        self._final: Done | Raise | None = None
        self._index = 0  # the route attempts are made on (retries, failover); a hedge moves it on
        self._made = 0  # attempts made on routes[_index]
        self._not_before = now
        self._backoff = 0.0
        self._asking: tuple[Route, int, bool] | None = None  # Admit(route) returned: (route, index, hedge)
        self._admitted: tuple[Route, int, bool, Admission] | None = None
        self._live: list[LiveAttempt] = []
        # Actions to hand out before anything else, in order. A Judge stays until `judged`; its entry
        # says which attempt it is for and how that attempt ended (None: a success; a loser: "hedged").
        self._pending: deque[tuple[Judge | Cancel | Probe, LiveAttempt | None, Failure | str | None]] = deque()
        self._hedge_at: float | None = None  # when to start a hedge (None: no hedge is due)
        self._hedge_from = 0  # the first route index a hedge may go to
        self._hedges = 0  # hedges started in this call
        self._last_failure: Failure | None = None
        self._last_place: tuple[str, int] | None = None  # (error_type, place) of the last failure here
        self._cut: Failure | None = None  # the failure that first broke a stream with text delivered
        self._cut_mode = "raise"
        self._structured = bool(STRUCTURED_PARAMS & {k for r in routes for k in r.config.params})
        self._last: tuple[Chunk, ...] = ()  # what a continuation's seam held until the end

    # ---- what to do next

    def next(self, now: float) -> Action:
        if self._pending:
            action = self._pending[0][0]
            if not isinstance(action, Judge):
                self._pending.popleft()  # performed without a report
            return action
        if self._final is not None:
            return self._final
        if not self._started:
            self._started = True
            self._events.append(CallStarted(self.request, tuple(r.name for r in self.routes)))
        if self._asking is not None:
            raise RuntimeError("the planner is waiting for the result of an Admit")
        if self._admitted is not None:
            route, index, hedge, admission = self._admitted
            self._admitted = None
            return self._open(route, index, admission, now, hedge)
        if self._live:
            return self._racing(now)
        if now >= self._deadline:
            return self._raise(outcome.given_up(f"call deadline of {self._deadline - self._start:g}s reached",
                                                self.transcript, self.attempts, self._cut, self._last_failure))
        if now < self._not_before:
            return Sleep(self._not_before - now)
        while self._index < len(self.routes):
            route = self.routes[self._index]
            skip = self._skip_reason(route, now)
            if skip is None:
                self._asking = (route, self._index, False)
                return Admit(route)
            self._skipped(route, *skip)
            self._next_route()
        return self._raise(outcome.given_up(None, self.transcript, self.attempts, self._cut, self._last_failure))

    def _racing(self, now: float) -> Action:
        """Attempts are live (in a race): start a hedge when one is due, else read on. When one attempt
        is left and no hedge can come, the race is over: the driver reads it inline from then on."""
        if self._hedge_at is not None and now >= self._hedge_at:
            while self._hedge_from < len(self.routes):  # the next eligible provider
                index = self._hedge_from
                self._hedge_from += 1
                route = self.routes[index]
                skip = self._skip_reason(route, now)
                if skip is None:
                    self._asking = (route, index, True)
                    return Admit(route)
                self._skipped(route, *skip)
            self._hedge_at = None  # nowhere to hedge to
        if self._hedge_at is None and len(self._live) == 1 and self._live[0].racing:
            live = self._live[0]
            live.racing = False
            return Adopt(live)
        return Read(self._hedge_at)

    def admitted(self, admission: Admission, now: float) -> None:
        if self._asking is None:
            raise RuntimeError("admitted() without an Admit action")
        route, index, hedge = self._asking
        self._asking = None
        if admission.allowed and admission.probe and route.config.breaker.probe == "background":
            # The probe is a tiny request of the router's own, not this caller's.
            self._pending.append((Probe(route, admission), None, None))
            self._changes(admission.changes)
            self._skipped(route, "breaker_half_open", "breaker half-open, probing in the background")
        elif admission.allowed:
            self._admitted = (route, index, hedge, admission)
            return
        else:
            self._changes(admission.changes)
            self._skipped(route, admission.code, admission.reason())
        if not hedge:
            self._next_route()

    def _skip_reason(self, route: Route, now: float) -> tuple[str, str] | None:
        if route.config.missing_env:
            return "missing_api_key", f"{', '.join('$' + v for v in route.config.missing_env)} is not set"
        lacking = sorted(self.request.needs - route.capabilities)
        if lacking:
            what = " and ".join(_NEEDS[c] for c in lacking)
            return "capability", f"the request has {what}, which this provider does not take (capabilities)"
        if now >= self._start + route.config.timeouts.total:
            return "deadline", "its total deadline has passed"
        return None

    def _open(self, route: Route, index: int, admission: Admission, now: float, hedge: bool) -> Open:
        if hedge:  # the call goes on from the hedge's provider unless the attempt it hedges wins
            self._hedges += 1
            self._hedge_at = None  # this hedge answers the one that was due; it may plan its own
            self._index, self._made, self._backoff = index, 0, 0.0
        self._made += 1
        if self._made == 1 and route.budget is not None:
            route.budget.request(now)  # a first attempt: what the retry budget is a share of
        t = route.config.timeouts
        hard = min(self._deadline, self._start + t.total)
        watch = Watch(t, now + t.first_token, hard)
        timeout = CallTimeout(connect=max(0.001, min(t.connect, watch.deadline - now)), total=max(0.001, hard - now))
        request = self.request
        live = LiveAttempt(self.transcript, route, index, self._made, admission, request, timeout, watch, now,
                           self._backoff)
        live.hedge = hedge
        if self.transcript.delivered:
            delivered = self.transcript.text
            if self._midstream() == "restart":
                live.discard = delivered  # cleared from `parts` only once this attempt delivers
                log.warning("failover: restarting the answer on %s; %d characters to discard", route.name,
                            len(delivered))
            else:
                live.continuing = True
                live.request = continuation(request, delivered, prefill=route.config.supports_prefill,
                                            prompt=route.config.continue_prompt)
                live.seam = Seam(delivered)
        self._live.append(live)
        self._events.append(AttemptStarted(route, self._made, live.request, live.continuing, self._backoff,
                                           self._last_failure, admission.probe, hedge))
        self._changes(admission.changes)
        self._backoff = 0.0
        live.racing = self._plan_hedge(live, now) or len(self._live) > 1
        return Open(live, race=live.racing)

    def _plan_hedge(self, live: LiveAttempt, now: float) -> bool:
        """Set when to hedge this attempt; False when it will not be hedged."""
        settings = live.route.config.hedge
        if (settings is None or self.transcript.delivered or live.continuing or self._hedges >= settings.max
                or live.index + 1 >= len(self.routes)):
            if len(self._live) == 1:
                self._hedge_at = None
            return False
        first_chunks = live.route.first_chunks or FirstChunks()
        self._hedge_at = now + hedge_delay(settings, first_chunks, live.route.config.timeouts.first_token)
        self._hedge_from = max(self._hedge_from, live.index + 1)
        return True

    def _midstream(self) -> str:
        """The mode of the provider whose stream broke. A structured answer (JSON output, tool calls)
        is never stitched from two generations: a seam inside JSON breaks it silently."""
        mode = self._cut_mode
        structured = self._structured or self.request.structured or self.transcript.tool_calls
        return "restart" if mode == "resume" and structured else mode

    def _next_route(self) -> None:
        self._index = max(self._index, self._hedge_from - 1) + 1  # past the providers a hedge tried
        self._made = 0
        self._not_before = 0.0
        self._backoff = 0.0
        self._last_place = None

    # ---- while attempts stream

    def serving(self, live: LiveAttempt, judgement: Judgement, now: float) -> None:
        """The success verdict of an attempt's first content was recorded. In a race, its content
        won: the others are cancelled (no verdict, no failure) and the call goes on with it."""
        live.due = None
        live.state = judgement.state
        self._changes(judgement.changes)
        if live.route.first_chunks is not None and live.first_chunk_at is not None:
            live.route.first_chunks.add(live.first_chunk_at - live.started)
        self._hedge_at = None  # content arrived: never a hedge after that
        if live.hedge or len(self._live) > 1:
            self._index, self._made = live.index, live.number
            self._cancel_all_but(live)

    def _cancel_all_but(self, winner: LiveAttempt) -> None:
        """The others of a race lost: cancelled at once, recorded as hedged, no breaker verdict."""
        for loser in [other for other in self._live if other is not winner]:
            self._stop(loser)
            self._pending.append((Cancel(loser), None, None))
            self._pending.append((Judge(loser.route, loser.admission, Verdict.NONE), loser, "hedged"))

    # ---- how an attempt ended

    def ended(self, live: LiveAttempt, now: float) -> None:
        """The body ended."""
        decoder = live.decoder
        if not decoder.complete:
            self.failed(live, Truncated("stream ended without its terminal event"), now)
            return
        self._last = tuple(live.flush(now))
        if not live.delivered and not live.continuing and decoder.unrepresented:
            kinds = ", ".join(sorted(decoder.unrepresented))
            self._fail(live, Failure(ErrorClass.WRONG_FIT, "unrepresented_content",
                                     f"the answer held only content failover does not represent: {kinds}"))
            return
        self._warn_unrepresented(live)
        self._stop(live)
        if live.state is not None:  # its success was recorded at its first content
            self._succeeded(live, now, live.state)
        else:  # an empty answer: the end is its success
            self._pending.append((Judge(live.route, live.admission, Verdict.SUCCESS), live, None))

    def failed(self, live: LiveAttempt, exc: BaseException, now: float) -> None:
        """Opening the attempt or reading its body raised `exc`."""
        if live.decoder.complete:
            self.ended(live, now)  # an error after the terminal event loses nothing
        else:
            self._fail(live, live.failure(exc, now, self._scrubber))

    def _fail(self, live: LiveAttempt, failure: Failure) -> None:
        self._warn_unrepresented(live)
        self._stop(live)
        verdict = Verdict.FAILURE if failure.breaker_failure else Verdict.NONE
        self._pending.append((Judge(live.route, live.admission, verdict, live.state is not None), live, failure))

    def _stop(self, live: LiveAttempt) -> None:
        live.stopped = True
        if live in self._live:
            self._live.remove(live)
        if not self._live:
            self._hedge_at = None

    def judged(self, judgement: Judgement, now: float) -> None:
        """The verdict of the Judge action just performed was recorded."""
        if not self._pending or not isinstance(self._pending[0][0], Judge):
            raise RuntimeError("judged() without a Judge action")
        _, live, how = self._pending.popleft()
        self._changes(judgement.changes)
        assert live is not None
        if how is None:
            self._succeeded(live, now, judgement.state)
        elif how == "hedged":
            self._record(live, now, None, judgement.state, outcome_="hedged")
        elif self._live:  # another attempt of the race goes on: only the record now
            assert isinstance(how, Failure)
            self._record(live, now, how, judgement.state)
            self._last_failure = how
        else:
            assert isinstance(how, Failure)
            self._settle(live, how, now, judgement.state)

    def _succeeded(self, live: LiveAttempt, now: float, state: str) -> None:
        self._cancel_all_but(live)  # an empty answer that ended while a hedge was still on its way
        self._record(live, now, None, state)
        self.result = outcome.result(self.transcript, self.attempts, live, [*self.transcript.served, live],
                                     live.decoder.finish_reason)
        self._final = Done(self.result, self._last)
        self._end(CallEnded(self.result, None))

    def _settle(self, live: LiveAttempt, failure: Failure, now: float, state: str) -> None:
        """After a failed attempt: raise, retry on the same provider, or move on."""
        route = live.route
        if self.transcript.delivered and self._cut is None:
            self._cut, self._cut_mode = failure, route.config.midstream
        retry_in, refused = self._retry(live, failure, now, state)  # first: the Attempt says if refused
        self._record(live, now, failure, state, retry_refused=refused)
        self._last_failure = failure
        if live.delivered:
            self.transcript.served.append(live)
        if failure.error_class is ErrorClass.REJECTED and not live.continuing \
                and not route.config.failover_on_reject:
            error = RequestRejected(failure.message, self.attempts, provider=route.name,
                                    status_code=failure.status_code)
            error.__cause__ = failure.exception
            self._raise(error)
        elif self.transcript.delivered and self._cut_mode == "raise":
            assert self._cut is not None
            self._raise(outcome.interrupted(self._cut, self.transcript, self.attempts))
        elif retry_in is not None:
            self._not_before = now + retry_in
            self._backoff = retry_in
        else:
            self._next_route()

    def _retry(self, live: LiveAttempt, failure: Failure, now: float, state: str) -> tuple[float | None, str | None]:
        """The backoff before another attempt on the same provider (None: move on), and why a retry
        was refused although attempts were left ("budget": the provider's retry budget; "retry_after":
        the provider asked to wait longer than max_retry_after)."""
        route = live.route
        if not (failure.retryable and route.retry.allows(self._made)) or \
                (self.transcript.delivered and self._cut_mode == "raise"):
            return None, None
        if state != CLOSED:
            return None, None  # the breaker is open (this failure, a failed probe, or others): move on now
        if live.received or failure.error_type == "malformed_event":
            # A fault in the body that repeats at the same place (the same malformed event at the same
            # offset) would be seen a third time too: move on instead.
            place = (failure.error_type, live.received)
            repeated, self._last_place = place == self._last_place, place
            if repeated:
                return None, None
        delay = route.retry.backoff(self._made, failure.retry_after, self._rng)
        if delay is None:  # the provider asked to wait longer than max_retry_after: the Attempt says so
            return None, "retry_after"
        hard = self._start + route.config.timeouts.total
        if now + delay >= min(hard, self._deadline):
            return None, None
        if route.budget is not None and not route.budget.try_retry(now):
            return None, "budget"
        return delay, None

    def cancelled(self, now: float) -> list[Judge]:
        """The caller closed or cancelled: every live attempt ends. After content that is the
        provider's success; before it, no verdict at all. Returns the verdicts to record (best
        effort: the caller is leaving), and the driver closes every live attempt."""
        judges = [judge for judge, _, how in self._pending if isinstance(judge, Judge) and how is None]
        cancel = Failure(ErrorClass.CALLER, "cancelled", "the caller closed the stream")
        last = None
        for live in list(self._live):
            self._stop(live)
            if live.due is not None or live.state is None:  # a success not recorded yet, or no verdict
                verdict = Verdict.SUCCESS if live.first_chunk_at is not None else Verdict.NONE
                judges.append(Judge(live.route, live.admission, verdict))
            self._record(live, now, cancel, live.state, cancelled=True)
            if live.delivered:
                last = live
        if self._started and self._final is None and self.attempts:
            # What is known so far, for a caller that broke off on purpose (finish_reason None).
            kept = self.transcript.served
            last = last or (kept[-1] if kept else None)
            served = [*kept, last] if last is not None and last not in kept else kept
            self.result = outcome.result(self.transcript, self.attempts, last, served, None)
        self._end(CallEnded(None, None, cancelled=True))
        return judges

    @property
    def live(self) -> list[LiveAttempt]:
        """The attempts in progress (the driver closes them when the caller leaves)."""
        return list(self._live)

    # ---- records and events

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _changes(self, changes: tuple[Change, ...]) -> None:
        for change in changes:
            self._events.append(BreakerChanged(change))

    def _record(self, live: LiveAttempt, now: float, failure: Failure | None, state: str | None, *,
                retry_refused: str | None = None, cancelled: bool = False, outcome_: str | None = None) -> None:
        attempt = live.record(now, failure, state, outcome="hedged" if outcome_ == "hedged" else None,
                              retry_refused=retry_refused)
        self.attempts.append(attempt)
        self._events.append(AttemptEnded(attempt, live.decoder, failure, cancelled))

    def _skipped(self, route: Route, code: str, reason: str) -> None:
        attempt = Attempt(
            provider=route.name, model=route.provider.model, number=self._made + 1, outcome="skipped",
            error_type="skipped", message=reason, started_at=time.time(), duration_s=0.0)
        self.attempts.append(attempt)
        self._events.append(ProviderSkipped(attempt, code))

    def _warn_unrepresented(self, live: LiveAttempt) -> None:
        for kind in live.decoder.unrepresented:
            if (live.name, kind) not in _warned_kinds:
                _warned_kinds.add((live.name, kind))
                log.warning("failover: %s sent content failover does not represent (%s); it is counted on the "
                            "attempt span, not passed on", live.name, kind)

    def _raise(self, error: FailoverError) -> Raise:
        self._final = Raise(error)
        self._end(CallEnded(None, error))
        return self._final

    def _end(self, event: CallEnded) -> None:
        if self._started and not self._ended:
            self._ended = True
            self._events.append(event)
