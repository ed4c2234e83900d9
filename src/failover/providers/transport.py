"""The SDKs' HTTP transport with our deadlines on every socket operation.

The SDKs' timeouts are per socket operation: a server that trickles its status line or its events
one byte at a time never trips them, and a `read` timeout cannot say "first chunk within 10 s" or
"the whole call within 120 s". So every SDK client of ours gets an httpx2 transport whose network
streams clamp each connect, read and write to the attempt's deadline: an operation that would run
past it times out when the deadline passes, however the server paces its bytes. Nothing runs per
chunk and no timer thread is needed: the kernel's socket timeout (sync) or anyio's (async) fires.

Which deadline applies: while an attempt sends its request and waits for the headers, the one in
`ATTEMPT_DEADLINE` (a context variable the provider sets around the SDK call, so a pooled connection
picks up the attempt that is using it); once the headers arrived, the provider binds the deadline to
the connection's stream itself (`bind`), and unbinds it when the attempt ends.

The one private touch: httpx2's `HTTPTransport` takes no network backend, so ours is put on the pool
it built (`_pool._network_backend`); tests/test_timeouts.py fails loudly if an upgrade moves it.
"""

from __future__ import annotations

import socket
import time
import urllib.request
import weakref
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpcore2
import httpx2

monotonic = time.monotonic


class Deadline(Protocol):
    """When the attempt's current wait must end (policies.timeouts.Watch implements it). The
    transport sets `stream` to the connection the attempt uses, so the attempt can be aborted from
    another thread (a lost hedge race) by shutting it down."""

    stream: Any

    def remaining(self, now: float) -> float:
        """Seconds left (≤ 0: passed)."""

    def expire(self) -> None:
        """An operation clamped to this deadline timed out: record which deadline it was."""


ATTEMPT_DEADLINE: ContextVar[Deadline | None] = ContextVar("failover_attempt_deadline", default=None)


def _clamp(deadline: Deadline | None, timeout: float | None,
           error: type[Exception] = httpcore2.ReadTimeout) -> tuple[float | None, bool]:
    """The timeout for one socket operation, and whether the deadline (not the SDK) set it."""
    if deadline is None:
        return timeout, False
    left = deadline.remaining(monotonic())
    if left <= 0:
        deadline.expire()
        raise error("the attempt's deadline passed")
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


class _Stream(httpcore2.NetworkStream):
    __slots__ = ("_inner", "deadline")

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner
        self.deadline: Deadline | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = self.deadline or ATTEMPT_DEADLINE.get()
        timeout, ours = _clamp(deadline, timeout)
        if deadline is not None:
            deadline.stream = self
        try:
            return self._inner.read(max_bytes, timeout)
        except httpcore2.ReadTimeout:
            if ours and deadline is not None:
                deadline.expire()
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        deadline = self.deadline or ATTEMPT_DEADLINE.get()
        timeout, ours = _clamp(deadline, timeout, httpcore2.WriteTimeout)
        try:
            self._inner.write(buffer, timeout)
        except httpcore2.WriteTimeout:
            if ours and deadline is not None:
                deadline.expire()
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore2.NetworkStream:
        timeout, _ = _clamp(ATTEMPT_DEADLINE.get(), timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncStream(httpcore2.AsyncNetworkStream):
    __slots__ = ("_inner", "deadline")

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self.deadline: Deadline | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = self.deadline or ATTEMPT_DEADLINE.get()
        timeout, ours = _clamp(deadline, timeout)
        if deadline is not None:
            deadline.stream = self
        try:
            return await self._inner.read(max_bytes, timeout)
        except httpcore2.ReadTimeout:
            if ours and deadline is not None:
                deadline.expire()
            raise

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        deadline = self.deadline or ATTEMPT_DEADLINE.get()
        timeout, ours = _clamp(deadline, timeout, httpcore2.WriteTimeout)
        try:
            await self._inner.write(buffer, timeout)
        except httpcore2.WriteTimeout:
            if ours and deadline is not None:
                deadline.expire()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        timeout, _ = _clamp(ATTEMPT_DEADLINE.get(), timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore2.NetworkStream:
        timeout, _ = _clamp(ATTEMPT_DEADLINE.get(), timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore2.NetworkStream:
        timeout, _ = _clamp(ATTEMPT_DEADLINE.get(), timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, inner: httpcore2.AsyncNetworkBackend) -> None:
        self._inner = inner
        self.streams: weakref.WeakSet[_AsyncStream] = weakref.WeakSet()  # for `abandon`

    def _track(self, stream: httpcore2.AsyncNetworkStream) -> _AsyncStream:
        wrapped = _AsyncStream(stream)
        self.streams.add(wrapped)
        return wrapped

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        timeout, _ = _clamp(ATTEMPT_DEADLINE.get(), timeout, httpcore2.ConnectTimeout)
        return self._track(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        timeout, _ = _clamp(ATTEMPT_DEADLINE.get(), timeout, httpcore2.ConnectTimeout)
        return self._track(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def bind(response: httpx2.Response, deadline: Deadline | None) -> None:
    """Let the connection of `response` enforce `deadline` (None: stop enforcing it)."""
    stream = response.extensions.get("network_stream")
    if isinstance(stream, _Stream | _AsyncStream):
        stream.deadline = deadline


# The SDKs' own defaults (openai/_constants.py, anthropic/_constants.py).
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


def _proxy_for(base_url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, NO_PROXY, ...) sets for this provider, as httpx would
    have used had we not passed our own transport."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    return urllib.request.getproxies_environment().get(parts.scheme or "https")


class SyncTransport(httpx2.HTTPTransport):
    def __init__(self, base_url: str) -> None:
        super().__init__(limits=LIMITS, proxy=_proxy_for(base_url))
        pool: Any = self._pool
        pool._network_backend = _Backend(pool._network_backend)


class AsyncTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, base_url: str) -> None:
        super().__init__(limits=LIMITS, proxy=_proxy_for(base_url))
        pool: Any = self._pool
        self._backend = pool._network_backend = _AsyncBackend(pool._network_backend)

    def abandon(self) -> None:
        """Shut down every connection of this transport without its event loop (which is closed):
        the server sees them end, and nothing is left ESTABLISHED."""
        for stream in list(self._backend.streams):
            sock = stream.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed
