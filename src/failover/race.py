"""Reading several attempts at once, for hedged calls: a pooled thread per attempt (sync driver) or a
task per attempt (asyncio driver), each handing its body's blocks to the driver one at a time.

Only attempts the planner opens with `race` (a hedge may start) are read this way, and only until
the race is decided: then the planner's `Adopt` hands the winner back (`detach` returns its body and
iterator) and the driver reads it inline, as every other attempt, with no thread, task or queue per
chunk. A reader reads one block, hands it over, and reads the next only once the driver asks for it
(after the caller took the chunks): the time the caller holds a chunk is not provider silence, and
nothing is read ahead. A stopped reader's connection is closed at once: a task is cancelled, a
thread's socket is shut down (which wakes its blocked read).

Items are `(attempt, block)`, `(attempt, exception)` or `(attempt, None)` for the end of the body.

The sync readers share one process-wide pool: starting a thread costs more than a whole chunk's
handling, and an idle pooled thread costs nothing. The pool is large because a reader blocks on its
socket for as long as the provider is silent; threads are only made when none is idle.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from failover.attempt import LiveAttempt

Item = tuple[LiveAttempt, bytes | BaseException | None]
G = TypeVar("G")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_reading = 0  # pooled threads reading a body now (the others are idle)


def reading() -> int:
    """How many pooled threads are reading an attempt's body now (a leak check: 0 between calls)."""
    return _reading


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4096, thread_name_prefix="failover-race")
        return _pool


class _Reader(Generic[G]):
    __slots__ = ("body", "detached", "gate", "it", "runner")

    def __init__(self, gate: G) -> None:
        self.gate = gate
        self.body: Any = None
        self.it: Any = None
        self.detached = False
        self.runner: Any = None  # the thread's Future, or the task


class _Readers(Generic[G]):
    """What both kinds share: the readers by attempt, and the one owed a `more` (the attempt whose
    block the driver took last: it reads on when the driver next waits, unless it is adopted)."""

    def __init__(self) -> None:
        self._readers: dict[LiveAttempt, _Reader[G]] = {}
        self._owed: LiveAttempt | None = None

    def consumed(self, live: LiveAttempt) -> None:
        self._owed = live

    def _take_owed(self) -> _Reader[G] | None:
        owed, self._owed = self._owed, None
        return self._readers.get(owed) if owed is not None and not owed.stopped else None

    def _adopt(self, live: LiveAttempt) -> _Reader[G]:
        self._owed = None
        reader = self._readers.pop(live)
        reader.detached = True
        return reader


def _held(live: LiveAttempt, items: list[Item]) -> tuple[list[bytes], BaseException | bool]:
    """What a reader handed over for `live` that the driver had not taken: its blocks, and how the body
    went on (an exception, True: it ended, False: read on)."""
    blocks: list[bytes] = []
    for owner, got in items:
        if owner is not live:
            continue
        if got is None:
            return blocks, True
        if isinstance(got, BaseException):
            return blocks, got
        blocks.append(got)
    return blocks, False


def _then(blocks: list[bytes], then: BaseException | bool, it: Iterator[bytes] | None) -> Iterator[bytes]:
    """The held blocks, then the rest of the body."""
    yield from blocks
    if isinstance(then, BaseException):
        raise then
    if not then and it is not None:
        yield from it


async def _athen(blocks: list[bytes], then: BaseException | bool, it: AsyncIterator[bytes] | None
                 ) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block
    if isinstance(then, BaseException):
        raise then
    if not then and it is not None:
        async for data in it:
            yield data


class ThreadReaders(_Readers[threading.Event]):
    def __init__(self, pool: ThreadPoolExecutor | None = None) -> None:
        super().__init__()
        self._pool = pool or _shared_pool()
        self._items: queue.Queue[Item] = queue.Queue()

    def start(self, live: LiveAttempt) -> None:
        reader = self._readers[live] = _Reader(threading.Event())
        reader.runner = self._pool.submit(self._read, live, reader)

    def _read(self, live: LiveAttempt, reader: _Reader[threading.Event]) -> None:
        global _reading
        with _pool_lock:
            _reading += 1
        try:
            reader.body = live.route.provider.open(live.request, live.timeout, live.watch)
            reader.it = iter(reader.body)
            for data in reader.it:
                if live.stopped:
                    return
                self._items.put((live, data))
                reader.gate.wait()
                reader.gate.clear()
                if live.stopped or reader.detached:
                    return
            self._items.put((live, None))
        except Exception as exc:
            if not live.stopped:
                self._items.put((live, exc))
        finally:
            if reader.body is not None and not reader.detached:
                try:
                    reader.body.close()
                except Exception:
                    pass
            with _pool_lock:
                _reading -= 1

    def get(self, until: float | None) -> Item | None:
        """The next item, or None when `until` (time.monotonic()) came first."""
        owed = self._take_owed()
        if owed is not None:
            owed.gate.set()
        try:
            if until is None:
                return self._items.get()
            return self._items.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            return None

    def detach(self, live: LiveAttempt) -> tuple[Any, Iterable[bytes]]:
        """The winner's (body, iterator), for the driver to read inline from here on. Waits for its
        reader to hand over the block it may be reading (the driver would wait for it anyway)."""
        parked = self._owed is live  # the driver took its last block: it waits at its gate, reading nothing
        reader = self._adopt(live)
        reader.gate.set()
        if parked:  # it only returns from here on; waiting for that would cost a thread switch
            return reader.body, reader.it
        future: Future[None] = reader.runner
        future.result()
        blocks, then = _held(live, self._drain())
        if blocks or then is not False or reader.it is None:
            return reader.body, _then(blocks, then, reader.it)
        it: Iterator[bytes] = reader.it
        return reader.body, it

    def _drain(self) -> list[Item]:
        items = []
        while True:
            try:
                items.append(self._items.get_nowait())
            except queue.Empty:
                return items

    def stop(self, live: LiveAttempt) -> None:
        live.stopped = True
        live.watch.abort()
        reader = self._readers.pop(live, None)
        if reader is not None:
            reader.gate.set()

    def close(self) -> None:
        readers = list(self._readers.items())
        for live, _ in readers:
            self.stop(live)
        for _, reader in readers:
            reader.runner.result(timeout=5.0)


class TaskReaders(_Readers[asyncio.Event]):
    def __init__(self) -> None:
        super().__init__()
        self._items: asyncio.Queue[Item] = asyncio.Queue()

    def start(self, live: LiveAttempt) -> None:
        reader = self._readers[live] = _Reader(asyncio.Event())
        reader.runner = asyncio.get_running_loop().create_task(self._read(live, reader))

    async def _read(self, live: LiveAttempt, reader: _Reader[asyncio.Event]) -> None:
        try:
            reader.body = await live.route.provider.aopen(live.request, live.timeout, live.watch)
            reader.it = reader.body.__aiter__()
            async for data in reader.it:
                self._items.put_nowait((live, data))
                await reader.gate.wait()
                reader.gate.clear()
                if reader.detached:
                    return
            self._items.put_nowait((live, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._items.put_nowait((live, exc))
        finally:
            if reader.body is not None and not reader.detached:
                try:
                    await reader.body.close()
                except (asyncio.CancelledError, Exception):
                    pass

    async def get(self, until: float | None) -> Item | None:
        owed = self._take_owed()
        if owed is not None:
            owed.gate.set()
        try:
            if until is None:
                return await self._items.get()
            return await asyncio.wait_for(self._items.get(), max(0.0, until - time.monotonic()))
        except TimeoutError:
            return None

    async def detach(self, live: LiveAttempt) -> tuple[Any, AsyncIterable[bytes]]:
        reader = self._adopt(live)
        reader.gate.set()
        await reader.runner
        items = []
        while not self._items.empty():
            items.append(self._items.get_nowait())
        blocks, then = _held(live, items)
        if blocks or then is not False or reader.it is None:
            return reader.body, _athen(blocks, then, reader.it)
        it: AsyncIterator[bytes] = reader.it
        return reader.body, it

    def stop(self, live: LiveAttempt) -> None:
        live.stopped = True
        reader = self._readers.pop(live, None)
        if reader is not None:
            reader.runner.cancel()

    async def close(self) -> None:
        tasks = [reader.runner for reader in self._readers.values()]
        for live in list(self._readers):
            self.stop(live)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
