"""The attempt loop's decisions, written once and shared by the sync and the async driver.

The planner is sans-IO: it never sleeps, never touches a socket, Redis or a span, and never reads a
clock (every method takes `now`). A driver asks `next(now)` what to do and performs it:

    Sleep(seconds)        wait (a backoff, or a Retry-After)
    Admit(route)          ask the route's breaker; report with `admitted(admission, now)`
    Open(attempt)         send the attempt's request; feed its body to `attempt.feed(bytes, now)`
                          and yield the chunks it returns; report the end with `ended(attempt, now)`
                          or `failed(attempt, exc, now)`
    Judge(route, ...)     record a breaker verdict; report with `judged(judgement, now)`

While an attempt streams, its first content is the provider's success verdict: when `attempt.due`
is set after a `feed`, the driver records it and reports it with `serving(attempt, judgement, now)`.
    Done(result, last)    yield the last chunks (what a continuation's seam held back), then finish
    Raise(error)

and hands `take_events()` to its observers. The policies compose in a visible order: the call's
deadline ⊃ failover over the chain ⊃ retry on one provider ⊃ its breaker ⊃ the attempt's timeouts.
Every decision is here, so both drivers share one loop body and decide nothing.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from failover.attempt import AttemptTimeout, Judge, LiveAttempt, Transcript, Truncated
from failover.errors import AllProvidersFailed, Attempt, FailoverError, RequestRejected, StreamInterrupted
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
from failover.policies.classify import ErrorClass, Failure, classify
from failover.policies.resume import Seam, continuation
from failover.policies.timeouts import TOTAL, Watch
from failover.providers.base import CallTimeout, Fault
from failover.redact import Scrubber
from failover.request import CAPABILITIES, IMAGES, JSON_SCHEMA, TOOLS
from failover.types import Chunk, Result, Usage

if TYPE_CHECKING:
    from failover.config import ProviderConfig
    from failover.policies.breaker import Breaker, Change
    from failover.policies.budget import RetryBudget
    from failover.policies.retry import RetryPolicy
    from failover.providers.base import Provider
    from failover.request import Request

log = logging.getLogger("failover")

# One generator for every call: seeding a new one from os.urandom costs ~10 µs and 2.5 KiB a call.
_RNG = random.Random()
_SUMMARY = 200  # characters of a provider's message kept in an Attempt
_warned_kinds: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Route:
    """One provider of the chain with its policies; built once per router."""

    provider: Provider
    config: ProviderConfig
    retry: RetryPolicy
    breaker: Breaker
    budget: RetryBudget | None = None  # the provider's retry budget, shared by the router's calls
    capabilities: frozenset[str] = frozenset(CAPABILITIES)  # what requests it can take (DESIGN §2)

    @property
    def name(self) -> str:
        return self.provider.name


# ---- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Admit:
    route: Route


@dataclass(frozen=True, slots=True)
class Open:
    attempt: LiveAttempt


@dataclass(frozen=True, slots=True)
class Done:
    result: Result
    last: tuple[Chunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Raise:
    error: FailoverError


Action = Sleep | Admit | Open | Judge | Done | Raise


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
        self._index = 0
        self._made = 0  # attempts made on routes[_index]
        self._not_before = now
        self._backoff = 0.0
        self._asking: Route | None = None  # Admit(route) was returned; waiting for `admitted`
        self._admitted: tuple[Route, Admission] | None = None
        self._live: LiveAttempt | None = None
        self._judge: Judge | None = None  # a verdict to record before anything else
        self._ending: tuple[LiveAttempt, Failure | None] | None = None  # the attempt the verdict is for
        self._last_failure: Failure | None = None
        self._last_place: tuple[str, int] | None = None  # (error_type, place) of the last failure here
        self._cut: Failure | None = None  # the failure that first broke a stream with text delivered
        self._cut_mode = "raise"
        self._structured = bool(STRUCTURED_PARAMS & {k for r in routes for k in r.config.params})
        self._last: tuple[Chunk, ...] = ()  # what a continuation's seam held until the end

    # ---- what to do next

    def next(self, now: float) -> Action:
        if self._judge is not None:
            return self._judge
        if self._final is not None:
            return self._final
        if not self._started:
            self._started = True
            self._events.append(CallStarted(self.request, tuple(r.name for r in self.routes)))
        if self._live is not None or self._asking is not None:
            raise RuntimeError("the planner is waiting for the result of its last action")
        if self._admitted is not None:
            route, admission = self._admitted
            self._admitted = None
            return self._open(route, admission, now)
        if now >= self._deadline:
            return self._raise(self._give_up(f"call deadline of {self._deadline - self._start:g}s reached"))
        if now < self._not_before:
            return Sleep(self._not_before - now)
        while self._index < len(self.routes):
            route = self.routes[self._index]
            skip = self._skip_reason(route, now)
            if skip is None:
                self._asking = route
                return Admit(route)
            self._skipped(route, *skip)
            self._next_route()
        return self._raise(self._give_up(None))

    def admitted(self, admission: Admission, now: float) -> None:
        route = self._asking
        if route is None:
            raise RuntimeError("admitted() without an Admit action")
        self._asking = None
        if admission.allowed:
            self._admitted = (route, admission)
            return
        self._changes(admission.changes)
        self._skipped(route, admission.code, admission.reason())
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

    def _open(self, route: Route, admission: Admission, now: float) -> Open:
        self._made += 1
        if self._made == 1 and route.budget is not None:
            route.budget.request(now)  # a first attempt: what the retry budget is a share of
        t = route.config.timeouts
        hard = min(self._deadline, self._start + t.total)
        watch = Watch(t, now + t.first_token, hard)
        timeout = CallTimeout(connect=max(0.001, min(t.connect, watch.deadline - now)), total=max(0.001, hard - now))
        request = self.request
        live = LiveAttempt(self.transcript, route, self._made, admission, request, timeout, watch, now, self._backoff)
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
        self._live = live
        self._events.append(AttemptStarted(route, self._made, live.request, live.continuing, self._backoff,
                                           self._last_failure, admission.probe))
        self._changes(admission.changes)
        self._backoff = 0.0
        return Open(live)

    def _midstream(self) -> str:
        """The mode of the provider whose stream broke. A structured answer (JSON output, tool calls)
        is never stitched from two generations: a seam inside JSON breaks it silently."""
        mode = self._cut_mode
        structured = self._structured or self.request.structured or self.transcript.tool_calls
        return "restart" if mode == "resume" and structured else mode

    def _next_route(self) -> None:
        self._index += 1
        self._made = 0
        self._not_before = 0.0
        self._backoff = 0.0
        self._last_place = None

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
        self._live = None
        if live.state is not None:  # its success was recorded at its first content
            self._succeeded(live, now, live.state)
        else:  # an empty answer: the end is its success
            self._ending = (live, None)
            self._judge = Judge(live.route, live.admission, Verdict.SUCCESS)

    def failed(self, live: LiveAttempt, exc: BaseException, now: float) -> None:
        """Opening the attempt or reading its body raised `exc`."""
        if live.decoder.complete:
            self.ended(live, now)  # an error after the terminal event loses nothing
        else:
            self._fail(live, self._failure(live, exc, now))

    def _fail(self, live: LiveAttempt, failure: Failure) -> None:
        self._warn_unrepresented(live)
        self._live = None
        self._ending = (live, failure)
        verdict = Verdict.FAILURE if failure.breaker_failure else Verdict.NONE
        self._judge = Judge(live.route, live.admission, verdict, decided=live.state is not None)

    def _failure(self, live: LiveAttempt, exc: BaseException, now: float) -> Failure:
        """The taxonomy's verdict on one attempt's failure, with what only the planner knows."""
        self._scrubber.scrub_exception(exc)  # before it is chained, logged or shown anywhere
        watch = live.watch
        if watch.fired is not None:
            timeout = AttemptTimeout(watch.fired, watch.seconds(watch.fired))
            timeout.__cause__ = exc
            silent = ErrorClass.SILENT if watch.fired != TOTAL else ErrorClass.TRANSIENT
            return Failure(silent, f"timeout_{watch.fired}", str(timeout), exception=timeout)
        fault = Fault("cut", str(exc)) if isinstance(exc, Truncated) else live.route.provider.fault(exc)
        failure = classify(replace(fault, message=_summary(self._scrubber.scrub(fault.message))), exc)
        if failure.error_type == "cut":
            # A stream that went quiet for more than half its allowance and was then closed is a
            # stall (next provider), not a cut to retry on the same provider.
            quiet = now - live.quiet_since
            allowance = watch.idle if watch.got_content else watch.settings.first_token
            if quiet > allowance / 2:
                failure = Failure(ErrorClass.SILENT, "stalled",
                                  f"no content for {quiet:.1f}s, then the connection was closed", exception=exc)
        if live.continuing and failure.error_class is ErrorClass.REJECTED:
            # The provider refused our continuation (an assistant prefill, say): a failure of this
            # attempt, never the final error that would hide the original cut.
            failure = Failure(ErrorClass.WRONG_FIT, "continuation_rejected", failure.message,
                              failure.status_code, None, failure.exception)
        return failure

    def serving(self, live: LiveAttempt, judgement: Judgement, now: float) -> None:
        """The success verdict of an attempt's first content was recorded."""
        live.due = None
        live.state = judgement.state
        self._changes(judgement.changes)

    def judged(self, judgement: Judgement, now: float) -> None:
        """The verdict of the attempt that just ended was recorded."""
        if self._judge is None or self._ending is None:
            raise RuntimeError("judged() without a Judge action")
        self._judge = None
        live, failure = self._ending
        self._ending = None
        self._changes(judgement.changes)
        if failure is None:
            self._succeeded(live, now, judgement.state)
        else:
            self._settle(live, failure, now, judgement.state)

    def _succeeded(self, live: LiveAttempt, now: float, state: str) -> None:
        self._record(live, now, None, state)
        self.result = self._result(live, [*self.transcript.served, live], live.decoder.finish_reason)
        self._final = Done(self.result, self._last)
        self._end(CallEnded(self.result, None))

    def _result(self, last: LiveAttempt | None, served: list[LiveAttempt], finish_reason: str | None) -> Result:
        """The caller's Result: `last` served it, `served` are the attempts whose text it kept."""
        text = self.transcript.text
        usage = Usage(sum(a.decoder.input_tokens for a in served), sum(a.decoder.output_tokens for a in served))
        if last is None:
            return Result(text, "", "", usage, finish_reason, list(self.attempts), self.transcript.resumed)
        decoder = last.decoder
        return Result(
            text=text, provider=last.name, model=decoder.model or last.model, usage=usage,
            finish_reason=finish_reason, attempts=list(self.attempts), resumed=self.transcript.resumed,
            tool_calls=decoder.tool_calls(), refusal=decoder.refusal or (text if decoder.refusal_is_text else None))

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
            self._raise(self._interrupted(None))
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

    def cancelled(self, now: float) -> Judge | None:
        """The caller closed or cancelled. After content that is the provider's success; before it,
        no verdict at all. Returns the verdict to record (best effort: the caller is leaving)."""
        live, judge = self._live, self._judge
        if live is not None:
            self._live = None
            if live.due is not None or live.state is None:  # a success not recorded yet, or no verdict
                verdict = Verdict.SUCCESS if live.first_chunk_at is not None else Verdict.NONE
                judge = Judge(live.route, live.admission, verdict)
            cancel = Failure(ErrorClass.CALLER, "cancelled", "the caller closed the stream")
            self._record(live, now, cancel, live.state, cancelled=True)
        if self._started and self._final is None and self.attempts:
            # What is known so far, for a caller that broke off on purpose (finish_reason None).
            kept = self.transcript.served
            last = live or (kept[-1] if kept else None)
            self.result = self._result(last, [*kept, live] if live is not None and live.delivered else kept, None)
        self._end(CallEnded(None, None, cancelled=True))
        return judge

    # ---- records and events

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _changes(self, changes: tuple[Change, ...]) -> None:
        for change in changes:
            self._events.append(BreakerChanged(change))

    def _record(self, live: LiveAttempt, now: float, failure: Failure | None, state: str | None, *,
                retry_refused: str | None = None, cancelled: bool = False) -> None:
        first = None if live.first_chunk_at is None else live.first_chunk_at - live.started
        attempt = Attempt(
            provider=live.name, model=live.model, number=live.number,
            outcome="ok" if failure is None else "error",
            error_type=failure.error_type if failure else None,
            status_code=failure.status_code if failure else None,
            message=failure.message if failure else None,
            retry_after=failure.retry_after if failure else None,
            started_at=live.started_wall, duration_s=now - live.started, first_chunk_s=first,
            backoff_s=live.backoff, error_class=failure.error_class.value if failure else None,
            breaker_state=state, retry_refused=retry_refused)
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

    def _interrupted(self, reason: str | None) -> StreamInterrupted:
        cut = self._cut
        assert cut is not None
        why = f"{cut.error_type}: {cut.message}" + (f" ({reason})" if reason else "")
        error = StreamInterrupted(why, self.transcript.text, self.attempts)
        error.__cause__ = cut.exception  # the original cut, never a later continuation's refusal
        return error

    def _give_up(self, reason: str | None) -> FailoverError:
        if self.transcript.delivered:
            return self._interrupted(reason or "no provider could continue")
        if reason is None:
            tried = [a for a in self.attempts if a.outcome == "error"]
            if not tried:
                skipped = "; ".join(f"{a.provider}: {a.message}" for a in self.attempts)
                reason = f"no provider available ({skipped})"
            else:
                reason = f"all providers failed; last error: {tried[-1].provider}: {tried[-1].error_type}"
        error = AllProvidersFailed(reason, self.attempts)
        if self._last_failure is not None:
            error.__cause__ = self._last_failure.exception
        return error


def _summary(text: str) -> str:
    """One line of at most _SUMMARY characters (scrub first: a cut must never split a secret)."""
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY else text[: _SUMMARY - 1] + "…"


_NEEDS = {TOOLS: "tools", IMAGES: "images", JSON_SCHEMA: "a JSON schema output"}

# Params that make the answer structured (JSON, tool calls): such an answer is never stitched from
# two generations, because a seam inside JSON or a tool call's arguments breaks it silently.
STRUCTURED_PARAMS = frozenset({"response_format", "tools", "tool_choice", "functions", "output_format",
                               "output_config"})
