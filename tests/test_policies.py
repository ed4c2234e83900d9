"""Pure logic of the policies: backoff, Retry-After parsing, the watch, the breaker's admission."""

from __future__ import annotations

import random
import threading
import time

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.config import BreakerSettings, RetrySettings, TimeoutSettings
from failover.policies.breaker import Breaker
from failover.policies.classify import retry_after
from failover.policies.retry import RetryPolicy
from failover.policies.timeouts import Watch


@given(n=st.integers(1, 12), seed=st.integers(0, 2**32))
def test_full_jitter_stays_within_the_exponential_cap(n: int, seed: int) -> None:
    policy = RetryPolicy(RetrySettings(initial_backoff=0.5, max_backoff=8.0, multiplier=2.0))
    delay = policy.backoff(n, None, random.Random(seed))
    assert delay is not None
    assert 0.0 <= delay <= min(8.0, 0.5 * 2 ** (n - 1))


def test_full_jitter_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(RetrySettings(initial_backoff=1.0, max_backoff=8.0, multiplier=2.0))
    rng = random.Random(1)
    delays = [policy.backoff(3, None, rng) for _ in range(2000)]
    assert min(d for d in delays if d is not None) < 0.2
    assert max(d for d in delays if d is not None) > 3.8


def test_retry_after_is_a_floor_and_too_long_means_fail_over() -> None:
    policy = RetryPolicy(RetrySettings(initial_backoff=0.01, max_backoff=0.02, max_retry_after=5.0))
    assert policy.backoff(1, 2.5, random.Random(0)) == 2.5
    assert policy.backoff(1, 5.5, random.Random(0)) is None
    assert policy.allows(2) and not policy.allows(3)


def test_retry_after_header_forms() -> None:
    assert retry_after(httpx2.Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after(httpx2.Headers({"retry-after": "1.5"})) == 1.5
    assert retry_after(httpx2.Headers({"retry-after-ms": "100", "retry-after": "9"})) == 0.1
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 28 <= (retry_after(httpx2.Headers({"retry-after": date})) or 0) <= 31
    assert retry_after(httpx2.Headers({"retry-after": "soon"})) is None
    assert retry_after(httpx2.Headers({})) is None


def test_watch_waits_for_a_slow_consumer_and_fires_on_a_silent_provider() -> None:
    fired = []
    watch = Watch(TimeoutSettings(first_token=1.0, idle=0.5, total=10.0), first_token_at=101.0, hard=110.0)
    watch._abort = lambda: fired.append(True)
    assert watch.check(100.5) == 101.0
    watch.reading = False  # the caller holds a chunk: never fire, look again an idle period later
    assert watch.check(101.2) == pytest.approx(101.7)
    assert not fired
    watch.reading = True
    assert watch.check(101.2) is None
    assert fired and watch.fired == "first_token"


def test_watch_names_the_deadline_that_fired() -> None:
    watch = Watch(TimeoutSettings(connect=0.5, first_token=1.0, idle=0.5, total=2.0), first_token_at=1.0, hard=2.0)
    watch.got_text = True
    watch.deadline = 1.5
    watch.check(1.6)
    assert watch.fired == "idle"
    late = Watch(TimeoutSettings(connect=0.5, first_token=1.0, idle=0.5, total=2.0), first_token_at=1.0, hard=2.0)
    late.got_text = True
    late.deadline = 2.0
    late.check(2.1)
    assert late.fired == "total"


def test_half_open_admits_exactly_one_probe_among_concurrent_callers() -> None:
    breaker = Breaker("p", BreakerSettings(fail_max=1, reset_timeout=0.05), probe_lease=10.0)
    breaker.failure(breaker.admit(time.monotonic()))
    assert breaker.state == "open"
    assert not breaker.admit(time.monotonic()).allowed
    time.sleep(0.06)
    admissions = []
    barrier = threading.Barrier(16)

    def admit() -> None:
        barrier.wait()
        admissions.append(breaker.admit(time.monotonic()))

    threads = [threading.Thread(target=admit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    probes = [a for a in admissions if a.allowed]
    assert len(probes) == 1 and probes[0].probe
    breaker.success(probes[0])
    assert breaker.state == "closed"


def test_a_released_probe_lets_the_next_caller_probe() -> None:
    breaker = Breaker("p", BreakerSettings(fail_max=1, reset_timeout=0.01), probe_lease=10.0)
    breaker.failure(breaker.admit(time.monotonic()))
    time.sleep(0.02)
    probe = breaker.admit(time.monotonic())
    assert probe.probe and not breaker.admit(time.monotonic()).allowed
    breaker.release(probe)  # the caller left before any chunk: no verdict
    assert breaker.state == "half-open"
    assert breaker.admit(time.monotonic()).probe


def test_a_probe_that_never_reports_back_frees_its_slot_after_the_lease() -> None:
    breaker = Breaker("p", BreakerSettings(fail_max=1, reset_timeout=0.01), probe_lease=0.05)
    breaker.failure(breaker.admit(time.monotonic()))
    time.sleep(0.02)
    now = time.monotonic()
    assert breaker.admit(now).probe
    assert not breaker.admit(now + 0.01).allowed
    assert breaker.admit(now + 0.06).probe


def test_failures_must_be_consecutive() -> None:
    breaker = Breaker("p", BreakerSettings(fail_max=3, reset_timeout=10), probe_lease=1.0)
    for _ in range(2):
        breaker.failure(breaker.admit(time.monotonic()))
    breaker.success(breaker.admit(time.monotonic()))
    for _ in range(2):
        breaker.failure(breaker.admit(time.monotonic()))
    assert breaker.state == "closed"
    breaker.failure(breaker.admit(time.monotonic()))
    assert breaker.state == "open"
