"""The provider interface: open one SDK stream, decode its events into text and a terminal event.

A provider does I/O through its SDK and nothing else; every decision (retry, failover, breaker,
deadlines) is the planner's. `Decoder` is the per-attempt state that turns SDK events into text and
knows whether the terminal event arrived: a stream without it is cut, never complete.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
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
    """One entry of the chain: an SDK client for one provider type, kept for the router's life."""

    kind: str  # the well-known provider name: "openai" | "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model

    @abstractmethod
    def open(self, request: Request, timeout: CallTimeout) -> SyncEvents:
        """Send the request; return once the response headers arrived. Raises the SDK's errors."""

    @abstractmethod
    async def aopen(self, request: Request, timeout: CallTimeout) -> AsyncEvents: ...

    @abstractmethod
    def decoder(self) -> Decoder: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    @property
    @abstractmethod
    def base_url(self) -> str: ...

    @property
    def server_address(self) -> tuple[str, int | None]:
        parts = urlsplit(self.base_url)
        default = 443 if parts.scheme == "https" else 80
        return parts.hostname or "", parts.port or default

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.name} {self.model} at {self.base_url}>"
