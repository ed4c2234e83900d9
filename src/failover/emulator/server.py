"""The emulator's HTTP/1.1 server: asyncio streams + h11, one event loop in one daemon thread.

One task per connection and no threads per connection, so a thousand concurrent streams are cheap.
While a step runs, a watcher task keeps reading the socket: EOF (or a reset) there is how a client's
hang-up is noticed at once, even while the step is sleeping, stalling or hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

import h11

from failover.emulator import steps as factories
from failover.emulator.exchange import Record, ServerExchange, Settings
from failover.emulator.request import ChatRequest, parse_chat
from failover.emulator.rules import check
from failover.emulator.script import ClientGone, Status, Step
from failover.emulator.wire import KINDS, ErrorShape, Kind

log = logging.getLogger("failover.emulator")

DEFAULT_ANSWER = (
    "Circuit breakers protect callers from a failing provider. After a few consecutive errors the breaker "
    "opens, and requests go straight to the next provider instead of waiting on timeouts. Later a single "
    "probe tests the provider, and one success closes the breaker again."
)
PREFILL_MESSAGE = ("This model does not support assistant message prefill. "
                   "The conversation must end with a user message.")
_PATHS: dict[Kind, str] = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
_SECRET_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key"})


class Emulator:
    """A local OpenAI-compatible or Anthropic server whose answers follow a script of faults."""

    def __init__(self, kind: Kind = "openai", *, answer: str | None = None, chunk_delay: float = 0.0,
                 continuation: Literal["smart", "naive"] = "smart", reject_prefill: bool = False,
                 usage: tuple[int, int | None] = (5, None), port: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if continuation not in ("smart", "naive"):
            raise ValueError(f"continuation must be 'smart' or 'naive', not {continuation!r}")
        self.kind: Kind = kind
        self.answer = DEFAULT_ANSWER if answer is None else answer
        self.chunk_delay = chunk_delay
        self.continuation = continuation
        self.reject_prefill = reject_prefill
        self.usage = usage
        self._want_port = port
        self._port: int | None = None
        self._cond = threading.Condition()
        self._script: deque[Step] = deque()
        self._down: tuple[float, Step] | None = None
        self._chaos: tuple[float, tuple[Step, ...], random.Random] | None = None
        self._records: list[Record] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    # ------------------------------------------------------------ public API (any thread)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.kind == "openai" else root

    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        ready: list[BaseException | None] = []
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready, started), daemon=True,
                                        name=f"failover-emulator-{self.kind}")
        self._thread.start()
        started.wait()
        if ready[0] is not None:
            self._thread.join()
            self._thread = None
            raise ready[0]
        return self

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may already have closed
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = self._loop = self._stopping = None
        self._port = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"port={self._port}" if self._port else "stopped"
        return f"Emulator({self.kind!r}, {where})"

    def script(self, *steps: Step) -> None:
        """Queue steps; each request takes the next one, and gets the healthy answer once none are left."""
        _check_steps(steps)
        with self._cond:
            self._script.extend(steps)

    def down_for(self, seconds: float, step: Step | None = None) -> None:
        """Answer every request with `step` (default: a 503) for `seconds`, ahead of the script."""
        with self._cond:
            self._down = (time.monotonic() + seconds, step or factories.server_error(503))

    def chaos(self, rate: float, faults: Sequence[Step], *, seed: int | None = None) -> None:
        """Once the script is empty, answer each request with a random step of `faults` with
        probability `rate` (the healthy answer otherwise); `rate=0` switches it off."""
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, not {rate!r}")
        if rate and not faults:
            raise ValueError("chaos needs at least one fault step")
        _check_steps(faults)
        with self._cond:
            self._chaos = (rate, tuple(faults), random.Random(seed)) if rate else None

    def reset(self) -> None:
        """Forget the script, the down window, chaos and the records (requests still running are not stopped)."""
        with self._cond:
            self._script.clear()
            self._down = None
            self._chaos = None
            self._records = []

    @property
    def requests(self) -> list[Record]:
        with self._cond:
            return list(self._records)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Record]:
        """Block until `n` requests have been recorded and each has ended; TimeoutError otherwise."""
        def done() -> bool:
            return len(self._records) >= n and all(r.ended_at is not None for r in self._records[:n])

        with self._cond:
            if not self._cond.wait_for(done, timeout):
                states = [(r.step, r.ended_at is not None) for r in self._records]
                raise TimeoutError(f"{self!r}: waited {timeout}s for {n} finished requests, have {states}")
            return list(self._records)

    # ------------------------------------------------------------ the loop thread

    def _run(self, ready: list[BaseException | None], started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop, ready, started))
        except BaseException as e:  # a failure to bind must reach the caller of start()
            if not ready:
                ready.append(e)
                started.set()
            else:
                log.exception("emulator loop failed")
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop, ready: list[BaseException | None],
                    started: threading.Event) -> None:
        self._loop, self._stopping = loop, asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", self._want_port, backlog=4096)
        self._port = server.sockets[0].getsockname()[1]
        ready.append(None)
        started.set()
        await self._stopping.wait()
        server.close()
        await asyncio.sleep(0)  # lets a connection accepted just now register before the sweep
        while self._connections:
            for task, writer in list(self._connections.items()):
                writer.transport.abort()
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    def _add(self, record: Record) -> None:
        with self._cond:
            self._records.append(record)

    def _ended(self, record: Record) -> None:
        with self._cond:
            record.ended_at = time.monotonic()
            self._cond.notify_all()

    def _choose(self, record: Record, request: h11.Request, raw: bytes,
                authorised: bool) -> tuple[Step, ChatRequest]:
        """Which step answers this request: down window, authentication, the API's rules, prefill
        rejection, then the script. A refusal consumes no step."""
        chat = parse_chat(self.kind, {})
        method = request.method.decode()
        if method != "POST" or record.path.rstrip("/") != _PATHS[self.kind]:
            message = f"Unknown request URL: {method} {record.path}."
            shape = ErrorShape(404, "invalid_request_error" if self.kind == "openai" else "not_found_error", message)
            return Status("route", shape, shape), chat
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return factories.bad_request("We could not parse the JSON body of your request."), chat
        chat = parse_chat(self.kind, body)
        record.body, record.model = body, chat.model
        record.continuation = chat.continued_prefix(self.answer) is not None
        refused = check(self.kind, body)
        with self._cond:
            if self._down is not None and time.monotonic() >= self._down[0]:
                self._down = None
            if self._down is not None:
                return self._down[1], chat
            if not authorised:
                return factories.auth(), chat
            if refused is not None:
                return Status("invalid_request", refused, refused), chat
            if self.reject_prefill and chat.prefill:
                return factories.bad_request(PREFILL_MESSAGE), chat
            if self._script:
                return self._script.popleft(), chat
            if self._chaos is not None:
                rate, faults, rng = self._chaos
                if rng.random() < rate:
                    return rng.choice(faults), chat
            return factories.ok(), chat

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        conn = h11.Connection(h11.SERVER)
        pending = bytearray()  # bytes the watcher read past the end of a request
        try:
            while True:
                got = await _read_request(conn, reader, pending)
                if got is None:
                    return
                if not await self._respond(conn, reader, writer, pending, *got):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels these tasks. Ending normally keeps asyncio's stream callback from
            # logging the cancellation as an error.
            writer.transport.abort()
        except Exception:
            log.exception("emulator connection failed")
        finally:
            del self._connections[task]
            if not writer.transport.is_closing():
                writer.close()

    async def _respond(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       pending: bytearray, request: h11.Request, raw: bytes) -> bool:
        """Answer one request; False when the connection cannot be reused."""
        headers = {k.decode().lower(): ("***" if k.lower() in _SECRET_HEADERS else v.decode("latin-1"))
                   for k, v in request.headers}
        record = Record(time=time.monotonic(), path=request.target.decode("latin-1").split("?")[0], model="",
                        headers=headers, body={})
        key = _api_key(request.headers)
        step, chat = self._choose(record, request, raw, bool(key))
        record.step = step.name
        self._add(record)
        watcher = asyncio.create_task(_watch(reader, pending))
        settings = Settings(self.answer, self.chunk_delay, self.continuation, self.usage)
        x = ServerExchange(self.kind, settings, conn, writer, watcher, record, chat, key)
        try:
            await step.run(x)
        except ClientGone:
            record.disconnected = True
        finally:
            gone = watcher.done()  # the client hung up, or half-closed: either way no next request
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            self._ended(record)
        return not (x.aborted or gone)


def _check_steps(steps: Sequence[Step]) -> None:
    for step in steps:
        if not isinstance(step, Step):
            raise TypeError(f"not a step: {step!r} (use the factories in failover.emulator.steps)")


def _api_key(headers: Sequence[tuple[bytes, bytes]]) -> str:
    """The key a request carries (`Authorization: Bearer`, `x-api-key` or `api-key`), "" if none.
    It goes to the step (a provider may echo it), never into the Record."""
    for name, value in headers:  # h11 lower-cases header names
        if name == b"authorization" and value[:7].lower() == b"bearer " and value[7:].strip():
            return value[7:].strip().decode("latin-1")
        if name != b"authorization" and name in _SECRET_HEADERS and value.strip():
            return value.strip().decode("latin-1")
    return ""


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader,
                        pending: bytearray) -> tuple[h11.Request, bytes] | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if pending:
                data = bytes(pending)
                pending.clear()
            else:
                data = await reader.read(65536)
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        else:  # ConnectionClosed: the client ended a keep-alive connection
            return None


async def _watch(reader: asyncio.StreamReader, pending: bytearray) -> None:
    """Return as soon as the client hangs up; keep anything it sends meanwhile for the next request."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            pending += data
