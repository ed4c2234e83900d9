"""The emulator's HTTP/1.1 server: asyncio streams + h11, one event loop in one daemon thread.

One task per connection and no threads per connection, so a thousand concurrent streams are cheap.
While a step runs, a watcher task keeps reading the socket: EOF (or a reset) there is how a client's
hang-up is noticed at once, even while the step is sleeping, stalling or hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import h11

from failover.emulator import script
from failover.emulator.script import ClientGone, How, Step
from failover.emulator.wire import (
    KINDS,
    ChatRequest,
    ErrorShape,
    Finish,
    Frames,
    Kind,
    completion_body,
    error_body,
    frames_for,
    inband_shape,
    parse_chat,
    split_chunks,
)

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
_ids = itertools.count(1)


@dataclass
class Record:
    """One request as the emulator saw it; the server thread fills in the outcome fields as it goes."""

    time: float
    path: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]
    step: str = ""
    status: int | None = None
    chunks_sent: int = 0
    disconnected: bool = False
    ended_at: float | None = None
    continuation: bool = False


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
            self._down = (time.monotonic() + seconds, step or script.server_error(503))

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
        """Which step answers this request: down window, then request validation, then the script."""
        chat = parse_chat({})
        method = request.method.decode()
        if method != "POST" or record.path.rstrip("/") != _PATHS[self.kind]:
            message = f"Unknown request URL: {method} {record.path}."
            shape = ErrorShape(404, "invalid_request_error" if self.kind == "openai" else "not_found_error", message)
            return script.Status("route", shape, shape), chat
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return script.bad_request("We could not parse the JSON body of your request."), chat
        chat = parse_chat(body)
        record.body, record.model = body, chat.model
        record.continuation = chat.continued_prefix(self.answer) is not None
        with self._cond:
            if self._down is not None and time.monotonic() >= self._down[0]:
                self._down = None
            if self._down is not None:
                return self._down[1], chat
            if not authorised:
                return script.auth(), chat
            if self.reject_prefill and chat.prefill:
                return script.bad_request(PREFILL_MESSAGE), chat
            if self._script:
                return self._script.popleft(), chat
            if self._chaos is not None:
                rate, faults, rng = self._chaos
                if rng.random() < rate:
                    return rng.choice(faults), chat
            return script.ok(), chat

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
        step, chat = self._choose(record, request, raw, _authorised(request.headers))
        record.step = step.name
        self._add(record)
        watcher = asyncio.create_task(_watch(reader, pending))
        x = _Exchange(self, conn, writer, watcher, record, chat)
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


def _authorised(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:  # h11 lower-cases header names
        if name == b"authorization" and value[:7].lower() == b"bearer " and value[7:].strip():
            return True
        if name != b"authorization" and name in _SECRET_HEADERS and value.strip():
            return True
    return False


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


class _Exchange:
    """The server side of `script.Exchange` for one request."""

    def __init__(self, emu: Emulator, conn: h11.Connection, writer: asyncio.StreamWriter,
                 watcher: asyncio.Task[None], record: Record, chat: ChatRequest) -> None:
        self.kind: Kind = emu.kind
        self.model = chat.model
        self.aborted = False
        self._emu, self._conn, self._writer, self._watcher = emu, conn, writer, watcher
        self._record, self._chat = record, chat
        self._request_id = f"req_emu{next(_ids):08d}"
        self._chunks: list[str] = []
        self._next = 0
        self._finish: Finish = "stop"
        self._text: list[str] = []  # the answer so far, for `"stream": false`
        self._frames: Frames | None = None
        self._msg_id, self._created = "", 0

    # -- plumbing

    def _check(self) -> None:
        if self._watcher.done():
            raise ClientGone

    async def _send(self, *events: h11.Event) -> None:
        self._check()
        self._writer.write(b"".join(self._conn.send(e) or b"" for e in events))
        try:
            await self._writer.drain()
        except ConnectionError as e:
            raise ClientGone from e

    def _id_header(self) -> tuple[str, str]:
        return ("x-request-id" if self.kind == "openai" else "request-id", self._request_id)

    async def _json(self, status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._record.status = status
        await self._send(
            h11.Response(status_code=status, headers=[("content-type", "application/json"),
                                                      ("content-length", str(len(data))), self._id_header(),
                                                      *headers]),
            h11.Data(data=data), h11.EndOfMessage())

    def _usage(self) -> tuple[int, int]:
        inp, out = self._emu.usage
        return inp, self._record.chunks_sent if out is None else out

    # -- the verbs steps use

    async def sleep(self, seconds: float | None) -> None:
        self._check()
        if seconds is not None and seconds <= 0:
            return
        if seconds is not None and seconds <= 0.05:
            # Chunk pacing skips waiting on the watcher: a hang-up is still seen within 50 ms, and a plain
            # sleep is cheaper than arming a wait per chunk across a thousand streams.
            await asyncio.sleep(seconds)
            self._check()
            return
        done, _ = await asyncio.wait({self._watcher}, timeout=seconds)
        if done:
            raise ClientGone

    async def send_error(self, status: int, shape: ErrorShape, headers: tuple[tuple[str, str], ...]) -> None:
        await self._json(status, error_body(self.kind, shape, self._request_id), headers)

    async def begin(self, text: str | None = None) -> None:
        answer = self._emu.answer if text is None else text
        prefix = self._chat.continued_prefix(answer)
        self._record.continuation = prefix is not None
        rest = answer[len(prefix):] if prefix is not None and self._emu.continuation == "smart" else answer
        self._chunks = split_chunks(rest)
        limit = self._chat.max_tokens
        if limit is not None and len(self._chunks) > limit:
            self._chunks, self._finish = self._chunks[:max(limit, 0)], "length"
        msg_id = f"chatcmpl-emu{next(_ids)}" if self.kind == "openai" else f"msg_emu{next(_ids):08d}"
        self._msg_id, self._created = msg_id, int(time.time())
        if not self._chat.stream:
            return
        self._frames = frames_for(self.kind, self.model, msg_id, self._created, self._emu.usage[0])
        self._record.status = 200
        await self._send(
            h11.Response(status_code=200, headers=[("content-type", "text/event-stream; charset=utf-8"),
                                                   ("cache-control", "no-cache"),
                                                   ("transfer-encoding", "chunked"), self._id_header()]),
            h11.Data(data=self._frames.preamble()))

    async def content(self, count: int | None = None, delay: float | None = None, first_delay: float = 0.0) -> None:
        pace = self._emu.chunk_delay if delay is None else delay
        end = len(self._chunks) if count is None else min(len(self._chunks), self._next + count)
        wait = first_delay or pace
        while self._next < end:
            await self.sleep(wait)
            wait = pace
            text = self._chunks[self._next]
            if self._frames is not None:
                await self._send(h11.Data(data=self._frames.content(text)))
            else:
                self._check()
                self._text.append(text)
            self._next += 1
            self._record.chunks_sent += 1

    async def finish(self) -> None:
        if self._frames is not None:
            await self._send(h11.Data(data=self._frames.terminal(self._finish, self._usage(),
                                                                 self._chat.include_usage)),
                             h11.EndOfMessage())
        else:
            await self._json(200, completion_body(self.kind, self.model, self._msg_id, self._created,
                                                  "".join(self._text), self._finish, self._usage()))

    async def malformed(self) -> None:
        if self._frames is not None:
            await self._send(h11.Data(data=self._frames.malformed()))
        else:
            await self._json(200, b'{"choices": [ {oops')

    async def inband_error(self, error_type: str | None) -> None:
        if self._frames is not None:
            await self._send(h11.Data(data=self._frames.inband_error(error_type)))
        else:
            await self._json(200, error_body(self.kind, inband_shape(self.kind, error_type), self._request_id))

    async def end(self) -> None:
        if self._frames is not None:
            await self._send(h11.EndOfMessage())
        elif self._record.status is None:  # no malformed/in-band body was sent instead
            await self._json(200, completion_body(self.kind, self.model, self._msg_id, self._created,
                                                  "".join(self._text), None, self._usage()))

    async def abort(self, how: How) -> None:
        self._check()
        self.aborted = True
        if how == "close":
            self._writer.close()  # flushes what was written, then FIN, with no terminating chunk
            return
        # abort() would discard what is still in the transport's buffer: let the chunks reach the client first.
        while self._writer.transport.get_write_buffer_size():
            await self.sleep(0.005)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()
