"""The callers: async tasks and threads that stream answers through the router, one call after
another, until their round is over. Each call becomes a `Call` in the phase's `Tally`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import threading
import time
from dataclasses import dataclass

from failover import Chunk, Router, StreamInterrupted
from soak.verdict import Api, Call, Tally

MESSAGES = [{"role": "user", "content": "How does a circuit breaker protect callers?"}]


class Consumer:
    """Holds the answer as a careful caller would: on `chunk.restart` it throws its text away,
    after checking that `chunk.discard` is exactly that text."""

    __slots__ = ("discard_ok", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.discard_ok = True

    def feed(self, chunk: Chunk) -> None:
        if chunk.restart:
            if chunk.discard != "".join(self.parts):
                self.discard_ok = False
            self.parts.clear()
        self.parts.append(chunk.text)

    def call(self, api: Api, started: float, reported: str | None, error: BaseException | None) -> Call:
        if isinstance(error, StreamInterrupted):
            reported = error.partial_text
        return Call(api, time.monotonic() - started, "".join(self.parts), reported, error,
                    discard_ok=self.discard_ok)


async def one_async(router: Router, consumer: Consumer, started: float) -> Call:
    try:
        async with router.astream(MESSAGES) as stream:
            async for chunk in stream:
                consumer.feed(chunk)
            text = stream.result.text
    except Exception as e:
        return consumer.call("async", started, None, e)
    return consumer.call("async", started, text, None)


def one_sync(router: Router, consumer: Consumer, started: float) -> Call:
    try:
        with router.stream(MESSAGES) as stream:
            for chunk in stream:
                consumer.feed(chunk)
            text = stream.result.text
    except Exception as e:
        return consumer.call("sync", started, None, e)
    return consumer.call("sync", started, text, None)


def hung(api: Api, consumer: Consumer, started: float) -> Call:
    return Call(api, time.monotonic() - started, "".join(consumer.parts), hung=True)


@dataclass(frozen=True)
class Load:
    router: Router
    tally: Tally
    give_up: float  # seconds after which a call still running is counted as hung and abandoned
    # A caller starts a call at most every `pace` seconds, like a user who reads an answer before
    # asking again: the offered load stays the same whether calls succeed or fail at once (callers
    # spinning on the instant failures of open breakers would make the counts about the spin).
    # Each caller's first call comes at random within the first `pace` seconds: steady traffic, no waves.
    pace: float = 0.0


async def async_caller(load: Load, until: float) -> None:
    await asyncio.sleep(random.uniform(0, load.pace))
    while time.monotonic() < until:
        consumer, started = Consumer(), time.monotonic()
        task = asyncio.ensure_future(one_async(load.router, consumer, started))
        done, _ = await asyncio.wait({task}, timeout=load.give_up)
        if done:
            call = task.result()
        else:
            task.cancel()
            call = hung("async", consumer, started)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        load.tally.add(call)
        await asyncio.sleep(started + load.pace - time.monotonic())


class SyncCaller(threading.Thread):
    """One thread making sync calls until `until`. A call that hangs is reported by `abandon()` from
    the main thread; the thread then records nothing more."""

    def __init__(self, load: Load, until: float, index: int) -> None:
        super().__init__(name=f"soak-sync-{index}", daemon=True)
        self._load, self._until = load, until
        self._lock = threading.Lock()
        self._current: tuple[Consumer, float] | None = None
        self._abandoned = False

    def run(self) -> None:
        time.sleep(random.uniform(0, self._load.pace))
        while time.monotonic() < self._until:
            consumer, started = Consumer(), time.monotonic()
            with self._lock:
                if self._abandoned:
                    return
                self._current = (consumer, started)
            call = one_sync(self._load.router, consumer, started)
            with self._lock:
                self._current = None
                if self._abandoned:
                    return
            self._load.tally.add(call)
            time.sleep(max(0.0, started + self._load.pace - time.monotonic()))

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            current, self._current = self._current, None
        if current is not None:
            self._load.tally.add(hung("sync", *current))


async def run_callers(load: Load, until: float, n_async: int, n_threads: int) -> None:
    """`n_async` tasks on this loop and `n_threads` threads call until `until`; returns once every
    call has ended or was given up as hung."""
    threads = [SyncCaller(load, until, i) for i in range(n_threads)]
    for t in threads:
        t.start()
    await asyncio.gather(*(async_caller(load, until) for _ in range(n_async)))
    # Polled rather than joined: a join in an executor would add threads of our own to the count.
    give_up_at = until + load.give_up
    while any(t.is_alive() for t in threads) and time.monotonic() < give_up_at:
        await asyncio.sleep(0.05)
    for t in threads:
        if t.is_alive():
            t.abandon()


class LagMonitor:
    """How late this event loop wakes up a task, and the longest cyclic-GC pass: a timeout that fires
    while the process stood still is the machine's doing as much as the router's."""

    def __init__(self, interval: float = 0.05) -> None:
        self.worst = 0.0
        self.worst_gc = 0.0
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._interval)
            self.worst = max(self.worst, time.monotonic() - before - self._interval)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.worst_gc = max(self.worst_gc, time.perf_counter() - self._gc_started)

    def __enter__(self) -> LagMonitor:
        self._task = asyncio.get_running_loop().create_task(self._run())
        gc.callbacks.append(self._gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._gc)
        if self._task is not None:
            self._task.cancel()
