"""Router: config → providers and their policies; `stream`, `astream`, `complete`, `acomplete`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from failover.config import Config, load_config, parse_config
from failover.planner import Planner, Route
from failover.policies.breaker import Breaker
from failover.policies.retry import RetryPolicy
from failover.providers import make_provider
from failover.request import build_request
from failover.stream import AsyncChatStream, ChatStream
from failover.telemetry import Telemetry
from failover.types import Result
from failover.watchdog import ThreadWatchdog


def _route(config: Any) -> Route:
    breaker = Breaker(config.name, config.breaker, probe_lease=config.timeouts.total)
    return Route(make_provider(config), config, RetryPolicy(config.retry), breaker)


class Router:
    """Streams chat completions through the providers of a config, in order.

    One SDK client per provider is kept for the router's life (connections are reused); `close()`
    or `with Router(...)` releases them.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.routes = [_route(p) for p in config.providers]
        self._watchdog = ThreadWatchdog()
        # Spans and metrics through the global OpenTelemetry API; one observer per call (telemetry.py).
        self.telemetry = Telemetry.for_config(config)
        for route in self.routes:
            self.telemetry.watch(route.breaker)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Router:
        return cls(load_config(path))

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], *, source: str = "<dict>") -> Router:
        return cls(parse_config(mapping, source=source))

    def breaker(self, name: str) -> Breaker:
        for route in self.routes:
            if route.name == name:
                return route.breaker
        raise KeyError(f"no provider named {name!r}; providers: {', '.join(r.name for r in self.routes)}")

    def _planner(self, messages: Iterable[Mapping[str, Any]], params: dict[str, Any]) -> Planner:
        return Planner(self.routes, build_request(messages, **params), now=time.monotonic(),
                       observer=self.telemetry.observer())

    def stream(self, messages: Iterable[Mapping[str, Any]], *, max_tokens: int | None = None,
               temperature: float | None = None, top_p: float | None = None,
               stop: str | list[str] | None = None) -> ChatStream:
        params = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stop}
        return ChatStream(self._planner(messages, params), self._watchdog)

    def astream(self, messages: Iterable[Mapping[str, Any]], *, max_tokens: int | None = None,
                temperature: float | None = None, top_p: float | None = None,
                stop: str | list[str] | None = None) -> AsyncChatStream:
        params = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stop}
        return AsyncChatStream(self._planner(messages, params))

    def complete(self, messages: Iterable[Mapping[str, Any]], **params: Any) -> Result:
        with self.stream(messages, **params) as stream:
            for _ in stream:
                pass
            return stream.result

    async def acomplete(self, messages: Iterable[Mapping[str, Any]], **params: Any) -> Result:
        async with self.astream(messages, **params) as stream:
            async for _ in stream:
                pass
            return stream.result

    def close(self) -> None:
        self._watchdog.close()
        for route in self.routes:
            route.provider.close()

    async def aclose(self) -> None:
        self._watchdog.close()
        for route in self.routes:
            await route.provider.aclose()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Router {' -> '.join(f'{r.name}({r.provider.model})' for r in self.routes)}>"
