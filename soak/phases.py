"""The three phases of a soak: chaos (the long one, in rounds), brownout and outage. Each builds a
fresh router over the same emulators, so one phase's breakers and budgets do not leak into the next."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from failover import Router
from failover.emulator import DEFAULT_ANSWER
from failover.events import BreakerChanged, Event
from soak import faults, resources
from soak.callers import LagMonitor, Load, run_callers
from soak.emulators import Server
from soak.resources import Snapshot
from soak.verdict import Tally

# The first two sentences of the emulator's answer: 29 chunks. Every emulator streams the same
# answer, so a call resumed on another provider can still end with exactly it.
ANSWER = DEFAULT_ANSWER[:DEFAULT_ANSWER.index("timeouts.") + len("timeouts.")]

# Short timeouts so that every fault resolves within seconds: a silent provider (hang, slow headers,
# slow first chunk, stall) costs `first_token` or `idle`. 2 s rather than 1 s: with 1,100 callers on
# 2 shared cores the event loop runs up to 1-3 s late (cyclic GC passes of ~0.9 s, CPU taken by other
# processes), and at 1 s even a fault-free soak failed most calls on the router's own connect and
# first-token timers (soak/README.md). `total` 10 s leaves room for the worst honest path: three
# silent providers (6 s) plus a retry after a 1 s Retry-After and a few short backoffs.
TIMEOUTS = {"connect": 2.0, "first_token": 2.0, "idle": 2.0, "total": 10.0}
RETRY = {"max_attempts": 3, "initial_backoff": 0.05, "max_backoff": 0.5, "max_retry_after": 2.0}
# fail_max is the product's default; reset_timeout is short so a tripped breaker probes again
# within a round (the default 15 s would leave a provider out for a quarter of a minute-long soak).
FAIL_MAX, RESET_TIMEOUT = 5, 2.0
BREAKER = {"fail_max": FAIL_MAX, "reset_timeout": RESET_TIMEOUT}
PROVIDERS = ("openai", "anthropic", "compat")  # the third is a second OpenAI-compatible server


@dataclass(frozen=True)
class Settings:
    midstream: str
    fault_rate: float
    seed: int
    tolerance: float
    give_up: float  # seconds past `total` after which a call is counted as hung
    pace: float  # a caller starts a call at most this often (callers.Load)


def router_for(servers: list[Server], settings: Settings) -> Router:
    providers = [{"name": name, "type": s.kind, "model": f"soak-{name}", "api_key": "soak-key",
                  "base_url": s.url} for name, s in zip(PROVIDERS, servers, strict=True)]
    defaults: dict[str, Any] = {"timeouts": TIMEOUTS, "retry": RETRY, "breaker": BREAKER,
                                "midstream": settings.midstream}
    return Router.from_dict({"providers": providers, "defaults": defaults}, source="<soak>")


def new_tally(settings: Settings) -> Tally:
    return Tally(ANSWER, TIMEOUTS["total"], settings.tolerance)


def load_for(router: Router, tally: Tally, settings: Settings) -> Load:
    return Load(router, tally, give_up=TIMEOUTS["total"] + settings.give_up, pace=settings.pace)


def arm(servers: list[Server], rate: float, steps: tuple[faults.FaultSpec, ...], seed: int) -> None:
    """Forget the previous phase's requests and faults; answer `rate` of requests with one of `steps`."""
    for i, server in enumerate(servers):
        server.reset()
        if rate:
            server.chaos(rate, steps, seed=seed + i)


@contextlib.asynccontextmanager
async def fresh_router(servers: list[Server], settings: Settings) -> AsyncIterator[tuple[Router, BreakerLog]]:
    router = router_for(servers, settings)
    try:
        yield router, BreakerLog(router)
    finally:
        await router.aclose()


class BreakerLog:
    """When each provider's breaker opened (time.monotonic()), heard through the router's listeners."""

    def __init__(self, router: Router) -> None:
        self.opened: dict[str, list[float]] = {name: [] for name in PROVIDERS}
        router.listeners.append(self._changed)

    def _changed(self, event: Event) -> None:
        if isinstance(event, BreakerChanged) and event.change.new == "open":
            self.opened[event.change.provider].append(time.monotonic())

    def trips(self) -> Counter[str]:
        return Counter({name: len(times) for name, times in self.opened.items()})


# ---------------------------------------------------------------- chaos


@dataclass(frozen=True)
class Round:
    index: int
    seconds: float
    calls: int
    successes: int
    after: Snapshot  # taken once every call of the round had ended


@dataclass
class ChaosResult:
    tally: Tally
    rounds: list[Round] = field(default_factory=list)
    trips: Counter[str] = field(default_factory=Counter)
    worst_lag: float = 0.0  # seconds the event loop ran late, at worst
    worst_gc: float = 0.0  # seconds of the longest cyclic-GC pass


async def chaos(servers: list[Server], settings: Settings, seconds: float, round_seconds: float,
                n_async: int, n_threads: int, ignore_ports: list[int]) -> ChaosResult:
    arm(servers, settings.fault_rate, faults.CHAOS, settings.seed)
    result = ChaosResult(new_tally(settings))
    end = time.monotonic() + seconds
    async with fresh_router(servers, settings) as (router, log):
        load = load_for(router, result.tally, settings)
        with LagMonitor() as lag:
            while (now := time.monotonic()) < end - 1:  # a round of less than a second would measure nothing
                calls, ok = result.tally.count, result.tally.successes
                await run_callers(load, min(now + round_seconds, end), n_async, n_threads)
                result.rounds.append(Round(len(result.rounds) + 1, time.monotonic() - now,
                                           result.tally.count - calls, result.tally.successes - ok,
                                           resources.snapshot(ignore_ports)))
        result.worst_lag, result.worst_gc = lag.worst, lag.worst_gc
    result.trips = log.trips()
    return result


# ---------------------------------------------------------------- brownout


@dataclass(frozen=True)
class BrownoutResult:
    tally: Tally
    trips: Counter[str]


async def brownout(servers: list[Server], settings: Settings, seconds: float, callers: int) -> BrownoutResult:
    """`fault_rate` of fast failures (statuses, resets) on every provider: retries and failover should
    serve ≥ 99 % of calls, and no breaker should open for a provider that still serves most requests."""
    arm(servers, settings.fault_rate, faults.BROWNOUT, settings.seed + 100)
    tally = new_tally(settings)
    async with fresh_router(servers, settings) as (router, log):
        await run_callers(load_for(router, tally, settings), time.monotonic() + seconds, callers, 0)
    return BrownoutResult(tally, log.trips())


# ---------------------------------------------------------------- outage


@dataclass(frozen=True)
class OutageResult:
    tally: Tally
    requests: int  # that reached the down provider once it was down
    before_open: int  # of which arrived before its breaker first opened
    bound: int  # fail_max + one probe per reset_timeout of the outage
    seconds: float  # from the moment it went down until every call had ended


async def outage(servers: list[Server], settings: Settings, seconds: float, callers: int) -> OutageResult:
    """`callers` call concurrently; once their traffic is steady, the first provider goes down (a 503
    for every request) for `seconds`, and the calls that run meanwhile must go elsewhere."""
    arm(servers, 0, (), 0)
    down = servers[0]
    tally = new_tally(settings)
    went_down = 0.0

    async def take_down() -> None:
        nonlocal went_down
        await asyncio.sleep(settings.pace + 1)
        went_down = time.monotonic()  # taken before: a request racing the switch is counted, not missed
        down.down_for(seconds + 3600)  # stays down while the calls drain, however long that takes

    async with fresh_router(servers, settings) as (router, log):
        switch = asyncio.ensure_future(take_down())
        try:
            until = time.monotonic() + settings.pace + 1 + seconds
            await run_callers(load_for(router, tally, settings), until, callers, 0)
            await switch
        finally:
            switch.cancel()
    elapsed = time.monotonic() - went_down
    times = [t for t in down.request_times() if t >= went_down]
    arm(servers, 0, (), 0)
    first_open = min((t for t in log.opened[PROVIDERS[0]] if t >= went_down), default=float("inf"))
    bound = FAIL_MAX + int(elapsed // RESET_TIMEOUT)
    return OutageResult(tally, len(times), sum(t < first_open for t in times), bound, elapsed)
