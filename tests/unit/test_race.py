"""The readers of racing attempts (failover.race): adopting one hands over every block, in order,
including one it read but the driver had not taken yet."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from failover.race import TaskReaders, ThreadReaders, reading

BLOCKS = [b"one", b"two", b"three"]


class Body:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Any:
        return iter(BLOCKS)

    def __aiter__(self) -> Any:
        async def blocks() -> Any:
            for block in BLOCKS:
                yield block
        return blocks()

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Attempt:
    """What a reader uses of a LiveAttempt."""

    def __init__(self, body: Body) -> None:
        async def aopen(*_: Any) -> Body:
            return body
        provider = SimpleNamespace(open=lambda *_: body, aopen=aopen)
        self.route = SimpleNamespace(provider=provider)
        self.request = self.timeout = None
        self.watch = SimpleNamespace(abort=lambda: None)
        self.stopped = False


def attempt(body: Body) -> Any:
    return Attempt(body)


def test_adopting_hands_over_the_block_the_driver_had_not_taken() -> None:
    readers = ThreadReaders()
    live = attempt(Body())
    readers.start(live)
    first = readers.get(time.monotonic() + 5.0)
    assert first == (live, b"one")
    readers.consumed(live)
    assert readers.get(time.monotonic() + 5.0) == (live, b"two")  # releases the reader: it reads "two"
    readers.consumed(live)
    readers.get(time.monotonic())  # releases it again; it puts "three" while nobody waits
    give_up = time.monotonic() + 5.0
    while readers._items.empty() and time.monotonic() < give_up:
        time.sleep(0.001)
    _, blocks = readers.detach(live)
    assert list(blocks) == [b"three"]
    assert reading() == 0


def test_an_adopted_reader_is_never_closed_by_its_thread() -> None:
    readers = ThreadReaders()
    body = Body()
    live = attempt(body)
    readers.start(live)
    assert readers.get(time.monotonic() + 5.0) == (live, b"one")
    readers.consumed(live)
    got, blocks = readers.detach(live)
    assert got is body and not body.closed
    assert list(blocks) == [b"two", b"three"]
    give_up = time.monotonic() + 5.0
    while reading() and time.monotonic() < give_up:
        time.sleep(0.001)
    assert reading() == 0  # its pooled thread went back to the pool without closing the body
    assert not body.closed


def test_a_task_reader_hands_over_the_same_way() -> None:
    async def go() -> list[bytes]:
        readers = TaskReaders()
        live = attempt(Body())
        readers.start(live)
        assert await readers.get(None) == (live, b"one")
        readers.consumed(live)
        await readers.get(time.monotonic())  # releases it; it puts "two" while nobody waits
        await asyncio.sleep(0.01)
        _, blocks = await readers.detach(live)
        return [block async for block in blocks]

    assert asyncio.run(go()) == [b"two", b"three"]
