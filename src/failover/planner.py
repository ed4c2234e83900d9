"""The attempt loop's decisions, written once and shared by the sync and the async driver.

The planner does no I/O and never sleeps: a driver asks `decide(now)` what to do next (sleep, open an
attempt on a provider, or raise), performs it, and reports back what happened (`first_text`,
`finished`, `failed`, `cancelled`). The order of the policies is visible in `decide` and `failed`:
deadline ⊃ failover ⊃ retry ⊃ breaker ⊃ attempt timeout.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from failover.errors import AllProvidersFailed, Attempt, FailoverError, RequestRejected, StreamInterrupted
from failover.observe import NULL_OBSERVER, Observer
from failover.policies.breaker import Admission
from failover.policies.classify import AttemptTimeout, ErrorClass, Failure, Truncated, classify
from failover.policies.resume import Seam, continuation
from failover.policies.timeouts import Watch
from failover.providers.base import CallTimeout
from failover.types import Result, Usage

if TYPE_CHECKING:
    from failover.config import ProviderConfig
    from failover.policies.breaker import Breaker
    from failover.policies.budget import RetryBudget
    from failover.policies.retry import RetryPolicy
    from failover.providers.base import Decoder, Provider
    from failover.request import Request

log = logging.getLogger("failover")

# One generator for every call: seeding a new one from os.urandom costs ~10 µs and 2.5 KiB a call.
_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class Route:
    """One provider of the chain with its policies; built once per router."""

    provider: Provider
    config: ProviderConfig
    retry: RetryPolicy
    breaker: Breaker
    budget: RetryBudget | None = None  # the provider's retry budget, shared by the router's calls

    @property
    def name(self) -> str:
        return self.provider.name


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Open:
    """Open an attempt. `seam` filters a continuation's repeat of delivered text; `discard` is the
    text a restart throws away (the first chunk of this attempt carries `restart=True`)."""

    route: Route
    request: Request
    timeout: CallTimeout
    watch: Watch
    decoder: Decoder
    seam: Seam | None = None
    discard: str | None = None


@dataclass(frozen=True, slots=True)
class Raise:
    error: FailoverError


Decision = Sleep | Open | Raise


@dataclass(slots=True)
class _Live:
    """The attempt in progress."""

    route: Route
    number: int
    admission: Admission
    started: float
    started_wall: float
    backoff: float
    decoder: Decoder
    continuing: bool = False  # this attempt continues text another attempt delivered
    first_chunk_at: float | None = None
    delivered_from: int = 0  # index into Planner.parts where this attempt's text starts


class Planner:
    def __init__(self, routes: list[Route], request: Request, *, now: float,
                 rng: random.Random | None = None, observer: Observer = NULL_OBSERVER) -> None:
        self.routes = routes
        self.observer = observer
        self._started = False
        self._ended = False
        self.request = request
        self.attempts: list[Attempt] = []
        self.parts: list[str] = []  # the text the caller has received, in order
        self.result: Result | None = None
        self._rng = rng or _RNG
        self._start = now
        self._deadline = now + max(r.config.timeouts.total for r in routes)
        self._index = 0
        self._made = 0  # attempts made on routes[_index]
        self._not_before = now
        self._backoff = 0.0
        self._live: _Live | None = None
        self._last_failure: Failure | None = None
        self._cut: Failure | None = None  # the failure that first broke a stream with text delivered
        self._cut_mode = "raise"
        self._structured = bool(STRUCTURED_PARAMS & request_params(routes))
        self._pending: FailoverError | None = None
        self._served: list[_Live] = []  # attempts whose text the caller kept (usage counts these)
        self._resumed = False

    # ---- decisions -------------------------------------------------------------------------

    def decide(self, now: float) -> Decision:
        if not self._started:
            self._started = True
            self.observer.call_started(self.request)
        if self._pending is not None:
            return self._raise(self._pending)
        if now >= self._deadline:
            return self._raise(self._give_up(f"call deadline of {self._deadline - self._start:g}s reached"))
        if now < self._not_before:
            return Sleep(self._not_before - now)
        while self._index < len(self.routes):
            route = self.routes[self._index]
            skip = self._skip_reason(route, now)
            if skip is None:
                admission = route.breaker.admit(now)
                if admission.allowed:
                    return self._open(route, admission, now)
                skip = admission.reason()
            self._record_skip(route, skip, now)
            self._next_route()
        return self._raise(self._give_up(None))

    def _raise(self, error: FailoverError) -> Raise:
        self._end(None, error)
        return Raise(error)

    def _end(self, result: Result | None, error: BaseException | None, *, cancelled: bool = False) -> None:
        if self._started and not self._ended:
            self._ended = True
            self.observer.call_ended(result, error, cancelled=cancelled)

    def _skip_reason(self, route: Route, now: float) -> str | None:
        if route.config.missing_env:
            return f"{', '.join('$' + v for v in route.config.missing_env)} is not set"
        if now >= self._start + route.config.timeouts.total:
            return "its total deadline has passed"
        return None

    def _open(self, route: Route, admission: Admission, now: float) -> Open:
        self._made += 1
        if self._made == 1 and route.budget is not None:
            route.budget.request(now)  # a first attempt: what the retry budget is a share of
        decoder = route.provider.decoder()
        live = self._live = _Live(route, self._made, admission, now, time.time(), self._backoff, decoder,
                                  delivered_from=len(self.parts))
        t = route.config.timeouts
        hard = min(self._deadline, self._start + t.total)
        first_token_at = now + t.first_token
        headers = max(0.001, min(first_token_at, hard) - now)
        timeout = CallTimeout(connect=min(t.connect, headers), headers=headers)
        watch = Watch(t, first_token_at, hard)
        if not self.parts:
            decision = Open(route, self.request, timeout, watch, decoder)
        else:
            delivered = "".join(self.parts)
            if self._midstream() == "restart":
                self.parts.clear()
                self._served.clear()
                live.delivered_from = 0
                log.warning("failover: restarting the answer on %s; %d characters to discard", route.name,
                            len(delivered))
                decision = Open(route, self.request, timeout, watch, decoder, discard=delivered)
            else:
                live.continuing = True
                request = continuation(self.request, delivered, prefill=route.config.supports_prefill,
                                       prompt=route.config.continue_prompt)
                decision = Open(route, request, timeout, watch, decoder, seam=Seam(delivered))
        self.observer.attempt_started(route, self._made, decision.request, continuing=live.continuing,
                                      backoff_s=self._backoff, previous=self._last_failure)
        self._backoff = 0.0
        return decision

    def _midstream(self) -> str:
        """The mode of the provider whose stream broke; a structured answer is never stitched."""
        assert self._cut is not None
        mode = self._cut_mode
        if mode == "resume" and self._structured:
            return "restart"
        return mode

    def _next_route(self) -> None:
        self._index += 1
        self._made = 0
        self._not_before = 0.0
        self._backoff = 0.0

    # ---- what happened ---------------------------------------------------------------------

    def first_text(self, now: float) -> None:
        live = self._live
        if live is not None and live.first_chunk_at is None:
            live.first_chunk_at = now
            if live.continuing:
                self._resumed = True

    def finished(self, now: float) -> Result | None:
        """The provider's stream ended. A Result when it was complete, else None (decide again)."""
        live = self._require_live()
        decoder = live.decoder
        if not decoder.complete:
            self.failed(Truncated("stream ended without its terminal event"), now)
            return None
        route = live.route
        route.breaker.success(live.admission)
        self._record(live, now, "ok")
        served = [*self._served, live]
        self.result = Result(
            text="".join(self.parts), provider=route.name, model=decoder.model or route.provider.model,
            usage=Usage(sum(a.decoder.input_tokens for a in served), sum(a.decoder.output_tokens for a in served)),
            finish_reason=decoder.finish_reason, attempts=list(self.attempts), resumed=self._resumed)
        self._end(self.result, None)
        return self.result

    def failed(self, exc: BaseException, now: float, timed_out: Watch | None = None) -> None:
        """An attempt failed. `timed_out` is its watch when our own deadline cut it."""
        live = self._require_live()
        failure = self._failure(exc, live, now, timed_out)
        route = live.route
        if failure.breaker_failure:
            route.breaker.failure(live.admission)
        else:
            route.breaker.release(live.admission)
        if self.parts and self._cut is None:
            self._cut, self._cut_mode = failure, route.config.midstream
        retry_in, refused = self._retry(route, failure, now)  # decided first: the Attempt says if refused
        self._record(live, now, "error", failure, retry_refused=refused)
        self._last_failure = failure

        delivered_here = len(self.parts) > live.delivered_from
        if delivered_here:
            self._served.append(live)
        if failure.error_class is ErrorClass.REJECTED and not live.continuing \
                and not route.config.failover_on_reject:
            self._pending = RequestRejected(failure.message, self.attempts, provider=route.name,
                                            status_code=failure.status_code)
            self._pending.__cause__ = failure.exception
            return
        if self.parts and self._cut_mode == "raise":
            self._pending = self._interrupted(None)
            return
        if retry_in is not None:
            self._not_before = now + retry_in
            self._backoff = retry_in
            return
        self._next_route()

    def _failure(self, exc: BaseException, live: _Live, now: float, timed_out: Watch | None) -> Failure:
        """The taxonomy's verdict on one attempt's failure, with what only the planner knows."""
        if timed_out is not None and timed_out.fired is not None:
            kind = timed_out.fired
            timeout = AttemptTimeout(kind, timed_out.seconds(kind))
            timeout.__cause__ = exc
            exc = timeout
        failure = classify(exc)
        if failure.error_type == "timeout_first_token" and timed_out is not None \
                and timed_out.hard <= timed_out.first_token_at and now >= timed_out.hard - 0.005:
            # The header wait was cut short by the call's deadline, not by the provider's silence.
            failure = replace(failure, error_class=ErrorClass.TRANSIENT, error_type="timeout_total",
                              message="call deadline reached while waiting for the response")
        key = route_key(live.route)
        if key and key in failure.message:  # a provider that echoes the key must not leak it
            failure = replace(failure, message=failure.message.replace(key, "***"))
        if live.continuing and failure.error_class is ErrorClass.REJECTED:
            # The provider refused our continuation (an assistant prefill, say): a failure of this
            # attempt, never the final error that would hide the original cut.
            failure = Failure(ErrorClass.WRONG_FIT, "continuation_rejected", failure.message,
                              failure.status_code, None, failure.exception)
        return failure

    def _retry(self, route: Route, failure: Failure, now: float) -> tuple[float | None, str | None]:
        """The backoff before another attempt on the same provider (None: move on), and why a retry
        the retry policy allowed was refused anyway ("budget": the provider's retry budget)."""
        if not (failure.retryable and route.retry.allows(self._made)) or (self.parts and self._cut_mode == "raise"):
            return None, None
        delay = route.retry.backoff(self._made, failure.retry_after, self._rng)
        hard = self._start + route.config.timeouts.total
        if delay is None or now + delay >= min(hard, self._deadline):
            return None, None
        if route.budget is not None and not route.budget.try_retry(now):
            return None, "budget"
        return delay, None

    def cancelled(self, now: float) -> None:
        """The caller closed or cancelled. After a chunk that is the provider's success; before
        one, no verdict at all."""
        live = self._live
        if live is not None:
            if live.first_chunk_at is not None:
                live.route.breaker.success(live.admission)
            else:
                live.route.breaker.release(live.admission)
            self._record(live, now, "error", Failure(ErrorClass.CALLER, "cancelled", "the caller closed the stream"))
        self._end(None, None, cancelled=True)

    # ---- records ---------------------------------------------------------------------------

    def _record(self, live: _Live, now: float, outcome: str, failure: Failure | None = None, *,
                retry_refused: str | None = None) -> None:
        attempt = self._attempt(live, now, outcome, failure)
        if retry_refused is not None:
            attempt = replace(attempt, retry_refused=retry_refused)
        self.attempts.append(attempt)
        self._live = None
        self.observer.attempt_ended(attempt, live.decoder, failure)

    def _require_live(self) -> _Live:
        if self._live is None:
            raise RuntimeError("no attempt in progress")
        return self._live

    def _attempt(self, live: _Live, now: float, outcome: str, failure: Failure | None = None) -> Attempt:
        first = None if live.first_chunk_at is None else live.first_chunk_at - live.started
        return Attempt(
            provider=live.route.name, model=live.route.provider.model, number=live.number,
            outcome="ok" if outcome == "ok" else "error",
            error_type=failure.error_type if failure else None,
            status_code=failure.status_code if failure else None,
            message=failure.message if failure else None,
            retry_after=failure.retry_after if failure else None,
            started_at=live.started_wall, duration_s=now - live.started, first_chunk_s=first,
            backoff_s=live.backoff, error_class=failure.error_class.value if failure else None,
            breaker_state=live.route.breaker.state)

    def _record_skip(self, route: Route, reason: str, now: float) -> None:
        attempt = Attempt(
            provider=route.name, model=route.provider.model, number=self._made + 1, outcome="skipped",
            error_type="skipped", message=reason, started_at=time.time(), duration_s=0.0,
            breaker_state=route.breaker.state)
        self.attempts.append(attempt)
        self.observer.attempt_skipped(attempt)

    def _interrupted(self, reason: str | None) -> StreamInterrupted:
        cut = self._cut
        assert cut is not None
        why = f"{cut.error_type}: {cut.message}" + (f" ({reason})" if reason else "")
        error = StreamInterrupted(why, "".join(self.parts), self.attempts)
        error.__cause__ = cut.exception  # the original cut, never a later continuation's refusal
        return error

    def _give_up(self, reason: str | None) -> FailoverError:
        if self.parts:
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


# Params that make the answer structured (JSON, tool calls): such an answer is never stitched from
# two generations, because a seam inside JSON or a tool call's arguments breaks it silently.
STRUCTURED_PARAMS = frozenset({"response_format", "tools", "tool_choice", "functions", "output_format",
                               "output_config"})


def route_key(route: Route) -> str:
    key = route.config.api_key
    return key.get_secret_value() if key is not None else ""


def request_params(routes: list[Route]) -> set[str]:
    return {key for r in routes for key in r.config.params}
