"""The provider interface: open one SDK stream, decode its events into text and a terminal event.

A provider does I/O through its SDK and nothing else; every decision (retry, failover, breaker,
deadlines) is the planner's. `Decoder` is the per-attempt state that turns SDK events into text and
knows whether the terminal event arrived: a stream without it is cut, never complete.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2

from failover.config import ProviderConfig
from failover.request import Request


class MalformedEvent(Exception):
    """An event the provider sent that is not a valid event of its protocol."""


class Decoder(ABC):
    """Turns one attempt's SDK events into text; collects usage, finish reason and completeness."""

    __slots__ = ("complete", "finish_reason", "input_tokens", "model", "output_tokens")

    def __init__(self) -> None:
        self.complete = False
        self.finish_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.model: str | None = None

    @abstractmethod
    def feed(self, event: Any) -> str:
        """The text the event carries ("" for none). Raises `MalformedEvent` for garbage."""


class SyncEvents(Protocol):
    """What the SDKs' sync stream objects look like to us."""

    response: httpx2.Response

    def __iter__(self) -> Iterator[Any]: ...
    def close(self) -> None: ...


class AsyncEvents(Protocol):
    response: httpx2.Response

    def __aiter__(self) -> AsyncIterator[Any]: ...
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CallTimeout:
    """Timeouts for opening one attempt: connect, and how long to wait for the response headers."""

    connect: float
    headers: float

    def for_sdk(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.headers, connect=self.connect, read=self.headers,
                              write=self.headers, pool=self.connect)


class Provider(ABC):
    """One entry of the chain: an SDK client for one provider type, kept for the router's life.

    The sync and the async SDK clients are made on first use (an app often uses only one) and
    reused across calls, so connections are pooled.
    """

    kind: str  # the well-known provider name: "openai" | "anthropic"
    default_base_url: str
    sdk_client: Callable[..., Any]
    sdk_async_client: Callable[..., Any]
    sdk_create: Callable[..., Any]  # the SDK's streaming create(): its keywords are what `params:` may set

    @classmethod
    def accepted_params(cls) -> frozenset[str]:
        return frozenset(inspect.signature(cls.sdk_create).parameters) - {"self"}

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model
        self._lock = threading.Lock()
        self._client: Any = None
        self._aclient: Any = None
        self._aloop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return self.config.base_url or self.default_base_url

    def client_kwargs(self) -> dict[str, Any]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        # max_retries=0: ours is the only retry loop (SDK retries would multiply attempts).
        return {"api_key": key, "base_url": self.base_url, "max_retries": 0}

    def sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self.sdk_client(**self.client_kwargs())
            return self._client

    def async_client(self) -> Any:
        # An async client's connections belong to the event loop they were opened on: a script that
        # calls asyncio.run() twice must get a fresh client in the second loop, not a dead one.
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._aclient is None or self._aloop is not loop:
                self._aclient = self.sdk_async_client(**self.client_kwargs())
                self._aloop = loop
            return self._aclient

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        # Forget the async client: it belongs to the event loop it ran on, and a later
        # asyncio.run() in the same process needs a fresh one.
        client, self._aclient = self._aclient, None
        if client is not None:
            await client.close()
        self.close()

    @abstractmethod
    def open(self, request: Request, timeout: CallTimeout) -> SyncEvents:
        """Send the request; return once the response headers arrived. Raises the SDK's errors."""

    @abstractmethod
    async def aopen(self, request: Request, timeout: CallTimeout) -> AsyncEvents: ...

    @abstractmethod
    def decoder(self) -> Decoder: ...

    @functools.cached_property
    def server_address(self) -> tuple[str, int | None]:
        parts = urlsplit(self.base_url)
        default = 443 if parts.scheme == "https" else 80
        return parts.hostname or "", parts.port or default

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.name} {self.model} at {self.base_url}>"
