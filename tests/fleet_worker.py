"""A separate OS process of the fleet tests (multiprocessing, spawn): it builds routers and breakers
from the commands the test sends over a pipe and answers with plain data."""

from __future__ import annotations

import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from failover import FailoverError, Router
from failover.config import BreakerSettings
from failover.policies.breaker import Breaker, Verdict
from failover.policies.redis_store import RedisBreakerStore, RedisLink

MESSAGES = [{"role": "user", "content": "Hello"}]


def _call(router: Router) -> dict[str, Any]:
    try:
        result = router.complete(MESSAGES)
        served, attempts = result.provider, result.attempts
    except FailoverError as e:
        served, attempts = f"error:{type(e).__name__}", e.attempts
    return {"served": served, "attempts": [(a.provider, a.outcome, a.error_type, a.message) for a in attempts]}


def _at(start: float) -> None:
    """Wait for a wall-clock instant shared by every process (a barrier across processes)."""
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)


def _threads(n: int, start: float, work: Any) -> list[Any]:
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        _at(start)
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class Worker:
    def __init__(self) -> None:
        self.routers: dict[str, Router] = {}

    def router(self, name: str, config: dict[str, Any]) -> None:
        self.routers[name] = Router.from_dict(config, source=f"<{name}>")

    def calls(self, name: str, n: int = 1, start: float = 0.0) -> list[dict[str, Any]]:
        router = self.routers[name]
        return list(_threads(n, start, lambda: _call(router)))

    def breaker_state(self, name: str, provider: str) -> str:
        return self.routers[name].breaker(provider).state

    def hammer(self, url: str, prefix: str, fail_max: int, threads: int, failures: int, start: float) -> int:
        """`threads` threads each record `failures` failures on one shared breaker, all at `start`.
        Returns how many verdicts of this process opened it."""
        link = RedisLink(url)
        # failure_rate 0: the count alone trips it, so "no overshoot" means exactly fail_max
        settings = BreakerSettings(fail_max=fail_max, failure_rate=0, reset_timeout=60)
        breaker = Breaker("hammered", settings, probe_lease=10, shared=RedisBreakerStore(link, prefix))

        def work() -> None:
            for _ in range(failures):
                breaker.record(breaker.admit(time.monotonic()), Verdict.FAILURE, time.monotonic())

        _threads(threads, start, work)
        link.close()
        return breaker.trips_here

    def close(self) -> None:
        for router in self.routers.values():
            router.close()
        self.routers.clear()


def serve(conn: Connection) -> None:
    worker = Worker()
    conn.send(("ready", None))
    while True:
        command, args = conn.recv()
        if command == "exit":
            worker.close()
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(worker, command)(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
