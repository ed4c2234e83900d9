"""Shared fixtures: emulated providers on real sockets, routers over them, sync/async runners."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from failover import Chunk, FailoverError, Result, Router, race
from failover.emulator import Emulator

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
OTHER = {"openai": "anthropic", "anthropic": "openai"}


@pytest.fixture(scope="session")
def emulators() -> Iterator[dict[str, Emulator]]:
    """One emulator per provider kind for the whole session; each test starts from a clean script."""
    emus = {"openai": Emulator("openai").start(), "anthropic": Emulator("anthropic").start()}
    yield emus
    for emu in emus.values():
        emu.stop()


@pytest.fixture
def emu(emulators: dict[str, Emulator]) -> Iterator[dict[str, Emulator]]:
    for e in emulators.values():
        e.reset()
    yield emulators
    for e in emulators.values():
        e.reset()


@pytest.fixture
def continuation_modes(emulators: dict[str, Emulator]) -> Iterator[None]:
    """Tests may change how the emulators answer continuations; put it back afterwards."""
    saved = {k: (e.continuation, e.reject_prefill) for k, e in emulators.items()}
    yield
    for k, e in emulators.items():
        e.continuation, e.reject_prefill = saved[k]


def provider_entry(name: str, emu: Emulator, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": emu.kind, "model": f"{name}-model", "api_key": "test-key",
                             "base_url": emu.base_url}
    entry.update(overrides)
    return entry


FAST_DEFAULTS: dict[str, Any] = {
    "retry": {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.05, "multiplier": 2.0,
              "max_retry_after": 2.0},
    "breaker": {"fail_max": 100, "reset_timeout": 0.5},
    "timeouts": {"connect": 1.0, "first_token": 1.0, "idle": 1.0, "total": 10.0},
    "midstream": "raise",
}


def make_router(primary: Emulator, fallback: Emulator | None = None, *,
                primary_opts: dict[str, Any] | None = None, fallback_opts: dict[str, Any] | None = None,
                more: list[dict[str, Any]] | None = None, **defaults: Any) -> Router:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in FAST_DEFAULTS.items()}
    for key, value in defaults.items():
        if isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    providers = [provider_entry("primary", primary, **(primary_opts or {}))]
    if fallback is not None:
        providers.append(provider_entry("fallback", fallback, **(fallback_opts or {})))
    providers.extend(more or [])
    return Router.from_dict({"providers": providers, "defaults": merged}, source="<test>")


class Outcome:
    """What a caller saw: the chunks' text, and the Result or the error."""

    def __init__(self, chunks: list[Chunk], result: Result | None, error: FailoverError | None) -> None:
        self.chunks = chunks
        self.texts = [c.text for c in chunks]
        self.text = "".join(self.texts)
        self.result = result
        self.error = error

    @property
    def attempts(self) -> list[Any]:
        if self.result is not None:
            return self.result.attempts
        assert self.error is not None
        return self.error.attempts

    def summary(self) -> list[tuple[str, str, str | None]]:
        return [(a.provider, a.outcome, a.error_type) for a in self.attempts]


def run_sync(router: Router, messages: list[dict[str, str]] | None = None, **params: Any) -> Outcome:
    chunks: list[Chunk] = []
    try:
        with router.stream(messages or MESSAGES, **params) as stream:
            for chunk in stream:
                chunks.append(chunk)
            return Outcome(chunks, stream.result, None)
    except FailoverError as e:
        return Outcome(chunks, None, e)


async def run_async(router: Router, messages: list[dict[str, str]] | None = None, **params: Any) -> Outcome:
    chunks: list[Chunk] = []
    try:
        async with router.astream(messages or MESSAGES, **params) as stream:
            async for chunk in stream:
                chunks.append(chunk)
            return Outcome(chunks, stream.result, None)
    except FailoverError as e:
        return Outcome(chunks, None, e)


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Any:
    """Run one call through the router in the parametrised mode and return its Outcome."""
    if request.param == "sync":
        return run_sync

    def run(router: Router, messages: list[dict[str, str]] | None = None, **params: Any) -> Outcome:
        async def go() -> Outcome:
            try:
                return await run_async(router, messages, **params)
            finally:
                await router.aclose()
        return asyncio.run(go())

    return run


@pytest.fixture(params=["openai", "anthropic"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must leave no thread of ours running (watchdogs, clients), and no pooled thread of
    a hedged call still reading (the pool's idle threads stay for the next call)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    gc.collect()
    leaked = [t for t in threading.enumerate()
              if t.ident not in before and t.is_alive() and t.name.startswith("failover")
              and not t.name.startswith("failover-race")]
    for t in leaked:
        t.join(timeout=2.0)
    still = [t.name for t in leaked if t.is_alive()]
    give_up = time.monotonic() + 2.0
    while race.reading() and time.monotonic() < give_up:
        time.sleep(0.01)
    assert not still, f"threads left behind: {still}"
    assert not race.reading(), f"{race.reading()} pooled threads still reading a hedged call's body"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One real redis-server for the session (tests/redis_server.py); each test uses its own keys."""
    from tests.redis_server import RedisServer

    server = RedisServer().start()
    yield server
    server.close()
