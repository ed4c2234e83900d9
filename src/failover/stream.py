"""The two drivers of the planner: `ChatStream` (sync) and `AsyncChatStream` (asyncio).

They only perform what the planner decides (planner.py): sleep, ask a breaker, open a provider's
stream and move its bytes into `attempt.feed`, record a verdict, and hand the planner's events to
the observer. The loop body is the same in both; only the `await`s differ. In asyncio every
breaker call goes through the breaker's async twin, so a shared (Redis) breaker never blocks the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Generator, Iterable, Iterator
from types import TracebackType
from typing import Any

from failover.actions import Admit, Adopt, Cancel, Done, Open, Probe, Read, Sleep
from failover.attempt import Judge
from failover.errors import Attempt
from failover.events import Observer
from failover.planner import Planner
from failover.probe import start_probe
from failover.race import TaskReaders, ThreadReaders
from failover.types import Chunk, Result

monotonic = time.monotonic
log = logging.getLogger("failover")


def _report(planner: Planner, observer: Observer) -> None:
    for event in planner.take_events():
        observer.handle(event)


class _StreamBase:
    def __init__(self, planner: Planner) -> None:
        self._planner = planner

    @property
    def result(self) -> Result:
        """The Result once the stream has finished; after the caller broke off, what is known so far
        (`finish_reason` None)."""
        if self._planner.result is None:
            raise RuntimeError("the stream has not finished: iterate it to the end first")
        return self._planner.result

    @property
    def attempts(self) -> list[Attempt]:
        """The attempts so far (grows while the stream runs)."""
        return self._planner.attempts

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._planner.parts)


class ChatStream(_StreamBase):
    """`for chunk in router.stream(...)`; `with` closes the upstream connection promptly on break."""

    def __init__(self, planner: Planner, observer: Observer) -> None:
        super().__init__(planner)
        # _run must not hold `self`: a stream <-> generator cycle would leave a bare `for ... break`
        # to the cyclic GC, and the upstream connection open until it runs.
        self._chunks = self._run(planner, observer)

    def __iter__(self) -> Iterator[Chunk]:
        return self._chunks

    def __next__(self) -> Chunk:
        return next(self._chunks)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._chunks.close()

    @staticmethod
    def _run(planner: Planner, observer: Observer) -> Generator[Chunk, None, None]:
        readers: ThreadReaders | None = None  # only for a call whose attempts race (hedging)
        try:
            while True:
                action = planner.next(monotonic())
                _report(planner, observer)
                if (isinstance(action, Open) and not action.race) or isinstance(action, Adopt):
                    live = action.attempt
                    body: Any = None
                    blocks: Iterable[bytes]
                    try:
                        if isinstance(action, Adopt):  # the race is over: read the one left inline
                            assert readers is not None
                            body, blocks = readers.detach(live)
                        else:
                            body = blocks = live.route.provider.open(live.request, live.timeout, live.watch)
                        for data in blocks:
                            chunks = live.feed(data, monotonic())
                            if live.due is not None:  # its first content: the provider's success
                                planner.serving(live, live.due.record(monotonic()), monotonic())
                            for chunk in chunks:
                                yield chunk
                                live.resume(monotonic())
                        planner.ended(live, monotonic())
                    except Exception as exc:
                        planner.failed(live, exc, monotonic())
                    finally:
                        if body is not None:
                            _close(body)
                elif isinstance(action, Open):
                    readers = readers or ThreadReaders()
                    readers.start(action.attempt)
                elif isinstance(action, Read):
                    assert readers is not None
                    item = readers.get(action.until)
                    if item is None or item[0].stopped:
                        continue  # a hedge is due, or what a cancelled attempt still read
                    live, got = item
                    if got is None:
                        planner.ended(live, monotonic())
                    elif isinstance(got, BaseException):
                        planner.failed(live, got, monotonic())
                    else:
                        try:
                            chunks = live.feed(got, monotonic())
                        except Exception as exc:
                            readers.stop(live)
                            planner.failed(live, exc, monotonic())
                            continue
                        if live.due is not None:
                            planner.serving(live, live.due.record(monotonic()), monotonic())
                        for chunk in chunks:
                            yield chunk
                            live.resume(monotonic())
                        readers.consumed(live)
                elif isinstance(action, Admit):
                    planner.admitted(action.route.breaker.admit(monotonic()), monotonic())
                elif isinstance(action, Judge):
                    planner.judged(action.record(monotonic()), monotonic())
                elif isinstance(action, Sleep):
                    time.sleep(action.seconds)
                elif isinstance(action, Cancel):
                    assert readers is not None
                    readers.stop(action.attempt)
                elif isinstance(action, Probe):
                    start_probe(action.route, action.admission, observer)
                elif isinstance(action, Done):
                    yield from action.last
                    return
                else:
                    raise action.error
        except (GeneratorExit, KeyboardInterrupt, SystemExit):
            for judge in planner.cancelled(monotonic()):
                try:
                    judge.record(monotonic())
                except Exception:  # the caller is leaving: its verdict is best effort
                    log.exception("failover: recording the verdict of a cancelled attempt failed")
            _report(planner, observer)
            raise
        finally:
            if readers is not None:
                readers.close()


class AsyncChatStream(_StreamBase):
    """`async with router.astream(...) as stream: async for chunk in stream`."""

    def __init__(self, planner: Planner, observer: Observer) -> None:
        super().__init__(planner)
        self._chunks = self._run(planner, observer)  # not holding `self` (see ChatStream)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks

    async def __anext__(self) -> Chunk:
        return await self._chunks.__anext__()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    @staticmethod
    async def _run(planner: Planner, observer: Observer) -> AsyncGenerator[Chunk, None]:
        readers: TaskReaders | None = None  # only for a call whose attempts race (hedging)
        try:
            while True:
                action = planner.next(monotonic())
                _report(planner, observer)
                if (isinstance(action, Open) and not action.race) or isinstance(action, Adopt):
                    live = action.attempt
                    body: Any = None
                    ablocks: AsyncIterable[bytes]
                    try:
                        if isinstance(action, Adopt):  # the race is over: read the one left inline
                            assert readers is not None
                            body, ablocks = await readers.detach(live)
                        else:
                            body = ablocks = await live.route.provider.aopen(live.request, live.timeout, live.watch)
                        async for data in ablocks:
                            chunks = live.feed(data, monotonic())
                            if live.due is not None:  # its first content: the provider's success
                                planner.serving(live, await live.due.arecord(monotonic()), monotonic())
                            for chunk in chunks:
                                yield chunk
                                live.resume(monotonic())
                        planner.ended(live, monotonic())
                    except Exception as exc:
                        planner.failed(live, exc, monotonic())
                    finally:
                        if body is not None:
                            await _aclose(body)
                elif isinstance(action, Open):
                    readers = readers or TaskReaders()
                    readers.start(action.attempt)
                elif isinstance(action, Read):
                    assert readers is not None
                    item = await readers.get(action.until)
                    if item is None or item[0].stopped:
                        continue  # a hedge is due, or what a cancelled attempt still read
                    live, got = item
                    if got is None:
                        planner.ended(live, monotonic())
                    elif isinstance(got, BaseException):
                        planner.failed(live, got, monotonic())
                    else:
                        try:
                            chunks = live.feed(got, monotonic())
                        except Exception as exc:
                            readers.stop(live)
                            planner.failed(live, exc, monotonic())
                            continue
                        if live.due is not None:
                            planner.serving(live, await live.due.arecord(monotonic()), monotonic())
                        for chunk in chunks:
                            yield chunk
                            live.resume(monotonic())
                        readers.consumed(live)
                elif isinstance(action, Admit):
                    planner.admitted(await action.route.breaker.aadmit(monotonic()), monotonic())
                elif isinstance(action, Judge):
                    planner.judged(await action.arecord(monotonic()), monotonic())
                elif isinstance(action, Sleep):
                    await asyncio.sleep(action.seconds)
                elif isinstance(action, Cancel):
                    assert readers is not None
                    readers.stop(action.attempt)
                elif isinstance(action, Probe):
                    start_probe(action.route, action.admission, observer)
                elif isinstance(action, Done):
                    for chunk in action.last:
                        yield chunk
                    return
                else:
                    raise action.error
        except (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            for judge in planner.cancelled(monotonic()):
                _record_later(judge)
            _report(planner, observer)
            raise
        finally:
            if readers is not None:
                for live in planner.live:
                    readers.stop(live)
                await _settle_readers(readers)


def _close(body: Any) -> None:
    try:
        body.close()
    except Exception:  # the attempt is over either way; closing only returns the connection
        log.debug("failover: closing a response failed", exc_info=True)


async def _aclose(body: Any) -> None:
    # Closing may itself be interrupted when the task is being cancelled; the connection is then
    # dropped by the transport, which is what we want anyway.
    try:
        await body.close()
    except (asyncio.CancelledError, Exception):
        pass


async def _settle_readers(readers: TaskReaders) -> None:
    # Awaiting in a task that is being cancelled may be interrupted again: the readers were cancelled
    # already, and finish on their own.
    try:
        await readers.close()
    except (asyncio.CancelledError, Exception):
        pass


_background: set[asyncio.Task[Any]] = set()


def _record_later(judge: Judge) -> None:
    """A cancelled attempt's verdict, without awaiting in a task that is being cancelled: a local
    breaker records it at once (no I/O), a shared one in a task of its own."""
    if judge.route.breaker.shared is None:
        judge.record(monotonic())
        return
    try:
        task = asyncio.get_running_loop().create_task(judge.arecord(monotonic()))
    except RuntimeError:  # no running loop any more: the probe lease ends by its TTL
        return
    _background.add(task)
    task.add_done_callback(_background.discard)
