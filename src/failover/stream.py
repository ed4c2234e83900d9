"""The two drivers of the planner: `ChatStream` (sync) and `AsyncChatStream` (asyncio).

They only do I/O: open the provider's stream, pull events, sleep, and report to the planner, which
holds every decision. The per-chunk path is deliberately plain: decode, append, build the `Chunk`,
move the idle deadline forward.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from types import TracebackType
from typing import Any

import httpx2

from failover.errors import Attempt
from failover.planner import Open, Planner, Raise, Sleep
from failover.policies.timeouts import Watch
from failover.types import Chunk, Result
from failover.watchdog import LoopWatchdog, ThreadWatchdog

monotonic = time.monotonic


def _prepare(response: httpx2.Response, watch: Watch) -> None:
    """Hand the body's deadlines to our watch: the SDK's per-read timeout was the header wait
    (bounded by first_token); from here on the watch decides, the SDK's timeout is only a backstop."""
    timeout = response.request.extensions.get("timeout")
    if isinstance(timeout, dict):
        timeout["read"] = watch.settings.total
    stream = response.extensions.get("network_stream")
    sock: socket.socket | None = stream.get_extra_info("socket") if stream is not None else None
    watch.attach(sock)


class _Pump:
    """One attempt's per-chunk bookkeeping, shared by both drivers."""

    __slots__ = ("_discard", "_first", "_hard", "_idle", "_model", "_name", "_parts", "_planner", "_poke",
                 "_seam", "_watch")

    def __init__(self, planner: Planner, decision: Open, poke: Callable[[float], None]) -> None:
        self._planner = planner
        self._parts = planner.parts
        self._watch = watch = decision.watch
        self._idle, self._hard = watch.idle, watch.hard
        self._name, self._model = decision.route.provider.name, decision.route.provider.model
        self._poke = poke
        self._seam = decision.seam
        self._discard = decision.discard
        self._first = True

    def deliver(self, text: str) -> Chunk | None:
        """The chunk for the caller, or None while a continuation's seam holds the text back."""
        watch = self._watch
        if not watch.got_text:
            watch.got_text = True
            watch.deadline = min(monotonic() + self._idle, self._hard)
            self._poke(watch.deadline)  # the idle deadline may come before the first-token one did
        if self._seam is not None:
            text = self._seam.feed(text)
            if self._seam.done:
                self._seam = None
            if not text:
                self.reading()
                return None
        self._parts.append(text)
        watch.reading = False  # the caller holds the chunk: its time is not the provider's
        if self._first:
            self._first = False
            self._planner.first_text(monotonic())
            if self._discard is not None:
                return Chunk(text, self._name, self._model, restart=True, discard=self._discard)
        return Chunk(text, self._name, self._model)

    def flush(self) -> Chunk | None:
        """The stream completed: release what the seam still holds."""
        seam, self._seam = self._seam, None
        text = seam.flush() if seam is not None else ""
        return self.deliver(text) if text else None

    def reading(self) -> None:
        deadline = monotonic() + self._idle
        watch = self._watch
        watch.deadline = deadline if deadline < self._hard else self._hard
        watch.reading = True


class _StreamBase:
    def __init__(self, planner: Planner) -> None:
        self._planner = planner

    @property
    def result(self) -> Result:
        """The Result, once the stream has finished."""
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

    def __init__(self, planner: Planner, watchdog: ThreadWatchdog) -> None:
        super().__init__(planner)
        self._watchdog = watchdog
        # _run must not hold `self`: a stream <-> generator cycle would leave a bare `for ... break`
        # to the cyclic GC, and the upstream connection open until it runs.
        self._chunks = self._run(planner, watchdog)

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
    def _run(planner: Planner, watchdog: ThreadWatchdog) -> Generator[Chunk, None, None]:
        try:
            while True:
                decision = planner.decide(monotonic())
                if isinstance(decision, Sleep):
                    time.sleep(decision.seconds)
                    continue
                if isinstance(decision, Raise):
                    raise decision.error
                provider, watch, decoder = decision.route.provider, decision.watch, decision.decoder
                feed = decoder.feed
                pump = _Pump(planner, decision, watchdog.poke)
                events: Any = None
                try:
                    events = provider.open(decision.request, decision.timeout)
                    _prepare(events.response, watch)
                    watchdog.add(watch)
                    for event in events:
                        text = feed(event)
                        if text and (chunk := pump.deliver(text)) is not None:
                            yield chunk
                            pump.reading()
                    if decoder.complete and (chunk := pump.flush()) is not None:
                        yield chunk
                except Exception as exc:
                    if not decoder.complete:  # an error after the terminal event loses nothing
                        planner.failed(exc, monotonic(), watch)
                        continue
                finally:
                    watchdog.remove(watch)
                    if events is not None:
                        events.close()
                if planner.finished(monotonic()) is not None:
                    return
        except (GeneratorExit, KeyboardInterrupt, SystemExit):
            planner.cancelled(monotonic())
            raise


class AsyncChatStream(_StreamBase):
    """`async with router.astream(...) as stream: async for chunk in stream`."""

    def __init__(self, planner: Planner) -> None:
        super().__init__(planner)
        self._chunks = self._run(planner)  # not holding `self` (see ChatStream)

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
    async def _run(planner: Planner) -> AsyncGenerator[Chunk, None]:
        try:
            while True:
                decision = planner.decide(monotonic())
                if isinstance(decision, Sleep):
                    await asyncio.sleep(decision.seconds)
                    continue
                if isinstance(decision, Raise):
                    raise decision.error
                provider, watch, decoder = decision.route.provider, decision.watch, decision.decoder
                feed = decoder.feed
                events: Any = None
                timer: LoopWatchdog | None = None
                try:
                    events = await provider.aopen(decision.request, decision.timeout)
                    _prepare(events.response, watch)
                    timer = LoopWatchdog(watch)
                    pump = _Pump(planner, decision, timer.poke)
                    async for event in events:
                        text = feed(event)
                        if text and (chunk := pump.deliver(text)) is not None:
                            yield chunk
                            pump.reading()
                    if decoder.complete and (chunk := pump.flush()) is not None:
                        yield chunk
                except Exception as exc:
                    if not decoder.complete:
                        planner.failed(exc, monotonic(), watch)
                        continue
                finally:
                    if timer is not None:
                        timer.cancel()
                    if events is not None:
                        await _close_quietly(events)
                if planner.finished(monotonic()) is not None:
                    return
        except (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            planner.cancelled(monotonic())
            raise


async def _close_quietly(events: Any) -> None:
    # Closing may itself be interrupted when the task is being cancelled; the connection is then
    # dropped by the transport, which is what we want anyway.
    try:
        await events.close()
    except (asyncio.CancelledError, Exception):
        pass
