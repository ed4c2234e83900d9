"""Closing, cancelling and resources: the caller leaving must close the upstream connection."""

from __future__ import annotations

import asyncio
import gc
import os
import time

from tests.conftest import MESSAGES, make_router

from failover import Router
from failover.emulator import Emulator


def wait_disconnected(emu: Emulator, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = emu.requests
        if records and records[-1].ended_at is not None:
            return bool(records[-1].disconnected)
        time.sleep(0.01)
    return False


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def slow(emu: Emulator) -> None:
    from failover.emulator import steps
    emu.script(steps.ok(chunk_delay=0.05))


def test_with_block_break_closes_upstream(emu, kind):
    primary = emu[kind]
    slow(primary)
    with make_router(primary) as router:
        with router.stream(MESSAGES) as stream:
            for i, _ in enumerate(stream):
                if i == 1:
                    break
        assert wait_disconnected(primary)
        assert primary.requests[-1].chunks_sent < len(primary.answer.split())


def test_bare_for_break_closes_upstream(emu, kind):
    primary = emu[kind]
    slow(primary)
    with make_router(primary) as router:
        for i, _ in enumerate(router.stream(MESSAGES)):
            if i == 1:
                break
        assert wait_disconnected(primary)


def test_async_with_break_closes_upstream(emu, kind):
    primary = emu[kind]
    slow(primary)

    async def go(router: Router) -> None:
        async with router.astream(MESSAGES) as stream:
            async for _ in stream:
                break
        await router.aclose()

    with make_router(primary) as router:
        asyncio.run(go(router))
    assert wait_disconnected(primary)


def test_task_cancel_mid_stream_closes_upstream(emu, kind):
    primary = emu[kind]
    slow(primary)

    async def consume(router: Router) -> None:
        async with router.astream(MESSAGES) as stream:
            async for _ in stream:
                pass

    async def go(router: Router) -> None:
        task = asyncio.ensure_future(consume(router))
        await asyncio.sleep(0.2)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await router.aclose()

    with make_router(primary) as router:
        asyncio.run(go(router))
    assert wait_disconnected(primary)


def test_complete_and_acomplete(emu, kind):
    primary = emu[kind]
    with make_router(primary) as router:
        result = router.complete(MESSAGES)
        assert result.text == primary.answer

        async def go() -> str:
            r = await router.acomplete(MESSAGES)
            await router.aclose()
            return r.text

        assert asyncio.run(go()) == primary.answer


def test_connections_are_reused_and_released(emu, kind):
    primary = emu[kind]
    before = open_sockets()
    with make_router(primary) as router:
        for _ in range(5):
            assert router.complete(MESSAGES).text == primary.answer
        assert open_sockets() - before <= 2  # one pooled connection, not one per call
    gc.collect()
    assert open_sockets() <= before


def test_result_before_the_end_is_an_error(emu, kind):
    primary = emu[kind]
    with make_router(primary) as router, router.stream(MESSAGES) as stream:
        try:
            _ = stream.result
        except RuntimeError as e:
            assert "not finished" in str(e)
        else:
            raise AssertionError("result must not be available before the stream finished")


def test_asyncio_run_twice_without_aclose_uses_a_fresh_client(emu, kind):
    primary, fallback = emu[kind], emu["anthropic" if kind == "openai" else "openai"]
    with make_router(primary, fallback) as router:
        first = asyncio.run(router.acomplete(MESSAGES))
        second = asyncio.run(router.acomplete(MESSAGES))  # a new event loop: the old client is dead
    assert [a.outcome for a in first.attempts] == ["ok"]
    assert [a.outcome for a in second.attempts] == ["ok"] and second.provider == "primary"
    assert router.breaker("primary").fail_counter == 0
