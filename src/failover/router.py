"""Router: config → providers and their policies; `stream`, `astream`, `complete`, `acomplete`."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Unpack

from failover.config import Config, load_config, parse_config
from failover.errors import ConfigError
from failover.events import Fanout, Listener, Observer
from failover.fleet import ConfigWatcher, RouteBuilder
from failover.planner import Planner
from failover.policies.breaker import Breaker
from failover.redact import Scrubber
from failover.route import Route
from failover.stream import AsyncChatStream, ChatStream
from failover.telemetry import Telemetry
from failover.types import Result
from failover.validate import CallParams, build_request

log = logging.getLogger("failover")


class Router:
    """Streams chat completions through the providers of a config, in order.

    One SDK client per provider is kept for the router's life (connections are reused); `close()`
    or `with Router(...)` releases them.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._builder = RouteBuilder()  # reload() keeps breakers, budgets and unchanged SDK clients
        self.routes = self._builder.build(config)  # every provider, in the file's order
        self.chains = _chains(config, self.routes)
        self._source: str | None = None  # the file reload() reads (from_yaml)
        self._watcher: ConfigWatcher | None = None
        self._reload_lock = threading.Lock()
        self.last_reload_error: ConfigError | None = None  # why the last reload was rejected (None: it was not)
        # Every configured key, scrubbed from anything that leaves the router (attempts, errors, spans).
        self.scrubber = _scrubber(config)
        # Spans and metrics through the global OpenTelemetry API; one observer per call.
        self.telemetry = Telemetry.for_config(config, self.scrubber)
        # Called with every event of every call (failover.events): attempts, skips, breaker changes.
        self.listeners: list[Listener] = []

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], *, watch: bool = False, watch_interval: float = 1.0) -> Router:
        """`watch=True`: a daemon thread polls the file every `watch_interval` seconds and reloads it
        when it changed (see `reload`); `close()` stops it."""
        router = cls(load_config(path))
        router._source = os.fspath(path)
        if watch:
            router._watcher = ConfigWatcher(router._source, router._reload_quietly, interval=watch_interval)
        return router

    def reload(self, config: Config | None = None) -> Config:
        """Re-read the file of `from_yaml` (or take `config`) and serve new calls with it.

        Calls in flight finish on the config they started with. Breakers (their state, local and in
        Redis) and retry budgets of providers whose name stays are kept, with the new settings; SDK
        clients are kept while their settings are unchanged (replaced ones are closed with the
        router). An invalid file raises ConfigError and the router keeps its current config.
        """
        with self._reload_lock:
            if config is None:
                if self._source is None:
                    raise RuntimeError("reload() needs a Config: this router was not built from a file")
                config = load_config(self._source)
            scrubber = _scrubber(config)
            telemetry = Telemetry.for_config(config, scrubber)
            routes = self._builder.build(config, self.routes)
            chains = _chains(config, routes)
            # Each assignment is atomic; a new call reads `chains` once (its planner keeps its list).
            self.config, self.scrubber, self.telemetry, self.routes = config, scrubber, telemetry, routes
            self.chains = chains
            self.last_reload_error = None
        log.info("failover: config %s reloaded: %s", config.source, " -> ".join(r.name for r in routes))
        return config

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except ConfigError as e:
            self.last_reload_error = e
            log.error("failover: config reload rejected, still serving the previous config: %s", e)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], *, source: str = "<dict>") -> Router:
        return cls(parse_config(mapping, source=source))

    def breaker(self, name: str) -> Breaker:
        for route in self.routes:
            if route.name == name:
                return route.breaker
        raise KeyError(f"no provider named {name!r}; providers: {', '.join(r.name for r in self.routes)}")

    def _planner(self, messages: Iterable[Mapping[str, Any]], params: CallParams) -> Planner:
        chain = params.pop("chain", None)
        request = build_request(messages, **params)
        chains = self.chains
        routes = chains.get(chain or "")
        if routes is None:
            known = ", ".join(c for c in chains if c)
            raise ValueError(f"chain={chain!r} names no chain of {self.config.source}; chains: {known}")
        for key, kwargs in request.extra.items():
            _check_extra(key, kwargs, routes)
        return Planner(routes, request, now=time.monotonic(), scrubber=self.scrubber)

    def _observer(self) -> Observer:
        observer = self.telemetry.observer()
        return Fanout(observer, tuple(self.listeners)) if self.listeners else observer

    def stream(self, messages: Iterable[Mapping[str, Any]], **params: Unpack[CallParams]) -> ChatStream:
        """Stream one answer through the chain. `messages` and the parameters are OpenAI's Chat
        Completions shapes (see `failover.validate.CallParams`); anything the router cannot send is a
        `ValueError` before any request."""
        return ChatStream(self._planner(messages, params), self._observer())

    def astream(self, messages: Iterable[Mapping[str, Any]], **params: Unpack[CallParams]) -> AsyncChatStream:
        return AsyncChatStream(self._planner(messages, params), self._observer())

    def complete(self, messages: Iterable[Mapping[str, Any]], **params: Unpack[CallParams]) -> Result:
        with self.stream(messages, **params) as stream:
            for _ in stream:
                pass
            return stream.result

    async def acomplete(self, messages: Iterable[Mapping[str, Any]], **params: Unpack[CallParams]) -> Result:
        async with self.astream(messages, **params) as stream:
            async for _ in stream:
                pass
            return stream.result

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        for route in self.routes:
            route.provider.close()
        self._builder.close()

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        for route in self.routes:
            await route.provider.aclose()
        await self._builder.aclose()

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


def _scrubber(config: Config) -> Scrubber:
    return Scrubber(p.api_key.get_secret_value() for p in config.providers if p.api_key is not None)


# Set by failover itself on every request: `extra` may not change them.
RESERVED = frozenset({"model", "messages", "stream", "stream_options", "timeout", "system"})


def _chains(config: Config, routes: list[Route]) -> dict[str, list[Route]]:
    """The routes of each named chain; "" is the chain of a call without `chain=` (DESIGN §2)."""
    by_name = {r.name: r for r in routes}
    names = dict.fromkeys(["", "default", *config.chains])
    return {name: [by_name[p.name] for p in config.chain(name or None)] for name in names}


def _check_extra(key: str, kwargs: Mapping[str, Any], routes: list[Route]) -> None:
    """`extra` names a provider (its YAML name) or a provider type, and passes only what that
    provider's SDK call accepts."""
    matched = [r for r in routes if key in (r.name, r.provider.kind)]
    if not matched:
        names = sorted({r.name for r in routes} | {r.provider.kind for r in routes})
        raise ValueError(f"extra[{key!r}] names no provider or provider type of this chain ({', '.join(names)})")
    for route in matched:
        reserved = sorted(k for k in kwargs if k in RESERVED)
        if reserved:
            raise ValueError(f"extra[{key!r}] may not set {reserved}: failover sets them itself")
        unknown = sorted(set(kwargs) - route.provider.accepted_params())
        if unknown:
            raise ValueError(f"extra[{key!r}]: {unknown} not accepted by the installed {route.provider.kind} SDK's "
                             "create() (raw request fields go under extra_body)")
