"""Reading several attempts at once, for hedged calls: a thread per attempt (sync driver) or a task per
attempt (asyncio driver), each handing its body's blocks to the driver one at a time.

Only attempts the planner opens with `race` (a hedge may start) are read this way; every other
attempt is read inline by the driver, with no thread, task or queue. A reader reads one block, hands
it over, and waits until the driver says `more` (after the caller took the chunks), so a block is
read only when the caller is ready for it, as inline: the time the caller holds a chunk is not
provider silence, and nothing is read ahead. A stopped reader's connection is closed at once: a
task is cancelled, a thread's socket is shut down (which wakes its blocked read).

Items are `(attempt, block)`, `(attempt, exception)` or `(attempt, None)` for the end of the body.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any

from failover.attempt import LiveAttempt

Item = tuple[LiveAttempt, bytes | BaseException | None]


class ThreadReaders:
    def __init__(self) -> None:
        self._items: queue.Queue[Item] = queue.Queue()
        self._gates: dict[LiveAttempt, threading.Event] = {}
        self._threads: dict[LiveAttempt, threading.Thread] = {}

    def start(self, live: LiveAttempt) -> None:
        gate = self._gates[live] = threading.Event()
        thread = self._threads[live] = threading.Thread(target=self._read, args=(live, gate), daemon=True,
                                                        name=f"failover-race-{live.name}")
        thread.start()

    def _read(self, live: LiveAttempt, gate: threading.Event) -> None:
        body: Any = None
        try:
            body = live.route.provider.open(live.request, live.timeout, live.watch)
            for data in body:
                if live.stopped:
                    return
                self._items.put((live, data))
                gate.wait()
                gate.clear()
                if live.stopped:
                    return
            self._items.put((live, None))
        except Exception as exc:
            if not live.stopped:
                self._items.put((live, exc))
        finally:
            if body is not None:
                try:
                    body.close()
                except Exception:
                    pass

    def get(self, until: float | None) -> Item | None:
        """The next item, or None when `until` (time.monotonic()) came first."""
        try:
            if until is None:
                return self._items.get()
            return self._items.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            return None

    def more(self, live: LiveAttempt) -> None:
        gate = self._gates.get(live)
        if gate is not None:
            gate.set()

    def stop(self, live: LiveAttempt) -> None:
        live.stopped = True
        live.watch.abort()
        self.more(live)
        self._gates.pop(live, None)
        self._threads.pop(live, None)

    def close(self) -> None:
        threads = list(self._threads.items())
        for live, _ in threads:
            self.stop(live)
        for _, thread in threads:
            thread.join(timeout=5.0)


class TaskReaders:
    def __init__(self) -> None:
        self._items: asyncio.Queue[Item] = asyncio.Queue()
        self._gates: dict[LiveAttempt, asyncio.Event] = {}
        self._tasks: dict[LiveAttempt, asyncio.Task[None]] = {}

    def start(self, live: LiveAttempt) -> None:
        gate = self._gates[live] = asyncio.Event()
        self._tasks[live] = asyncio.get_running_loop().create_task(self._read(live, gate))

    async def _read(self, live: LiveAttempt, gate: asyncio.Event) -> None:
        body: Any = None
        try:
            body = await live.route.provider.aopen(live.request, live.timeout, live.watch)
            async for data in body:
                self._items.put_nowait((live, data))
                await gate.wait()
                gate.clear()
            self._items.put_nowait((live, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._items.put_nowait((live, exc))
        finally:
            if body is not None:
                try:
                    await body.close()
                except (asyncio.CancelledError, Exception):
                    pass

    async def get(self, until: float | None) -> Item | None:
        try:
            if until is None:
                return await self._items.get()
            return await asyncio.wait_for(self._items.get(), max(0.0, until - time.monotonic()))
        except TimeoutError:
            return None

    def more(self, live: LiveAttempt) -> None:
        gate = self._gates.get(live)
        if gate is not None:
            gate.set()

    def stop(self, live: LiveAttempt) -> None:
        live.stopped = True
        task = self._tasks.pop(live, None)
        self._gates.pop(live, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for live in list(self._tasks):
            self.stop(live)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
