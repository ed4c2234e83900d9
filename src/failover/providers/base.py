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


class InbandError(Exception):
    """An error event inside a 200 stream: OpenAI's `{"error": ...}` frame, Anthropic's `event: error`.
    `body` is the event's JSON, in the provider's own error shape."""

    def __init__(self, body: dict[str, Any]) -> None:
        error = body.get("error")
        inner: dict[str, Any] = error if isinstance(error, dict) else body
        super().__init__(str(inner.get("message") or "error event in the stream"))
        self.body = body


class Decoder(ABC):
    """Turns one attempt's server-sent-event lines into text; collects usage, finish reason and
    whether the terminal event arrived.

    We read the SSE lines ourselves (through the SDK's public `with_streaming_response`), because
    building the SDK's pydantic model per event costs more than everything else a chunk costs; the
    SDK still builds the request and raises the HTTP status errors.
    """

    __slots__ = ("_data", "_event", "complete", "finish_reason", "input_tokens", "model", "output_tokens")

    def __init__(self) -> None:
        self.complete = False
        self.finish_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.model: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> str:
        """One line of the SSE body in; the text it completes ("" for none). Raises `MalformedEvent`
        for garbage and `InbandError` for an error event (WHATWG event-stream rules)."""
        if not line:  # a blank line dispatches the event
            data = self._data
            if not data:
                return ""
            self._data = []
            event, self._event = self._event, ""
            try:
                return self.dispatch(event, data[0] if len(data) == 1 else "\n".join(data))
            except (KeyError, TypeError, AttributeError, IndexError) as e:
                raise MalformedEvent(f"unexpected event: {data[0][:120]}") from e
        if line.startswith("data:"):
            self._data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif line.startswith("event:"):
            self._event = line[6:].strip()
        return ""  # comments (":"), id and retry fields carry nothing for us

    @abstractmethod
    def dispatch(self, event: str, data: str) -> str:
        """The text of one whole event."""


class _Lines:
    """The body's lines of one sync streaming response; closing it closes the connection."""

    __slots__ = ("_manager", "response")

    def __init__(self, manager: Any) -> None:
        self._manager = manager
        self.response: httpx2.Response = manager.__enter__().http_response

    def __iter__(self) -> Iterator[str]:
        return self.response.iter_lines()

    def close(self) -> None:
        self._manager.__exit__(None, None, None)


class _AsyncLines:
    __slots__ = ("_manager", "response")

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    async def enter(self) -> None:
        self.response = (await self._manager.__aenter__()).http_response

    def __aiter__(self) -> AsyncIterator[str]:
        lines: AsyncIterator[str] = self.response.aiter_lines()
        return lines

    async def close(self) -> None:
        await self._manager.__aexit__(None, None, None)


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
    def streaming(self, client: Any, request: Request, timeout: CallTimeout) -> Any:
        """The SDK's `with_streaming_response.create(...)` context manager for this request."""

    def open(self, request: Request, timeout: CallTimeout) -> SyncEvents:
        """Send the request; return once the response headers arrived. Raises the SDK's errors."""
        return _Lines(self.streaming(self.sync_client(), request, timeout))

    async def aopen(self, request: Request, timeout: CallTimeout) -> AsyncEvents:
        lines = _AsyncLines(self.streaming(self.async_client(), request, timeout))
        await lines.enter()
        return lines

    @abstractmethod
    def decoder(self) -> Decoder: ...

    @functools.cached_property
    def server_address(self) -> tuple[str, int | None]:
        parts = urlsplit(self.base_url)
        default = 443 if parts.scheme == "https" else 80
        return parts.hostname or "", parts.port or default

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.name} {self.model} at {self.base_url}>"
