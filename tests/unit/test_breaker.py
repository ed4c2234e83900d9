"""The breaker's rules (policies/breaker.py) on a fake clock: no sleeps, no sockets."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from failover.config import BreakerSettings
from failover.policies.breaker import ADMITTED, Breaker, Verdict

S, F = Verdict.SUCCESS, Verdict.FAILURE


def breaker(**settings: float) -> Breaker:
    return Breaker("p", BreakerSettings(**settings), probe_lease=10.0)


def verdicts(b: Breaker, sequence: str, now: float = 0.0, step: float = 0.01) -> float:
    """Record 's'/'f' verdicts, `step` seconds apart; returns the time after the last one."""
    for ch in sequence:
        b.record(b.admit(now), S if ch == "s" else F, now)
        now += step
    return now


@pytest.mark.parametrize(("rate", "sequence", "state"), [
    (0.0, "ffff", "closed"),
    (0.0, "fffff", "open"),  # consecutive failures alone (failure_rate 0)
    (0.0, "ffffsffff", "closed"),  # a success resets the count
    (0.5, "fffff", "open"),  # a provider that is down trips after fail_max failures
    (0.5, "sssssssssssfffff", "open"),  # a warm provider that goes down: the successes are decided history
    (1.0, "sfffff", "open"),
])
def test_trip_rule(rate: float, sequence: str, state: str) -> None:
    b = breaker(fail_max=5, failure_rate=rate)
    verdicts(b, sequence)
    assert b.state == state


def test_failures_that_overtake_pending_attempts_do_not_trip_it() -> None:
    """Under load, fast failures arrive before the first content of attempts sent with them: those
    pending attempts count, so 5 failures among 20 in flight are a brownout, not an outage."""
    b = breaker(fail_max=5, failure_rate=0.5)
    pending = [b.admit(0.0) for _ in range(20)]
    for a in pending[:9]:
        assert b.record(a, F, 0.1).state == "closed"  # 9 of 20 failed: under half
    assert b.record(pending[9], F, 0.1).state == "open"  # 10 of 20: half of what it was given


def test_a_brownout_keeps_the_breaker_closed_and_an_outage_opens_it() -> None:
    """100 attempts a second, 30 % failing fast, the others serving their first content 0.3 s after
    they were sent: closed for 200 s. Then it goes down: open within a few failures."""
    import heapq
    import random

    rng = random.Random(7)
    b = breaker(fail_max=5)  # the default failure_rate
    due: list[tuple[float, int, Verdict, Any]] = []
    now = 0.0
    for n in range(20_000):
        admission = b.admit(now)
        fails = rng.random() < 0.3
        heapq.heappush(due, (now + (0.01 if fails else 0.3), n, F if fails else S, admission))
        now += 0.01
        while due and due[0][0] <= now:
            _, _, verdict, a = heapq.heappop(due)
            b.record(a, verdict, now)
        assert b.state == "closed"
    while due:  # the last attempts end
        _, _, verdict, a = heapq.heappop(due)
        b.record(a, verdict, now)
    sent = 0
    while b.state == "closed":
        b.record(b.admit(now), F, now)
        sent += 1
        now += 0.01
    assert sent <= 6


def test_open_skips_then_exactly_one_probe_after_reset_timeout() -> None:
    b = breaker(fail_max=1, reset_timeout=5.0)
    b.record(b.admit(0.0), F, 0.0)
    refused = b.admit(1.0)
    assert not refused.allowed and refused.state == "open" and refused.probe_in == pytest.approx(4.0)
    assert refused.reason() == "breaker open, probe in 4.0s" and refused.code == "breaker_open"
    probe = b.admit(5.0)
    assert probe.allowed and probe.probe and b.state == "half-open"
    assert [(c.old, c.new) for c in probe.changes] == [("open", "half-open")]
    other = b.admit(5.1)
    assert not other.allowed and other.code == "breaker_half_open"
    judged = b.record(probe, S, 6.0)
    assert judged.state == "closed" and [(c.old, c.new) for c in judged.changes] == [("half-open", "closed")]
    assert b.admit(6.1) is ADMITTED


def test_a_failed_probe_opens_again_for_a_full_reset_timeout() -> None:
    b = breaker(fail_max=1, reset_timeout=5.0)
    b.record(b.admit(0.0), F, 0.0)
    probe = b.admit(5.0)
    judged = b.record(probe, F, 7.0)
    assert judged.state == "open" and judged.changes[0].why == "the probe failed"
    assert b.probe_in(7.0) == pytest.approx(5.0)
    assert not b.admit(11.9).allowed and b.admit(12.0).probe


def test_no_verdict_releases_the_probe_and_a_lost_probe_frees_its_slot_after_the_lease() -> None:
    b = Breaker("p", BreakerSettings(fail_max=1, reset_timeout=1.0), probe_lease=3.0)
    b.record(b.admit(0.0), F, 0.0)
    probe = b.admit(1.0)
    b.record(probe, Verdict.NONE, 1.5)  # the caller left before any chunk
    assert b.state == "half-open"
    again = b.admit(1.6)
    assert again.probe
    assert not b.admit(4.5).allowed  # its lease runs until 4.6
    assert b.admit(4.7).probe


def test_verdicts_of_stragglers_change_nothing_once_open() -> None:
    b = breaker(fail_max=2, failure_rate=0.0)
    admitted = [b.admit(0.0) for _ in range(5)]
    for a in admitted[:4]:
        b.record(a, F, 0.1)
    b.record(admitted[4], S, 0.2)  # admitted before the trip, ends after it
    assert b.state == "open" and b.fail_counter == 2


def test_the_trip_names_why() -> None:
    b = breaker(fail_max=2, failure_rate=0.0)
    b.record(b.admit(0.0), F, 0.0)
    judged = b.record(b.admit(0.0), F, 0.0)
    assert judged.state == "open"
    [change] = judged.changes
    assert (change.provider, change.old, change.new) == ("p", "closed", "open")
    assert change.why == "opened after 2 consecutive failures"


def test_half_open_admits_exactly_one_probe_among_concurrent_callers() -> None:
    b = breaker(fail_max=1, reset_timeout=1.0)
    b.record(b.admit(0.0), F, 0.0)
    admissions = []
    barrier = threading.Barrier(16)

    def admit() -> None:
        barrier.wait()
        admissions.append(b.admit(2.0))

    threads = [threading.Thread(target=admit) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.probe for a in admissions].count(True) == 1
    assert sum(a.allowed for a in admissions) == 1


def test_new_settings_keep_the_state() -> None:
    b = breaker(fail_max=1, reset_timeout=5.0)
    b.record(b.admit(0.0), F, 0.0)
    b.update(BreakerSettings(fail_max=3, reset_timeout=1.0), probe_lease=10.0, shared=None)
    assert b.state == "open" and b.admit(1.0).probe
