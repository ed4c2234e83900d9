"""The planner's decisions (DESIGN §4–§6) as tables: scripted attempt outcomes, a fake clock, real
breakers and budgets on that clock, a fake provider whose decoder is the real OpenAI one. No sockets,
no SDKs, no sleeps: a driver here performs the planner's actions exactly as stream.py does."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from failover import AllProvidersFailed, RequestRejected, StreamInterrupted
from failover.actions import Admit, Adopt, Cancel, Done, Open, Probe, Raise, Read, Sleep
from failover.attempt import Judge, LiveAttempt
from failover.config import parse_config
from failover.errors import FailoverError
from failover.events import AttemptEnded, AttemptStarted, BreakerChanged, ProviderSkipped
from failover.planner import Planner
from failover.policies.breaker import Breaker, Verdict
from failover.policies.budget import RetryBudget
from failover.policies.retry import RetryPolicy
from failover.providers.base import Decoder, Fault, Provider
from failover.providers.openai import OpenAIDecoder
from failover.redact import Scrubber
from failover.route import Route
from failover.types import Chunk, Result
from failover.validate import build_request

ANSWER = ["Breakers ", "stop ", "traffic ", "to ", "a ", "failing ", "provider ", "quickly."]
TEXT = "".join(ANSWER)


class Boom(Exception):
    """A provider failure, described by the fault the provider would report."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.message)
        self.fault = fault


class FakeProvider(Provider):
    kind = "openai"
    default_base_url = "http://fake.invalid/v1"

    @classmethod
    def sdk(cls) -> Any:
        return None  # no SDK: nothing here opens a connection

    @classmethod
    def create_function(cls) -> Callable[..., Any]:
        raise AssertionError("a unit test never reaches an SDK")

    def streaming(self, client: Any, request: Any, timeout: Any) -> Any:
        raise AssertionError("a unit test never opens a connection")

    def _make_client(self, sdk: Any, http: Any, *, sync: bool) -> Any:
        raise AssertionError("a unit test never makes a client")

    def decoder(self) -> Decoder:
        return OpenAIDecoder()

    def sdk_fault(self, exc: BaseException) -> Fault | None:
        return exc.fault if isinstance(exc, Boom) else None


def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "served-model",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def text_frames(texts: list[str]) -> list[bytes]:
    return [frame({"content": t}) for t in texts]


END = frame({}, "stop") + b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":8}}\n\n' \
    + b"data: [DONE]\n\n"


# ---- scripted outcomes: what one attempt does, played by the fake driver


@dataclass
class Outcome:
    frames: list[bytes] = field(default_factory=list)  # body bytes before the end, 0.01 s apart
    fault: Fault | None = None  # fails with this fault after the frames (None: ends)
    complete: bool = True  # ends with the terminal event (when no fault)
    wait: float = 0.0  # seconds the attempt takes before its end
    fired: bool = False  # our own deadline cut it (first_token / idle / total, by the watch)
    first: float = 0.0  # seconds before the first frame (a slow first chunk)

    def items(self, start: float) -> list[tuple[float, bytes | Fault | None]]:
        """What a reader of this attempt sees, when: blocks, then its end (None) or its fault."""
        t, out = start + self.first, []
        for data in self.frames:
            t += 0.01
            out.append((t, data))
        t += self.wait
        if self.fault is not None:
            out.append((t, self.fault))
        else:
            if self.complete:
                out.append((t, END))
            out.append((t, None))
        return out


def ok(texts: list[str] | None = None, wait: float = 0.0) -> Outcome:
    return Outcome(text_frames(ANSWER if texts is None else texts), wait=wait)


def fail(fault: Fault, after: int = 0, wait: float = 0.0) -> Outcome:
    return Outcome(text_frames(ANSWER[:after]), fault=fault, wait=wait)


def status(http: int, message: str = "boom", retry_after: float | None = None, **kw: str) -> Fault:
    return Fault("status", message, http, retry_after=retry_after, **kw)


def timeout(after: int = 0) -> Outcome:
    return Outcome(text_frames(ANSWER[:after]), fault=Fault("timeout", "timed out"), fired=True)


def truncated(after: int) -> Outcome:
    return Outcome(text_frames(ANSWER[:after]), complete=False)


@dataclass
class Run:
    chunks: list[Chunk]
    result: Result | None
    error: FailoverError | None
    sleeps: list[float]
    opened: list[tuple[str, bool]]  # (provider, is a continuation) per attempt sent
    events: list[Any]
    routes: list[Route]
    requests: list[Any]
    cancelled: list[str] = field(default_factory=list)  # attempts that lost a hedge race
    probes: list[str] = field(default_factory=list)  # background probes started
    adopted: list[str] = field(default_factory=list)  # racing attempts read inline once the race was over

    def summary(self) -> list[tuple[str, str, str | None]]:
        attempts = (self.result or self.error).attempts  # type: ignore[union-attr]
        return [(a.provider, a.outcome, a.error_type) for a in attempts]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0


def routes(config: dict[str, Any]) -> list[Route]:
    cfg = parse_config(config)
    out = []
    for p in cfg.providers:
        budget = RetryBudget(p.retry.budget) if p.retry.budget is not None else None
        out.append(Route(FakeProvider(p), p, RetryPolicy(p.retry),
                         Breaker(p.name, p.breaker, probe_lease=p.timeouts.total), budget))
    return out


def config(*names: str, **defaults: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "retry": {"max_attempts": 3, "initial_backoff": 0.5, "max_backoff": 4.0, "max_retry_after": 5.0,
                  "budget": False},
        "breaker": {"fail_max": 5, "reset_timeout": 30.0},
        "timeouts": {"connect": 1.0, "first_token": 2.0, "idle": 2.0, "total": 60.0},
    }
    for key, value in defaults.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    providers = [{"name": n, "type": "openai", "model": f"{n}-model", "api_key": "sk-test-key-0123456789"}
                 for n in names or ("a", "b")]
    return {"providers": providers, "defaults": base}


def drive(script: dict[str, list[Outcome]], cfg: dict[str, Any] | None = None, *,
          built: list[Route] | None = None, clock: Clock | None = None, break_after: int | None = None,
          probes_fail: bool = False) -> Run:
    """Perform the planner's actions as stream.py does, on a fake clock; attempts follow `script` per
    provider. Racing attempts (hedging) are simulated as events in time order."""
    clock = clock or Clock()
    rs = built or routes(cfg or config())
    planner = Planner(rs, build_request([{"role": "user", "content": "hi"}]), now=clock.now,
                      scrubber=Scrubber(["sk-test-key-0123456789"]))
    run = Run([], None, None, [], [], [], rs, [])
    pending: list[tuple[float, int, LiveAttempt, bytes | Fault | None]] = []  # racing attempts' items
    order = iter(range(10**9))
    script_of: dict[LiveAttempt, Outcome] = {}

    def take(live: LiveAttempt, got: bytes | Fault | None) -> bool:
        """One item of an attempt, as a driver handles it; False once the caller broke off."""
        if got is None:
            planner.ended(live, clock.now)
        elif isinstance(got, Fault):
            if script_of[live].fired:
                live.watch.expire()
            planner.failed(live, Boom(got), clock.now)
        else:
            fed = live.feed(got, clock.now)
            if live.due is not None:
                planner.serving(live, live.due.record(clock.now), clock.now)
            for chunk in fed:
                run.chunks.append(chunk)
                if break_after is not None and len(run.chunks) >= break_after:
                    for judge in planner.cancelled(clock.now):
                        judge.record(clock.now)
                    return False
                live.resume(clock.now)
        return True

    def inline(live: LiveAttempt, items: list[tuple[float, bytes | Fault | None]]) -> bool:
        """The driver reads the attempt to its end; False once the caller broke off."""
        for t, got in items:
            clock.now = max(clock.now, t)
            if not take(live, got):
                return False
            if got is None or isinstance(got, Fault):
                break
        return True

    for _ in range(500):
        action = planner.next(clock.now)
        run.events += planner.take_events()
        if isinstance(action, Sleep):
            run.sleeps.append(round(action.seconds, 6))
            clock.now += action.seconds
        elif isinstance(action, Admit):
            planner.admitted(action.route.breaker.admit(clock.now), clock.now)
        elif isinstance(action, Judge):
            planner.judged(action.record(clock.now), clock.now)
        elif isinstance(action, Open):
            live = action.attempt
            run.opened.append((live.name, live.continuing))
            run.requests.append(live.request)
            outcome = script_of[live] = script[live.name].pop(0)
            items = outcome.items(clock.now)
            if action.race:
                for t, got in items:
                    heapq.heappush(pending, (t, next(order), live, got))
                continue
            if not inline(live, items):
                break
        elif isinstance(action, Adopt):
            live = action.attempt
            run.adopted.append(live.name)
            mine = sorted(p for p in pending if p[2] is live)
            pending = [p for p in pending if p[2] is not live]
            heapq.heapify(pending)
            if not inline(live, [(t, got) for t, _, _, got in mine]):
                break
        elif isinstance(action, Read):
            if pending and (action.until is None or pending[0][0] <= action.until):
                t, _, live, got = heapq.heappop(pending)
                clock.now = max(clock.now, t)
                if not live.stopped and not take(live, got):
                    break
            else:
                assert action.until is not None, "Read forever with nothing pending"
                clock.now = max(clock.now, action.until)
        elif isinstance(action, Cancel):
            run.cancelled.append(action.attempt.name)
            pending = [p for p in pending if p[2] is not action.attempt]
            heapq.heapify(pending)
        elif isinstance(action, Probe):
            run.probes.append(action.route.name)
            verdict = Verdict.FAILURE if probes_fail else Verdict.SUCCESS
            action.route.breaker.record(action.admission, verdict, clock.now)
        elif isinstance(action, Done):
            run.chunks += action.last
            run.result = action.result
            break
        elif isinstance(action, Raise):
            run.error = action.error
            break
    if break_after is not None and run.result is None:
        run.result = planner.result
    run.events += planner.take_events()
    return run


# ---- failover and retry (DESIGN §4)

OK = [("a", "ok", None)]


@pytest.mark.parametrize(("name", "a", "expected", "sleeps"), [
    ("healthy", [ok()], OK, 0),
    ("429 retried on the same provider", [fail(status(429)), ok()], [("a", "error", "rate_limit"), *OK], 1),
    ("500, 502, 503, 504, 529 too", [fail(status(503)), fail(status(529)), ok()],
     [("a", "error", "unavailable"), ("a", "error", "overloaded"), *OK], 2),
    ("a reset", [fail(Fault("reset", "reset")), ok()], [("a", "error", "connection_reset"), *OK], 1),
    ("a cut before any text", [truncated(0), ok()], [("a", "error", "cut"), *OK], 1),
    ("a malformed event", [fail(Fault("malformed", "junk")), ok()], [("a", "error", "malformed_event"), *OK], 1),
    ("an in-band overload", [fail(Fault("inband", "Overloaded", type="overloaded_error")), ok()],
     [("a", "error", "overloaded"), *OK], 1),
])
def test_transient_failures_are_retried_on_the_same_provider(name: str, a: list[Outcome], expected: list[Any],
                                                             sleeps: int) -> None:
    run = drive({"a": a, "b": []})
    assert run.summary() == expected
    assert len(run.sleeps) == sleeps and all(0 <= s <= 4.0 for s in run.sleeps)
    assert run.result is not None and run.result.text == TEXT and run.result.provider == "a"


@pytest.mark.parametrize(("fault", "name", "verdict"), [
    (status(429, code="insufficient_quota"), "quota", True),
    (status(401), "auth", True),
    (status(403), "permission", True),
    (status(404), "not_found", True),
    (status(402), "quota", True),
    (Fault("timeout", "timed out"), "timeout_first_token", True),
    (status(400, code="context_length_exceeded"), "context_length", False),
    (status(413), "too_large", False),
    (Fault("local", "UnicodeEncodeError: surrogates not allowed"), "local_error", False),
])
def test_failures_that_fail_over_at_once(fault: Fault, name: str, verdict: bool) -> None:
    run = drive({"a": [fail(fault)], "b": [ok()]})
    assert run.summary() == [("a", "error", name), ("b", "ok", None)]
    assert run.sleeps == []
    assert run.routes[0].breaker.fail_counter == (1 if verdict else 0)  # a breaker failure, or no verdict


def test_retries_run_out_then_the_next_provider_serves() -> None:
    run = drive({"a": [fail(status(500))] * 3, "b": [ok()]})
    assert [s[0] for s in run.summary()] == ["a", "a", "a", "b"]
    assert len(run.sleeps) == 2
    assert all(0 <= s <= 0.5 * 2 ** i for i, s in enumerate(run.sleeps))  # full jitter under the cap


def test_retry_after_is_a_floor_and_one_over_the_cap_fails_over_at_once() -> None:
    run = drive({"a": [fail(status(429, retry_after=3.0)), ok()], "b": []})
    assert run.sleeps == [3.0] and run.result.provider == "a"  # type: ignore[union-attr]
    run = drive({"a": [fail(status(429, retry_after=9.0))], "b": [ok()]})
    assert run.sleeps == [] and run.result.provider == "b"  # type: ignore[union-attr]
    assert run.summary()[0] == ("a", "error", "rate_limit")


def test_a_rejected_request_is_not_sent_anywhere_else() -> None:
    run = drive({"a": [fail(status(400, "messages.0.content must not be empty"))], "b": [ok()]})
    assert isinstance(run.error, RequestRejected) and run.error.status_code == 400
    assert run.opened == [("a", False)]
    run = drive({"a": [fail(status(400, "nope"))], "b": [ok()]}, config(failover_on_reject=True))
    assert run.result.provider == "b"  # type: ignore[union-attr]


def test_every_provider_failing_is_all_providers_failed_with_the_last_real_error() -> None:
    run = drive({"a": [fail(status(401, "bad key"))], "b": [fail(status(404, "no model"))]})
    assert isinstance(run.error, AllProvidersFailed)
    assert isinstance(run.error.__cause__, Boom) and "no model" in str(run.error.__cause__)
    assert "last error: b: not_found" in str(run.error)


def test_the_deadline_bounds_the_backoff() -> None:
    cfg = config(timeouts={"total": 1.0, "connect": 0.5, "first_token": 0.5, "idle": 0.5})
    run = drive({"a": [fail(status(429, retry_after=2.0))], "b": [ok()]}, cfg)
    assert run.sleeps == [] and run.result.provider == "b"  # type: ignore[union-attr]


def test_the_call_deadline_ends_the_call() -> None:
    cfg = config(timeouts={"total": 3.0, "connect": 0.5, "first_token": 1.0, "idle": 1.0})
    run = drive({"a": [fail(status(500), wait=1.0)] * 3, "b": [fail(status(500), wait=1.0)] * 3}, cfg)
    assert isinstance(run.error, AllProvidersFailed)
    assert "deadline" in str(run.error) or "total deadline" in str(run.error)


def test_a_missing_key_is_skipped_with_its_reason() -> None:
    cfg = config()
    cfg["providers"][0]["api_key"] = "${FAILOVER_TEST_UNSET_VARIABLE}"
    run = drive({"b": [ok()]}, cfg)
    assert run.summary() == [("a", "skipped", "skipped"), ("b", "ok", None)]
    skipped = [e for e in run.events if isinstance(e, ProviderSkipped)]
    assert skipped[0].code == "missing_api_key" and "$FAILOVER_TEST_UNSET_VARIABLE" in skipped[0].attempt.message


def test_the_retry_budget_refuses_a_retry_and_the_call_fails_over() -> None:
    cfg = config(retry={"budget": {"ratio": 0.0, "min_retries": 0, "window": 10.0}})
    run = drive({"a": [fail(status(503))], "b": [ok()]}, cfg)
    assert run.summary() == [("a", "error", "unavailable"), ("b", "ok", None)]
    assert run.result.attempts[0].retry_refused == "budget"  # type: ignore[union-attr]


# ---- the breaker (DESIGN §5)


def test_an_open_breaker_is_skipped_and_the_failure_that_opened_it_ends_the_retries() -> None:
    cfg = config(breaker={"fail_max": 2, "failure_rate": 0})
    built, clock = routes(cfg), Clock()
    run = drive({"a": [fail(status(503))] * 3, "b": [ok()]}, built=built, clock=clock)
    assert run.summary() == [("a", "error", "unavailable"), ("a", "error", "unavailable"), ("b", "ok", None)]
    assert run.result.attempts[1].breaker_state == "open"  # type: ignore[union-attr]
    changes = [e.change for e in run.events if isinstance(e, BreakerChanged)]
    assert [(c.old, c.new) for c in changes] == [("closed", "open")]
    again = drive({"b": [ok()]}, built=built, clock=clock)
    assert again.summary() == [("a", "skipped", "skipped"), ("b", "ok", None)]
    assert [e.code for e in again.events if isinstance(e, ProviderSkipped)] == ["breaker_open"]


def test_every_breaker_open_fails_fast_naming_each_and_its_probe() -> None:
    cfg = config(breaker={"fail_max": 1}, retry={"max_attempts": 1})
    built, clock = routes(cfg), Clock()
    drive({"a": [fail(status(500))], "b": [fail(status(500))]}, built=built, clock=clock)
    run = drive({}, built=built, clock=clock)
    assert isinstance(run.error, AllProvidersFailed) and run.opened == []
    assert "a: breaker open, probe in 30.0s" in str(run.error) and "b: breaker open" in str(run.error)


def test_a_failed_probe_moves_on_without_a_backoff() -> None:
    cfg = config(breaker={"fail_max": 1, "reset_timeout": 5.0, "probe": "request"})
    built, clock = routes(cfg), Clock()
    drive({"a": [fail(status(503))], "b": [ok()]}, built=built, clock=clock)
    clock.now += 5.0
    run = drive({"a": [fail(status(503))], "b": [ok()]}, built=built, clock=clock)
    assert run.summary() == [("a", "error", "unavailable"), ("b", "ok", None)]
    assert run.sleeps == []
    started = [e for e in run.events if isinstance(e, AttemptStarted)]
    assert started[0].probe is True


# ---- streams that break after text was delivered (DESIGN §6)


def test_resume_after_a_cut_continues_on_the_same_provider_without_repeating() -> None:
    cfg = config(midstream="resume")
    run = drive({"a": [truncated(3), ok(ANSWER)], "b": []}, cfg)  # the continuation starts over
    assert run.opened == [("a", False), ("a", True)]
    assert "".join(c.text for c in run.chunks) == TEXT  # the repeat was dropped by the seam
    assert run.result.resumed and run.result.text == TEXT  # type: ignore[union-attr]
    continuation = run.requests[1]
    assert continuation.messages[-2].role == "assistant" and continuation.messages[-2].content == "".join(ANSWER[:3])
    assert continuation.messages[-1].role == "user"  # the continue prompt (no prefill)


def test_a_stall_after_text_resumes_on_the_next_provider_at_once() -> None:
    run = drive({"a": [timeout(after=3)], "b": [ok(ANSWER[3:])]}, config(midstream="resume"))
    assert run.summary() == [("a", "error", "timeout_idle"), ("b", "ok", None)]
    assert run.opened == [("a", False), ("b", True)] and run.sleeps == []
    assert "".join(c.text for c in run.chunks) == TEXT


def test_a_quiet_stream_closed_by_the_server_is_a_stall_not_a_cut() -> None:
    quiet = Outcome(text_frames(ANSWER[:3]), complete=False, wait=1.5)  # idle is 2 s: quiet for over half
    run = drive({"a": [quiet], "b": [ok(ANSWER[3:])]}, config(midstream="resume"))
    assert run.summary() == [("a", "error", "stalled"), ("b", "ok", None)]
    assert run.sleeps == []


def test_raise_sends_nothing_after_the_cut() -> None:
    run = drive({"a": [truncated(3), ok()], "b": [ok()]}, config(midstream="raise"))
    assert isinstance(run.error, StreamInterrupted) and run.error.partial_text == "".join(ANSWER[:3])
    assert run.opened == [("a", False)]


def test_restart_keeps_the_text_until_the_new_answer_arrives() -> None:
    run = drive({"a": [truncated(3), fail(status(500)), ok()], "b": []}, config(midstream="restart"))
    restarts = [c for c in run.chunks if c.restart]
    assert len(restarts) == 1 and restarts[0].discard == "".join(ANSWER[:3])
    assert run.result.text == TEXT and not run.result.resumed  # type: ignore[union-attr]
    failed = drive({"a": [truncated(3), fail(status(500)), fail(status(500))], "b": [fail(status(401))]},
                   config(midstream="restart"))
    assert isinstance(failed.error, StreamInterrupted) and failed.error.partial_text == "".join(ANSWER[:3])


def test_a_rejected_continuation_fails_that_attempt_and_never_hides_the_cut() -> None:
    run = drive({"a": [truncated(3), fail(status(400, "prefill not supported"))], "b": [fail(status(401))]},
                config(midstream="resume", retry={"max_attempts": 2}))
    assert isinstance(run.error, StreamInterrupted)
    assert run.summary()[1] == ("a", "error", "continuation_rejected")
    assert "cut" in run.error.reason


def test_the_same_malformed_event_at_the_same_place_is_not_tried_a_third_time() -> None:
    junk = Fault("malformed", "junk")
    run = drive({"a": [fail(junk, after=2)] * 3, "b": [ok(ANSWER[2:])]}, config(midstream="resume"))
    assert [s[0] for s in run.summary()] == ["a", "a", "b"]


def test_an_error_after_the_terminal_event_loses_nothing() -> None:
    after_end = Outcome([*text_frames(ANSWER), END], fault=Fault("reset", "reset"))
    run = drive({"a": [after_end], "b": []})
    assert run.summary() == OK and run.result.text == TEXT  # type: ignore[union-attr]


def test_an_answer_of_only_unrepresented_content_is_not_a_success() -> None:
    thinking = Outcome([frame({"reasoning_content": "hmm"})])
    run = drive({"a": [thinking], "b": [ok()]})
    assert run.summary() == [("a", "error", "unrepresented_content"), ("b", "ok", None)]
    ended = [e for e in run.events if isinstance(e, AttemptEnded)]
    assert ended[0].decoder.unrepresented == {"reasoning_content": 1}
    assert run.routes[0].breaker.fail_counter == 0  # a wrong fit, not the provider's failure


# ---- the caller leaving, and what is known then


def test_a_caller_who_breaks_off_gets_what_is_known() -> None:
    built = routes(config())
    run = drive({"a": [ok()], "b": []}, built=built, break_after=2)
    assert run.result is not None and run.result.finish_reason is None
    assert run.result.text == "".join(ANSWER[:2]) and run.result.provider == "a"
    assert run.result.attempts[-1].error_type == "cancelled"


# ---- keys never leave


def test_a_key_echoed_by_the_provider_is_scrubbed_before_it_is_shortened() -> None:
    key = "sk-test-key-0123456789"
    message = "x" * 160 + f" Incorrect API key provided: {key}. See the docs."  # the key spans character 200
    run = drive({"a": [fail(status(401, message))], "b": [ok()]})
    attempt = run.result.attempts[0]  # type: ignore[union-attr]
    assert attempt.message is not None and "sk-test-key-012345678" not in attempt.message
    assert "***" in attempt.message


# ---- hedging (DESIGN §10)


def hedged(after: float | str = 1.0, max_: int = 1, **defaults: Any) -> dict[str, Any]:
    return config("a", "b", "c", hedge={"after": after, "max": max_}, **defaults)


def slow(first: float, texts: list[str] | None = None) -> Outcome:
    return Outcome(text_frames(ANSWER if texts is None else texts), first=first)


def test_a_silent_primary_is_hedged_and_the_hedge_wins() -> None:
    run = drive({"a": [slow(5.0)], "b": [slow(0.2)]}, hedged(after=1.0))
    assert run.result is not None and run.result.provider == "b" and run.result.text == TEXT
    assert run.summary() == [("a", "hedged", None), ("b", "ok", None)]
    assert run.cancelled == ["a"] and run.adopted == ["b"]  # the winner is read inline once a is cancelled
    a, b = run.result.attempts
    assert b.hedge and not a.hedge
    assert run.routes[0].breaker.fail_counter == 0  # a hedged attempt is no failure
    started = [e for e in run.events if isinstance(e, AttemptStarted)]
    assert [e.hedge for e in started] == [False, True]
    assert b.first_chunk_s is not None and b.first_chunk_s < 0.3
    assert a.duration_s == pytest.approx(1.0 + 0.2 + 0.01)  # a was cancelled at b's first chunk


def test_the_primary_may_still_win_after_the_hedge_started() -> None:
    run = drive({"a": [slow(1.5)], "b": [slow(3.0)]}, hedged(after=1.0))
    assert run.result is not None and run.result.provider == "a"
    assert run.summary() == [("b", "hedged", None), ("a", "ok", None)]
    assert run.cancelled == ["b"] and run.adopted == ["a"]


def test_no_hedge_when_content_arrives_in_time() -> None:
    run = drive({"a": [slow(0.5)]}, hedged(after=1.0))
    assert run.summary() == [("a", "ok", None)] and run.opened == [("a", False)]
    assert run.adopted == ["a"]  # opened to race, read inline from its first chunk on


def test_both_fail_then_the_call_goes_on_past_them() -> None:
    cfg = hedged(after=1.0, retry={"max_attempts": 1})
    run = drive({"a": [Outcome(fault=status(503), first=2.0)], "b": [Outcome(fault=status(503), first=1.5)],
                 "c": [ok()]}, cfg)
    assert [s[:2] for s in run.summary()] == [("a", "error"), ("b", "error"), ("c", "ok")]
    assert run.result is not None and run.result.provider == "c"


def test_a_hedge_never_doubles_a_continuation() -> None:
    run = drive({"a": [truncated(3)], "b": [slow(2.0, ANSWER[3:])], "c": []},
                hedged(after=0.5, midstream="resume", retry={"max_attempts": 1}))
    assert run.opened == [("a", False), ("b", True)] and run.cancelled == []
    assert "".join(c.text for c in run.chunks) == TEXT


def test_an_open_breaker_on_the_hedge_target_hedges_to_the_next_one() -> None:
    cfg = hedged(after=1.0)
    built, clock = routes(cfg), Clock()
    b = built[1].breaker
    for _ in range(5):
        b.record(b.admit(clock.now), Verdict.FAILURE, clock.now)
    assert b.state == "open"
    run = drive({"a": [slow(5.0)], "c": [slow(0.1)]}, built=built, clock=clock)
    assert run.summary() == [("b", "skipped", "skipped"), ("a", "hedged", None), ("c", "ok", None)]


def test_at_most_max_extra_attempts() -> None:
    run = drive({"a": [slow(9.0)], "b": [slow(9.0)], "c": [slow(0.1)]}, hedged(after=1.0, max_=1))
    assert run.opened == [("a", False), ("b", False)]
    assert run.result is not None and run.result.provider in ("a", "b")
    two = drive({"a": [slow(9.0)], "b": [slow(9.0)], "c": [slow(0.1)]}, hedged(after=1.0, max_=2))
    assert two.result is not None and two.result.provider == "c"
    assert sorted(two.cancelled) == ["a", "b"]


def test_auto_waits_half_of_first_token_until_it_knows_the_provider() -> None:
    from failover.config import HedgeSettings
    from failover.policies.hedge import FirstChunks, hedge_delay

    chunks = FirstChunks()
    settings = HedgeSettings(after="auto")
    assert hedge_delay(settings, chunks, first_token=10.0) == 5.0
    for i in range(100):
        chunks.add(0.2 + i * 0.001)
    assert 0.29 <= hedge_delay(settings, chunks, first_token=10.0) <= 0.3  # its p95
    for i in range(100):
        chunks.add(2.0 if i % 10 else 9.0)  # a tenth of the calls slow: hedged at three medians
    assert hedge_delay(settings, chunks, first_token=10.0) == 5.0  # ...but never past half of first_token
    for i in range(100):
        chunks.add(0.3 if i % 10 else 9.0)
    assert hedge_delay(settings, chunks, first_token=10.0) == pytest.approx(0.9)
    assert hedge_delay(HedgeSettings(after=0.7), chunks, first_token=10.0) == 0.7


def test_the_caller_leaving_while_two_attempts_are_live_ends_both() -> None:
    cfg = hedged(after=1.0)
    built, clock = routes(cfg), Clock()
    planner = Planner(built, build_request([{"role": "user", "content": "hi"}]), now=clock.now)
    assert isinstance(planner.next(clock.now), Admit)
    planner.admitted(built[0].breaker.admit(clock.now), clock.now)
    first = planner.next(clock.now)
    assert isinstance(first, Open) and first.race
    clock.now += 1.0
    assert isinstance(planner.next(clock.now), Admit)  # the hedge is due
    planner.admitted(built[1].breaker.admit(clock.now), clock.now)
    second = planner.next(clock.now)
    assert isinstance(second, Open) and second.attempt.hedge
    assert isinstance(planner.next(clock.now), Read)
    judges = planner.cancelled(clock.now + 0.1)
    assert {j.route.name for j in judges} == {"a", "b"} and all(j.verdict is Verdict.NONE for j in judges)
    assert planner.live == [] and first.attempt.stopped and second.attempt.stopped
    assert [a.error_type for a in planner.attempts] == ["cancelled", "cancelled"]


# ---- background probes (DESIGN §10)


def test_a_background_probe_costs_the_caller_nothing() -> None:
    cfg = config(breaker={"fail_max": 1, "reset_timeout": 5.0})  # probe: background is the default
    built, clock = routes(cfg), Clock()
    drive({"a": [fail(status(503))], "b": [ok()]}, built=built, clock=clock)
    clock.now += 5.0
    run = drive({"b": [ok()]}, built=built, clock=clock, probes_fail=False)
    assert run.probes == ["a"] and run.opened == [("b", False)]  # the caller went on at once
    assert run.summary()[0] == ("a", "skipped", "skipped")
    assert "probing in the background" in (run.result.attempts[0].message or "")  # type: ignore[union-attr]
    assert built[0].breaker.state == "closed"  # the probe succeeded
    back = drive({"a": [ok()]}, built=built, clock=clock)
    assert back.result is not None and back.result.provider == "a"


def test_a_failed_background_probe_opens_the_breaker_again() -> None:
    cfg = config(breaker={"fail_max": 1, "reset_timeout": 5.0})
    built, clock = routes(cfg), Clock()
    drive({"a": [fail(status(503))], "b": [ok()]}, built=built, clock=clock)
    clock.now += 5.0
    run = drive({"b": [ok()]}, built=built, clock=clock, probes_fail=True)
    assert run.probes == ["a"] and built[0].breaker.state == "open"
    again = drive({"b": [ok()]}, built=built, clock=clock)
    assert again.probes == [] and again.summary()[0][1] == "skipped"  # no probe before reset_timeout
