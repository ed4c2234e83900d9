"""What every provider type shares: the SDK client's life, opening one streamed response, and the
interface each type implements (request translation, the decoder of its events, its error mapping).

A provider does I/O through its SDK and nothing else; every decision (retry, failover, breaker,
deadlines) is the planner's. The SDK builds, authenticates and sends each request and raises the
HTTP status errors (`with_streaming_response.create`, public in both SDKs); the body's bytes are
ours to decode (providers/sse.py, then the type's `Decoder`), because building the SDK's pydantic
model per event costs more than everything else a chunk costs.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import math
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx2

from failover.config import ProviderConfig
from failover.providers.sse import Event, SSEDecoder
from failover.providers.transport import ATTEMPT_DEADLINE, AsyncTransport, Deadline, SyncTransport, bind
from failover.request import Request
from failover.types import ToolCall, ToolCallDelta

# ---------------------------------------------------------------------------------------------
# What went wrong, in the provider's own words but without SDK types: the taxonomy
# (policies/classify.py) decides what it means.

FaultKind = Literal[
    "status",  # an HTTP error status (or Anthropic's in-band error, which its SDK reports as status 200)
    "inband",  # an error event inside a 200 stream
    "connect",  # the connection could not be made (refused, unreachable)
    "dns",  # the host name did not resolve
    "connect_timeout",
    "timeout",  # no response in time (the SDK's or the transport's timeout)
    "reset",  # the connection broke (reset, read error)
    "cut",  # the peer closed the connection in the middle of the response
    "malformed",  # an event that is not an event of the provider's protocol
    "local",  # raised on our side before the request left (never the provider's failure)
]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    message: str
    status: int | None = None
    type: str = ""  # the provider's error type (`rate_limit_error`, `insufficient_quota`, ...)
    code: str = ""
    retry_after: float | None = None


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


def error_fields(body: Any) -> tuple[str, str, str]:
    """(type, code, message) from an error body: OpenAI's inner error object, or Anthropic's whole
    `{"type": "error", "error": {...}}` document."""
    if not isinstance(body, dict):
        return "", "", ""
    inner = body["error"] if isinstance(body.get("error"), dict) else body
    return str(inner.get("type") or ""), str(inner.get("code") or ""), str(inner.get("message") or "")


def retry_after(headers: httpx2.Headers | None) -> float | None:
    """`retry-after-ms`, then `retry-after` in seconds or as an HTTP date."""
    if not headers:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return max(0.0, seconds) if math.isfinite(seconds) else None


def status_fault(exc: Any, status: int) -> Fault:
    """The fault of an SDK's HTTP status error (both SDKs carry `body` and `response`)."""
    err_type, code, message = error_fields(getattr(exc, "body", None))
    response = getattr(exc, "response", None)
    after = retry_after(response.headers) if response is not None else None
    return Fault("status", message or err_type or str(exc), status, err_type, code, after)


def transport_fault(exc: BaseException) -> Fault | None:
    """The fault of an httpx2 transport error (both SDKs' HTTP client), or None for anything else."""
    if isinstance(exc, httpx2.ConnectTimeout):
        return Fault("connect_timeout", "connect timed out")
    if isinstance(exc, httpx2.TimeoutException):
        return Fault("timeout", "timed out")
    if isinstance(exc, httpx2.ConnectError):
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, socket.gaierror) or "name or service not known" in str(exc).lower():
            return Fault("dns", str(exc) or "the host name did not resolve")
        return Fault("connect", str(exc) or "connection refused")
    if isinstance(exc, httpx2.RemoteProtocolError):
        return Fault("cut", str(exc) or "the server closed the connection mid-response")
    if isinstance(exc, httpx2.TransportError):
        return Fault("reset", str(exc) or type(exc).__name__)
    return None


def wrapped_fault(exc: BaseException, kind: FaultKind) -> Fault:
    """An SDK's connection or timeout error: the HTTP client's error it wraps says which it was."""
    cause = exc.__cause__ or exc.__context__
    got = transport_fault(cause) if cause is not None else None
    return got or Fault(kind, str(exc))


# ---------------------------------------------------------------------------------------------
# Decoding one attempt's body


Piece = str | ToolCallDelta  # what a decoder makes of an event: text, or a piece of a tool call


class Decoder(ABC):
    """Turns one attempt's body into text and tool-call pieces; collects usage, finish reason, the
    served model, a refusal, whether the terminal event arrived (a stream without it is cut, never
    complete), and content kinds the router does not represent (counted, never silently dropped)."""

    __slots__ = ("_calls", "_sse", "complete", "finish_reason", "input_tokens", "model", "output_tokens", "refusal",
                 "refusal_is_text", "unrepresented")

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self.complete = False
        self.finish_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.model: str | None = None
        self.refusal: str | None = None  # a refusal sent apart from the text (OpenAI's delta.refusal)
        self.refusal_is_text = False  # the text itself is the refusal (Anthropic's stop_reason "refusal")
        self.unrepresented: dict[str, int] = {}  # content kind -> events of it
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # index -> id, name, argument fragments

    def feed(self, data: bytes) -> list[Piece]:
        """Bytes of the body in; the pieces of the events they complete out. Raises `MalformedEvent`
        for garbage and `InbandError` for an error event."""
        out: list[Piece] = []
        for event in self._sse.feed(data):
            if not event.data:
                continue  # a keep-alive such as `data:` alone carries nothing
            try:
                self.event(event, out)
            except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
                raise MalformedEvent(f"unexpected event: {event.data[:120].decode('utf-8', 'replace')}") from e
        return out

    @abstractmethod
    def event(self, event: Event, out: list[Piece]) -> None:
        """Append the pieces of one whole event to `out`."""

    def skip(self, kind: str) -> None:
        """Content the router does not represent arrived (thinking, audio, a new delta kind)."""
        self.unrepresented[kind] = self.unrepresented.get(kind, 0) + 1

    def tool_delta(self, index: int, call_id: str | None, name: str | None, arguments: str) -> ToolCallDelta:
        """A piece of tool call `index`; the whole calls are kept for the Result."""
        got = self._calls.get(index)
        if got is None:
            got = self._calls[index] = (call_id or "", name or "", [])
        elif (call_id and not got[0]) or (name and not got[1]):
            got = self._calls[index] = (got[0] or call_id or "", got[1] or name or "", got[2])
        if arguments:
            got[2].append(arguments)
        return ToolCallDelta(index, call_id, name, arguments)

    def tool_calls(self) -> list[ToolCall]:
        return [ToolCall(call_id, name, "".join(args)) for _, (call_id, name, args) in sorted(self._calls.items())]


# ---------------------------------------------------------------------------------------------
# One open response


@dataclass(frozen=True, slots=True)
class CallTimeout:
    """The SDK's own timeouts for one attempt: a backstop only, the attempt's deadline (the transport)
    is what cuts it. `connect` also bounds the TCP/TLS handshake."""

    connect: float
    total: float

    def for_sdk(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.total, connect=self.connect, pool=self.connect)


class Body:
    """The bytes of one sync streamed response; `close()` returns or drops its connection."""

    __slots__ = ("_manager", "response")

    def __init__(self, manager: Any, deadline: Deadline) -> None:
        self._manager = manager
        token = ATTEMPT_DEADLINE.set(deadline)
        try:
            self.response: httpx2.Response = manager.__enter__().http_response
        finally:
            ATTEMPT_DEADLINE.reset(token)
        bind(self.response, deadline)

    def __iter__(self) -> Iterator[bytes]:
        return self.response.iter_bytes()

    def close(self) -> None:
        bind(self.response, None)
        self._manager.__exit__(None, None, None)


class AsyncBody:
    __slots__ = ("_manager", "response")

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    async def enter(self, deadline: Deadline) -> None:
        token = ATTEMPT_DEADLINE.set(deadline)
        try:
            self.response = (await self._manager.__aenter__()).http_response
        finally:
            ATTEMPT_DEADLINE.reset(token)
        bind(self.response, deadline)

    def __aiter__(self) -> AsyncIterator[bytes]:
        chunks: AsyncIterator[bytes] = self.response.aiter_bytes()
        return chunks

    async def close(self) -> None:
        bind(self.response, None)
        await self._manager.__aexit__(None, None, None)


# ---------------------------------------------------------------------------------------------
# The provider


class Provider(ABC):
    """One entry of the chain: an SDK client for one provider type, kept for the router's life.

    The sync and the async SDK clients are made on first use (an app often uses only one) and reused
    across calls, so connections are pooled. An async client belongs to the event loop it was made
    on: a script that calls asyncio.run() twice gets a fresh client in the second loop, and the
    first loop's connections are shut down rather than left open.
    """

    kind: ClassVar[str]  # the well-known provider name: "openai" | "anthropic"
    default_base_url: ClassVar[str]

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model
        self._lock = threading.Lock()
        self._client: Any = None
        self._aclients: dict[asyncio.AbstractEventLoop, tuple[Any, AsyncTransport]] = {}
        # Imported when a provider of this type is built (not by `import failover`), never during an
        # attempt, where the import's second would count against first_token.
        self.sdk()

    # ---- what each provider type implements

    @classmethod
    @abstractmethod
    def sdk(cls) -> Any:
        """The SDK module (imported on first use: `import failover` stays fast)."""

    @classmethod
    @abstractmethod
    def create_function(cls) -> Callable[..., Any]:
        """The SDK's create(): its keywords are what `params:` may set."""

    @abstractmethod
    def streaming(self, client: Any, request: Request, timeout: CallTimeout) -> Any:
        """The SDK's `with_streaming_response.create(...)` context manager for this request."""

    @abstractmethod
    def decoder(self) -> Decoder: ...

    @abstractmethod
    def sdk_fault(self, exc: BaseException) -> Fault | None:
        """The fault an exception of this type's SDK stands for (None: not one of the SDK's)."""

    def fault(self, exc: BaseException) -> Fault:
        """What an exception raised while opening or reading an attempt says went wrong."""
        if isinstance(exc, InbandError):
            err_type, code, message = error_fields(exc.body)
            return Fault("inband", message or str(exc), type=err_type, code=code)
        if isinstance(exc, MalformedEvent):
            return Fault("malformed", str(exc))
        got = self.sdk_fault(exc) or transport_fault(exc)
        if got is not None:
            return got
        # Raised on our side (an input the SDK cannot encode, a bug): never the provider's failure.
        return Fault("local", f"{type(exc).__name__}: {exc}")

    # ---- shared

    @classmethod
    @functools.cache
    def accepted_params(cls) -> frozenset[str]:
        return frozenset(inspect.signature(cls.create_function()).parameters) - {"self"}

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
                sdk = self.sdk()
                http = sdk.DefaultHttpxClient(transport=SyncTransport(self.base_url))
                self._client = self._make_client(sdk, http, sync=True)
            return self._client

    def async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            got = self._aclients.get(loop)
            if got is None:
                self._forget_dead_loops()
                sdk = self.sdk()
                transport = AsyncTransport(self.base_url)
                http = sdk.DefaultAsyncHttpxClient(transport=transport)
                got = self._aclients[loop] = (self._make_client(sdk, http, sync=False), transport)
            return got[0]

    @abstractmethod
    def _make_client(self, sdk: Any, http: Any, *, sync: bool) -> Any: ...

    def _forget_dead_loops(self) -> None:
        """Drop the clients of event loops that are closed: their connections cannot be closed the
        polite way (that needs their loop), so their sockets are shut down directly."""
        for loop in [loop for loop in self._aclients if loop.is_closed()]:
            self._aclients.pop(loop)[1].abandon()

    def open(self, request: Request, timeout: CallTimeout, deadline: Deadline) -> Body:
        """Send the request; return once the response headers arrived. Raises the SDK's errors."""
        return Body(self.streaming(self.sync_client(), request, timeout), deadline)

    async def aopen(self, request: Request, timeout: CallTimeout, deadline: Deadline) -> AsyncBody:
        body = AsyncBody(self.streaming(self.async_client(), request, timeout))
        await body.enter(deadline)
        return body

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._forget_dead_loops()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            got = self._aclients.pop(loop, None)
        if got is not None:
            await got[0].close()
        self.close()

    @functools.cached_property
    def server_address(self) -> tuple[str, int | None]:
        parts = urlsplit(self.base_url)
        default = 443 if parts.scheme == "https" else 80
        return parts.hostname or "", parts.port or default

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.name} {self.model} at {self.base_url}>"
