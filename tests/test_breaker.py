"""The circuit breaker of DESIGN §5, through the router and the real SDKs."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from tests.conftest import OTHER, make_router, run_async, run_sync

from failover import AllProvidersFailed
from failover.emulator import steps
from failover.policies.breaker import Verdict

BREAKER = {"fail_max": 2, "reset_timeout": 0.5, "probe": "request"}  # a caller's request is the probe


def test_breaker_opens_skips_probes_once_and_closes(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.server_error(503))
    with make_router(primary, fallback, breaker=BREAKER, retry={"max_attempts": 1}) as router:
        first = run_sync(router)
        second = run_sync(router)
        assert [a.provider for a in first.attempts] == ["primary", "fallback"]
        assert router.breaker("primary").state == "open"
        assert second.attempts[0].breaker_state == "open"

        third = run_sync(router)  # open: skipped without a request
        assert third.summary()[0] == ("primary", "skipped", "skipped")
        assert "breaker open" in third.attempts[0].message
        assert len(primary.requests) == 2

        primary.reset()
        primary.script(steps.slow_first(0.3))  # the probe takes a while: others arrive meanwhile
        time.sleep(0.55)
        results = []
        barrier = threading.Barrier(6)

        def caller() -> None:
            barrier.wait()
            results.append(run_sync(router))

        threads = [threading.Thread(target=caller) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(primary.requests) == 1  # exactly one probe went through (reset() cleared the log)
        served = sorted(r.result.provider for r in results)
        assert served.count("primary") == 1 and served.count("fallback") == 5
        skipped = [r.attempts[0] for r in results if r.result.provider == "fallback"]
        assert all(a.outcome == "skipped" and "half-open" in a.message for a in skipped)
        assert router.breaker("primary").state == "closed"

        after = run_sync(router)
        assert after.result.provider == "primary"


def test_failed_probe_reopens(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.server_error(503))
    with make_router(primary, fallback, breaker=BREAKER, retry={"max_attempts": 1}) as router:
        run_sync(router)
        run_sync(router)
        assert router.breaker("primary").state == "open"
        time.sleep(0.55)
        probe = run_sync(router)
        assert probe.summary()[0] == ("primary", "error", "unavailable")
        assert router.breaker("primary").state == "open"
        assert len(primary.requests) == 3


def test_every_breaker_open_fails_fast_naming_them(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.server_error(500))
    fallback.down_for(60, steps.server_error(500))
    with make_router(primary, fallback, breaker={"fail_max": 1, "reset_timeout": 30},
                     retry={"max_attempts": 1}) as router:
        first = run_sync(router)
        assert isinstance(first.error, AllProvidersFailed)
        # The trip never hides the real error.
        assert first.error.__cause__ is not None and "500" in str(first.error.__cause__)
        count = len(primary.requests) + len(fallback.requests)
        t0 = time.monotonic()
        fast = run_sync(router)
        assert time.monotonic() - t0 < 0.1
        assert isinstance(fast.error, AllProvidersFailed)
        assert len(primary.requests) + len(fallback.requests) == count
        message = str(fast.error)
        assert "primary: breaker open, probe in" in message and "fallback: breaker open" in message


def test_caller_cancel_before_first_chunk_is_no_verdict(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.slow_first(2.0))
    with make_router(primary, fallback, breaker=BREAKER, timeouts={"first_token": 5.0}) as router:
        async def go() -> None:
            task = asyncio.ensure_future(run_async(router))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await router.aclose()

        breaker = router.breaker("primary")
        breaker.record(breaker.admit(time.monotonic()), Verdict.FAILURE, time.monotonic())
        assert router.breaker("primary").fail_counter == 1
        asyncio.run(go())
        assert router.breaker("primary").fail_counter == 1  # neither success nor failure
        assert router.breaker("primary").state == "closed"


def test_caller_close_after_a_chunk_counts_as_success(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    with make_router(primary, fallback, breaker=BREAKER) as router:
        breaker = router.breaker("primary")
        breaker.record(breaker.admit(time.monotonic()), Verdict.FAILURE, time.monotonic())
        assert breaker.fail_counter == 1
        with router.stream([{"role": "user", "content": "hi"}]) as stream:
            next(iter(stream))
        assert breaker.fail_counter == 0
        assert stream.attempts[-1].error_type == "cancelled"
