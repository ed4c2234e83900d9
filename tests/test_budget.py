"""The retry budget (docs/fleet.md): the policy alone, and through the router during an outage."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from tests.conftest import OTHER, make_router, run_async, run_sync

from failover import ConfigError
from failover.config import RetryBudgetSettings, parse_config
from failover.emulator import steps
from failover.policies.budget import RetryBudget

BUDGET = {"ratio": 0.2, "min_retries": 3, "window": 10.0}


def test_min_retries_let_a_lone_caller_retry_then_the_ratio_decides() -> None:
    budget = RetryBudget(RetryBudgetSettings(**BUDGET))
    budget.request(0.0)
    assert [budget.try_retry(0.1) for _ in range(4)] == [True, True, True, False]
    for _ in range(29):
        budget.request(0.2)  # 30 first attempts: 20 % of them is 6 retries
    assert [budget.try_retry(0.3) for _ in range(4)] == [True, True, True, False]
    assert budget.counts(0.3) == (30, 6)


def test_the_window_slides() -> None:
    budget = RetryBudget(RetryBudgetSettings(ratio=0.0, min_retries=2, window=1.0))
    assert budget.try_retry(0.0) and budget.try_retry(0.55)
    assert not budget.try_retry(0.6)
    assert budget.try_retry(1.05)  # the retry of t=0.0 left the window; the one of 0.55 has not
    assert not budget.try_retry(1.1)
    assert budget.counts(5.0) == (0, 0)  # a long pause empties it


def test_thread_safe_under_contention() -> None:
    budget = RetryBudget(RetryBudgetSettings(ratio=0.5, min_retries=0, window=10.0))
    for _ in range(100):
        budget.request(1.0)
    granted: list[bool] = []
    barrier = threading.Barrier(16)

    def grab() -> None:
        barrier.wait()
        granted.extend(budget.try_retry(1.5) for _ in range(20))

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 50  # exactly 50 % of 100, never one more


def test_update_keeps_history_unless_the_window_changes() -> None:
    budget = RetryBudget(RetryBudgetSettings(ratio=0.0, min_retries=1, window=10.0))
    assert budget.try_retry(0.0)
    budget.update(RetryBudgetSettings(ratio=0.0, min_retries=1, window=10.0))
    assert not budget.try_retry(0.1)
    budget.update(RetryBudgetSettings(ratio=0.0, min_retries=2, window=10.0))
    assert budget.try_retry(0.2)
    budget.update(RetryBudgetSettings(ratio=0.0, min_retries=2, window=5.0))
    assert budget.counts(0.3) == (0, 0)


OUTAGE_CALLERS = 30


def _outage(emu: dict[str, Any], kind: str, mode: str, budget: Any) -> tuple[Any, list[Any]]:
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.server_error(503))
    router = make_router(primary, fallback, retry={"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.02,
                                                   "budget": budget})
    with router:
        if mode == "threads":
            outcomes: list[Any] = []
            barrier = threading.Barrier(OUTAGE_CALLERS)

            def caller() -> None:
                barrier.wait()
                outcomes.append(run_sync(router))

            threads = [threading.Thread(target=caller) for _ in range(OUTAGE_CALLERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            async def callers() -> list[Any]:
                try:
                    return list(await asyncio.gather(*(run_async(router) for _ in range(OUTAGE_CALLERS))))
                finally:
                    await router.aclose()

            outcomes = asyncio.run(callers())
    return primary, outcomes


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_an_outage_with_many_callers_is_bounded_by_the_budget(emu, kind, mode):
    primary, outcomes = _outage(emu, kind, mode, BUDGET)
    assert len(outcomes) == OUTAGE_CALLERS
    assert all(o.result is not None and o.result.provider == "fallback" for o in outcomes)
    # Every caller's first attempt, plus at most 20 % of them (6) in retries: not 3 × 30 = 90.
    assert OUTAGE_CALLERS <= len(primary.requests) <= OUTAGE_CALLERS + 6
    refused = [a for o in outcomes for a in o.attempts if a.retry_refused is not None]
    assert len(refused) >= OUTAGE_CALLERS - 6
    for o in outcomes:
        for i, a in enumerate(o.attempts):
            if a.retry_refused is not None:
                assert a.retry_refused == "budget" and a.provider == "primary" and a.outcome == "error"
                assert "retry refused: budget" in a.line()
                assert o.attempts[i + 1].provider == "fallback"  # it failed over instead of retrying


def test_without_a_budget_every_caller_retries(emu):
    primary, outcomes = _outage(emu, "openai", "threads", False)
    assert len(primary.requests) == 3 * OUTAGE_CALLERS
    assert not [a for o in outcomes for a in o.attempts if a.retry_refused]


def test_a_lone_caller_still_retries_within_min_retries(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.server_error(503), steps.server_error(503))
    with make_router(primary, fallback, retry={"max_attempts": 3, "budget": BUDGET}) as router:
        outcome = run_sync(router)
    assert outcome.result.provider == "primary"
    assert [(a.provider, a.number, a.outcome) for a in outcome.attempts] == [
        ("primary", 1, "error"), ("primary", 2, "error"), ("primary", 3, "ok")]


def test_budget_config_validation_and_per_key_inheritance():
    base = {"name": "a", "type": "openai", "model": "m", "api_key": "k"}
    cfg = parse_config({"providers": [{**base, "retry": {"budget": {"ratio": 0.5}}}],
                        "defaults": {"retry": {"budget": {"window": 5, "min_retries": 1}}}})
    assert cfg.providers[0].retry.budget == RetryBudgetSettings(ratio=0.5, min_retries=1, window=5.0)
    assert parse_config({"providers": [{**base, "retry": {"budget": False}}]}).providers[0].retry.budget is None
    # `budget:` with every key commented out is YAML null: inherit, as for every section.
    inherited = parse_config({"providers": [{**base, "retry": {"budget": None}}],
                              "defaults": {"retry": {"budget": {"ratio": 0.7}}}})
    assert inherited.providers[0].retry.budget == RetryBudgetSettings(ratio=0.7)
    for bad, where in [({"ratio": -0.1}, "providers[0].retry.budget.ratio"),
                       ({"window": 0}, "providers[0].retry.budget.window"),
                       ({"min_retries": 1.5}, "providers[0].retry.budget.min_retries"),
                       ({"ration": 1}, "providers[0].retry.budget.ration")]:
        with pytest.raises(ConfigError) as err:
            parse_config({"providers": [{**base, "retry": {"budget": bad}}]})
        assert err.value.path == where
    with pytest.raises(ConfigError) as err:
        parse_config({"providers": [base], "defaults": {"retry": {"budget": {"ratio": -1}}}})
    assert err.value.path == "defaults.retry.budget.ratio"
