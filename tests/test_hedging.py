"""Never wait on a sick provider (issue 13, DESIGN §10): hedged first chunk and background probes,
through the real SDKs over real sockets to the emulator, sync and async, both provider types."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.conftest import MESSAGES, OTHER, make_router, provider_entry, run_async, run_sync

from failover import AllProvidersFailed, Router
from failover.emulator import Emulator, steps
from failover.policies.breaker import Verdict

FAST = {"first_token": 3.0, "idle": 3.0, "total": 8.0}


def disconnected(emu: Emulator, within: float = 2.0) -> bool:
    """The emulator saw its last request's client hang up."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        records = emu.requests
        if records and records[-1].ended_at is not None:
            return bool(records[-1].disconnected)
        time.sleep(0.01)
    return False


def hedging(primary: Emulator, fallback: Emulator, after: float = 0.3, **opts: Any) -> Router:
    return make_router(primary, fallback, hedge={"after": after}, timeouts=FAST, **opts)


def test_a_primary_that_never_answers_costs_the_hedge_delay(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.hang())
    with hedging(primary, fallback) as router:
        t0 = time.monotonic()
        out = call(router)
        elapsed = time.monotonic() - t0
    assert out.result is not None and out.result.provider == "fallback" and out.text == fallback.answer
    assert out.summary() == [("primary", "hedged", None), ("fallback", "ok", None)]
    assert out.attempts[1].hedge
    assert elapsed < 2.0  # not first_token (3 s): the hedge delay plus the fallback's answer
    assert disconnected(primary)  # the loser's socket was closed at once


def test_the_primary_can_still_win_after_the_hedge_started(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.slow_first(0.6))
    fallback.script(steps.slow_first(2.5))
    with hedging(primary, fallback) as router:
        out = call(router)
    assert out.result.provider == "primary" and out.text == primary.answer
    assert out.summary() == [("fallback", "hedged", None), ("primary", "ok", None)]
    assert disconnected(fallback)


def test_no_hedge_when_content_arrives_in_time(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    with hedging(primary, fallback, after=1.0) as router:
        out = call(router)
    assert out.summary() == [("primary", "ok", None)]
    assert not fallback.requests


def test_both_fail(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.hang())
    fallback.script(steps.server_error(503))
    with make_router(primary, fallback, hedge={"after": 0.2}, retry={"max_attempts": 1},
                     timeouts={"first_token": 1.0, "idle": 1.0, "total": 5.0}) as router:
        out = call(router)
    assert isinstance(out.error, AllProvidersFailed)
    assert {(a.provider, a.error_type) for a in out.attempts} >= {("primary", "timeout_first_token")}
    assert any(a.provider == "fallback" and a.outcome == "error" for a in out.attempts)


def test_a_continuation_is_never_hedged(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.cut(after=3), steps.slow_first(0.5))
    with hedging(primary, fallback, after=0.2, midstream="resume") as router:
        out = call(router)
    assert out.result.text == primary.answer and out.result.resumed
    assert not fallback.requests  # the continuation on primary was slow, but never doubled


def test_an_open_breaker_on_the_hedge_target_hedges_to_the_next_provider(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    third = Emulator(kind).start()
    try:
        primary.script(steps.hang())
        with make_router(primary, fallback, hedge={"after": 0.3}, timeouts=FAST,
                         more=[provider_entry("third", third)]) as router:
            breaker = router.breaker("fallback")
            for _ in range(200):  # FAST_DEFAULTS' fail_max is high: open it by hand
                breaker.record(breaker.admit(time.monotonic()), Verdict.FAILURE, time.monotonic())
            assert breaker.state == "open"
            out = call(router)
        assert out.result.provider == "third"
        assert [(a.provider, a.outcome) for a in out.attempts] == [
            ("fallback", "skipped"), ("primary", "hedged"), ("third", "ok")]
        assert not fallback.requests
    finally:
        third.stop()


def test_the_caller_cancelling_while_two_attempts_are_live_closes_both(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.hang())
    fallback.script(steps.hang())
    with hedging(primary, fallback, after=0.2) as router:
        async def go() -> None:
            task = asyncio.ensure_future(run_async(router))
            await asyncio.sleep(0.6)  # the hedge started at 0.2 s; both wait for headers
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await router.aclose()

        asyncio.run(go())
        assert disconnected(primary) and disconnected(fallback)
        assert router.breaker("primary").fail_counter == 0 and router.breaker("fallback").fail_counter == 0


def test_a_sync_caller_closing_after_the_winner_s_first_chunk_leaves_nothing_open(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.hang())
    fallback.script(steps.ok(chunk_delay=0.05))
    with hedging(primary, fallback, after=0.2) as router:
        with router.stream(MESSAGES) as stream:
            first = next(iter(stream))
        assert first.provider == "fallback"
    assert disconnected(primary) and disconnected(fallback)


# ---- background probes


def tripped(primary: Emulator, fallback: Emulator, **breaker: Any) -> Router:
    router = make_router(primary, fallback, breaker={"fail_max": 1, "reset_timeout": 0.3, **breaker},
                         retry={"max_attempts": 1})
    primary.down_for(60, steps.server_error(503))
    assert run_sync(router).result.provider == "fallback"
    assert router.breaker("primary").state == "open"
    return router


def wait_until(condition: Any, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_background_probe_closes_the_breaker_and_no_caller_paid_for_it(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    with tripped(primary, fallback) as router:
        primary.reset()  # recovered
        time.sleep(0.35)
        out = call(router)  # finds the probe due: it is sent in the background, this call goes on
        assert out.result.provider == "fallback"
        assert out.attempts[0].outcome == "skipped" and "background" in out.attempts[0].message
        assert wait_until(lambda: router.breaker("primary").state == "closed")
        [probe] = primary.requests
        assert probe.body["max_tokens"] == 1 and "ok" in str(probe.body["messages"])
        assert call(router).result.provider == "primary"


def test_a_failed_background_probe_opens_it_again(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    with tripped(primary, fallback) as router:
        time.sleep(0.35)
        hits = len(primary.requests)
        assert run_sync(router).result.provider == "fallback"
        assert wait_until(lambda: len(primary.requests) == hits + 1)
        assert wait_until(lambda: router.breaker("primary").state == "open")
        assert run_sync(router).attempts[0].outcome == "skipped"
        assert len(primary.requests) == hits + 1  # one probe per reset_timeout, not one per call


def test_a_router_without_traffic_sends_no_probes(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    with tripped(primary, fallback) as router:
        hits = len(primary.requests)
        time.sleep(0.8)  # two reset_timeouts without a call
        assert len(primary.requests) == hits
        assert router.breaker("primary").state == "open"
