"""One request being answered: the server side of `script.Exchange`, over asyncio streams and h11."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Literal

import h11

from failover.emulator import content
from failover.emulator.content import ANSWER, Block, Plan, automatic, plan
from failover.emulator.frames import Frames, call_ids, completion_body, frames_for
from failover.emulator.request import ChatRequest
from failover.emulator.script import ClientGone, Content, How
from failover.emulator.wire import ErrorShape, Kind, dumps, error_body, inband_frame

_ids = itertools.count(1)


@dataclass
class Record:
    """One request as the emulator saw it; the server thread fills in the outcome fields as it goes.

    `headers` has every secret header (Authorization, x-api-key, api-key) masked as "***"; `body` is the
    request's JSON body as sent (so a test can assert the exact request an SDK or a router produced).
    """

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


@dataclass(frozen=True)
class Settings:
    """The emulator's answer settings, read once per request."""

    answer: str
    chunk_delay: float
    continuation: Literal["smart", "naive"]
    usage: tuple[int, int | None]


class ServerExchange:
    """The server side of `script.Exchange` for one request."""

    def __init__(self, kind: Kind, settings: Settings, conn: h11.Connection, writer: asyncio.StreamWriter,
                 watcher: asyncio.Task[None], record: Record, chat: ChatRequest, api_key: str) -> None:
        self.kind: Kind = kind
        self.model = chat.model
        self.api_key = api_key
        self.aborted = False
        self._settings, self._conn, self._writer, self._watcher = settings, conn, writer, watcher
        self._record, self._chat = record, chat
        self._request_id = f"req_emu{next(_ids):08d}"
        self._plan = Plan([Block("text")], [], "stop")
        self._ids: list[str] = []
        self._next = 0  # pieces of the plan sent so far
        self._open = -1  # the block whose frames are being sent (streaming)
        self._frames: Frames | None = None
        self._msg_id, self._created = "", 0
        self._trickle: tuple[float | None, float | None] | None = None

    # -- plumbing

    def _check(self) -> None:
        if self._watcher.done():
            raise ClientGone

    async def _send(self, *events: h11.Event) -> None:
        self._check()
        if self._trickle is not None:
            await self._send_trickled(events, *self._trickle)
            return
        self._writer.write(b"".join(self._conn.send(e) or b"" for e in events))
        await self._drain()

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except ConnectionError as e:
            raise ClientGone from e

    async def _send_trickled(self, events: tuple[h11.Event, ...], head: float | None, body: float | None) -> None:
        for event in events:
            data = self._conn.send(event) or b""
            interval = head if isinstance(event, h11.Response) else body
            if interval is None:
                self._writer.write(data)
                await self._drain()
                continue
            for i in range(len(data)):
                await self.sleep(interval)  # sees a hang-up between any two bytes
                self._writer.write(data[i:i + 1])
                await self._drain()

    def _id_header(self) -> tuple[str, str]:
        return ("x-request-id" if self.kind == "openai" else "request-id", self._request_id)

    async def _json(self, status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = body if isinstance(body, bytes) else dumps(body)
        self._record.status = status
        await self._send(
            h11.Response(status_code=status, headers=[("content-type", "application/json"),
                                                      ("content-length", str(len(data))), self._id_header(),
                                                      *headers]),
            h11.Data(data=data), h11.EndOfMessage())

    def _usage(self) -> tuple[int, int]:
        inp, out = self._settings.usage
        return inp, self._record.chunks_sent if out is None else out

    def _answer(self, text: str | None) -> tuple[Block, ...]:
        """What `ANSWER` stands for: the request's automatic content, else the text answer, continuing
        the assistant text the request ends with when it is a prefix of the answer ("smart")."""
        if text is None:
            auto = automatic(self._chat, self._settings.answer)
            if auto is not None:
                return auto
            text = self._settings.answer
        prefix = self._chat.continued_prefix(text)
        self._record.continuation = prefix is not None
        if prefix is not None and self._settings.continuation == "smart":
            text = text[len(prefix):]
        return (content.text(text),)

    def _body(self, finish: bool) -> dict[str, Any]:
        return completion_body(self.kind, self.model, self._msg_id, self._created, self._plan, self._ids,
                               self._next, self._plan.finish if finish else None, self._usage())

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

    def trickle(self, headers: float | None, body: float | None) -> None:
        self._trickle = (headers, body)

    async def begin(self, answer: Content = None) -> None:
        blocks = answer if isinstance(answer, tuple) else (ANSWER,)
        resolved = self._answer(answer if isinstance(answer, str) else None) if ANSWER in blocks else ()
        self._plan = plan(blocks, self._chat, resolved)
        seq = next(_ids)
        self._msg_id = f"chatcmpl-emu{seq}" if self.kind == "openai" else f"msg_emu{seq:08d}"
        self._created = int(time.time())
        self._ids = call_ids(self.kind, self._plan, seq)
        if not self._chat.stream:
            return
        self._frames = frames_for(self.kind, self.model, self._msg_id, self._created, self._settings.usage[0],
                                  self._plan, self._ids)
        self._record.status = 200
        self._open = self._plan.pieces[0][0] if self._plan.pieces else 0
        await self._send(
            h11.Response(status_code=200, headers=[("content-type", "text/event-stream; charset=utf-8"),
                                                   ("cache-control", "no-cache"),
                                                   ("transfer-encoding", "chunked"), self._id_header()]),
            h11.Data(data=self._frames.preamble() + self._frames.open(self._open)))

    async def content(self, count: int | None = None, delay: float | None = None, first_delay: float = 0.0) -> None:
        pace = self._settings.chunk_delay if delay is None else delay
        pieces = self._plan.pieces
        end = len(pieces) if count is None else min(len(pieces), self._next + count)
        wait = first_delay or pace
        frames = self._frames
        while self._next < end:
            await self.sleep(wait)
            wait = pace
            index, text = pieces[self._next]
            if frames is not None:
                if index == self._open:
                    data = frames.piece(text)
                else:  # the next block starts: opening it sets the frames its pieces go in
                    data = frames.close(self._open) + frames.open(index)
                    self._open = index
                    data += frames.piece(text)
                await self._send(h11.Data(data=data))
            else:
                self._check()
            self._next += 1
            self._record.chunks_sent += 1

    async def finish(self) -> None:
        if self._frames is not None:
            data = self._frames.close(self._open) + self._frames.terminal(self._plan.finish, self._usage(),
                                                                          self._chat.include_usage)
            await self._send(h11.Data(data=data), h11.EndOfMessage())
        else:
            await self._json(200, self._body(finish=True))

    async def malformed(self) -> None:
        if self._frames is not None:
            await self._send(h11.Data(data=self._frames.malformed()))
        else:
            await self._json(200, b'{"choices": [ {oops')

    async def inband_error(self, shape: ErrorShape) -> None:
        if self._frames is not None:
            await self._send(h11.Data(data=inband_frame(self.kind, shape)))
        else:
            await self._json(200, error_body(self.kind, shape, self._request_id))

    async def end(self) -> None:
        if self._frames is not None:
            await self._send(h11.EndOfMessage())
        elif self._record.status is None:  # no malformed/in-band body was sent instead
            await self._json(200, self._body(finish=False))

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
