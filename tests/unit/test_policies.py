"""Pure logic of the small policies: backoff, Retry-After, the watch, the sliding window, the taxonomy."""

from __future__ import annotations

import random
import time

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.config import RetrySettings, TimeoutSettings
from failover.policies.classify import ErrorClass, classify
from failover.policies.retry import RetryPolicy
from failover.policies.timeouts import Watch
from failover.policies.window import SlidingCounts
from failover.providers.base import Fault, retry_after


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
    assert retry_after(httpx2.Headers({"retry-after": "nan"})) is None
    assert retry_after(httpx2.Headers({"retry-after": "-3"})) == 0.0
    assert retry_after(httpx2.Headers({})) is None


SETTINGS = TimeoutSettings(connect=0.5, first_token=1.0, idle=0.5, total=10.0)


def test_watch_first_token_then_idle_from_each_resume() -> None:
    watch = Watch(SETTINGS, first_token_at=101.0, hard=110.0)
    assert watch.remaining(100.5) == pytest.approx(0.5) and watch.kind() == "first_token"
    watch.content(100.8)
    assert watch.remaining(100.8) == pytest.approx(0.5) and watch.kind() == "idle"
    # the caller held the chunk for 5 s: that is not the provider's silence
    watch.resume(105.8)
    assert watch.remaining(105.8) == pytest.approx(0.5)


def test_watch_never_runs_past_the_hard_deadline_and_names_it() -> None:
    watch = Watch(SETTINGS, first_token_at=101.0, hard=100.4)
    assert watch.remaining(100.0) == pytest.approx(0.4) and watch.kind() == "total"
    watch.expire()
    assert watch.fired == "total"
    late = Watch(SETTINGS, first_token_at=101.0, hard=110.0)
    late.resume(109.8)
    assert late.deadline == 110.0 and late.kind() == "total"


def test_watch_remembers_the_first_deadline_that_fired() -> None:
    watch = Watch(SETTINGS, first_token_at=101.0, hard=110.0)
    watch.expire()
    watch.content(102.0)
    watch.expire()
    assert watch.fired == "first_token"


def test_sliding_counts_expire_by_slot() -> None:
    counts = SlidingCounts(10.0, 2)
    counts.add(0.5, 0)
    counts.add(0.5, 1, 3)
    counts.add(5.0, 0)
    counts.advance(9.9)
    assert counts.totals == [2, 3]
    counts.advance(10.5)  # the slot of 0.5 s left the window
    assert counts.totals == [1, 0]
    counts.advance(100.0)
    assert counts.totals == [0, 0]
    counts.add(99.0, 0)  # an older `now` counts as current, never goes back
    assert counts.totals == [1, 0]


@pytest.mark.parametrize(("fault", "cls", "name"), [
    (Fault("status", "Rate limit reached", 429, "rate_limit_error"), ErrorClass.TRANSIENT, "rate_limit"),
    (Fault("status", "You exceeded your current quota", 429, "insufficient_quota", "insufficient_quota"),
     ErrorClass.UNUSABLE, "quota"),
    (Fault("status", "Your credit balance is too low", 400, "invalid_request_error"), ErrorClass.UNUSABLE, "quota"),
    (Fault("status", "billing", 400, "billing_error"), ErrorClass.UNUSABLE, "quota"),
    (Fault("status", "bad key", 401), ErrorClass.UNUSABLE, "auth"),
    (Fault("status", "no such model", 404), ErrorClass.UNUSABLE, "not_found"),
    (Fault("status", "too long", 400, code="context_length_exceeded"), ErrorClass.WRONG_FIT, "context_length"),
    (Fault("status", "prompt is too long: 200001 tokens", 400), ErrorClass.WRONG_FIT, "context_length"),
    (Fault("status", "big", 413), ErrorClass.WRONG_FIT, "too_large"),
    (Fault("status", "flagged", 400, code="content_filter"), ErrorClass.REJECTED, "content_filter"),
    (Fault("status", "Output blocked by content filtering policy", 400), ErrorClass.REJECTED, "content_filter"),
    (Fault("status", "messages.0.content must not be empty", 400), ErrorClass.REJECTED, "invalid_request"),
    (Fault("status", "x", 422), ErrorClass.REJECTED, "invalid_request"),
    (Fault("status", "Overloaded", 529), ErrorClass.TRANSIENT, "overloaded"),
    (Fault("status", "x", 503), ErrorClass.TRANSIENT, "unavailable"),
    (Fault("status", "x", 599), ErrorClass.TRANSIENT, "server_error"),
    (Fault("status", "x", 418), ErrorClass.UNUSABLE, "http_418"),
    (Fault("inband", "Overloaded", type="overloaded_error"), ErrorClass.TRANSIENT, "overloaded"),
    (Fault("inband", "boom", type="server_error", code="server_error"), ErrorClass.TRANSIENT, "server_error"),
    (Fault("inband", "quota", code="insufficient_quota"), ErrorClass.UNUSABLE, "quota"),
    (Fault("connect", "refused"), ErrorClass.TRANSIENT, "connection_refused"),
    (Fault("dns", "no such host"), ErrorClass.TRANSIENT, "dns"),
    (Fault("connect_timeout", "slow"), ErrorClass.TRANSIENT, "connect_timeout"),
    (Fault("timeout", "silent"), ErrorClass.SILENT, "timeout_first_token"),
    (Fault("reset", "reset"), ErrorClass.TRANSIENT, "connection_reset"),
    (Fault("cut", "closed"), ErrorClass.TRANSIENT, "cut"),
    (Fault("malformed", "garbage"), ErrorClass.TRANSIENT, "malformed_event"),
    (Fault("local", "UnicodeEncodeError"), ErrorClass.LOCAL, "local_error"),
])
def test_taxonomy(fault: Fault, cls: ErrorClass, name: str) -> None:
    failure = classify(fault)
    assert (failure.error_class, failure.error_type) == (cls, name)
    assert failure.breaker_failure == (cls in (ErrorClass.TRANSIENT, ErrorClass.SILENT, ErrorClass.UNUSABLE))
    assert failure.retryable == (cls is ErrorClass.TRANSIENT)
