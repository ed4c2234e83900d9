"""Fault scripts: what the emulator does with one request.

A step drives an `Exchange` (implemented by the server) through a few verbs: send an error, start the
answer, send content chunks, end with or without the terminal event, break the connection. Error
bodies depend on the emulator's provider kind, so steps hold both renderings and pick one when run.

The steps are built by the factories of `failover.emulator.steps`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

from failover.emulator.content import Block
from failover.emulator.wire import ErrorShape, Kind, inband_shape

How = Literal["close", "reset"]
# What a step answers with: None for the request's own answer (`content.automatic`, else the emulator's
# text), a text, or blocks (where `content.ANSWER` stands for the request's own answer).
Content = str | tuple[Block, ...] | None


class ClientGone(Exception):
    """The client closed the connection while the step was still answering."""


class Exchange(Protocol):
    """One request being answered; every method raises `ClientGone` once the client has hung up."""

    @property
    def kind(self) -> Kind: ...
    @property
    def model(self) -> str: ...
    @property
    def api_key(self) -> str:
        """The key the request carried (`Authorization: Bearer` or `x-api-key`), "" if none."""

    async def sleep(self, seconds: float | None) -> None:
        """Wait (`None`: until the client hangs up or the emulator stops)."""

    async def send_error(self, status: int, shape: ErrorShape, headers: tuple[tuple[str, str], ...]) -> None: ...

    def trickle(self, headers: float | None, body: float | None) -> None:
        """From now on send the status line and headers / the body one byte every so many seconds."""

    async def begin(self, answer: Content = None) -> None:
        """Plan the answer and send the status line, headers and preamble."""

    async def content(self, count: int | None = None, delay: float | None = None, first_delay: float = 0.0) -> None:
        """Send the next `count` chunks (`None`: all that are left), `delay` apart."""

    async def finish(self) -> None:
        """Send the terminal event(s) and end the body."""

    async def malformed(self) -> None: ...
    async def inband_error(self, shape: ErrorShape) -> None: ...

    async def end(self) -> None:
        """End the body cleanly without a terminal event."""

    async def abort(self, how: How) -> None:
        """Drop the connection: FIN (`close`, no terminating chunk) or RST (`reset`)."""


@dataclass(frozen=True)
class Step:
    name: str

    async def run(self, x: Exchange) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Ok(Step):
    answer: Content = None
    chunk_delay: float | None = None

    async def run(self, x: Exchange) -> None:
        await x.begin(self.answer)
        await x.content(delay=self.chunk_delay)
        await x.finish()


@dataclass(frozen=True)
class Status(Step):
    openai: ErrorShape
    anthropic: ErrorShape
    headers: tuple[tuple[str, str], ...] = ()

    def shape(self, kind: Kind, model: str) -> ErrorShape:
        s = self.openai if kind == "openai" else self.anthropic
        return ErrorShape(s.status, s.type, s.message.replace("{model}", model), s.code, s.param)

    async def run(self, x: Exchange) -> None:
        shape = self.shape(x.kind, x.model)
        await x.send_error(shape.status, shape, self.headers)


@dataclass(frozen=True)
class Reset(Step):
    async def run(self, x: Exchange) -> None:
        await x.abort("reset")


@dataclass(frozen=True)
class Hang(Step):
    async def run(self, x: Exchange) -> None:
        await x.sleep(None)


@dataclass(frozen=True)
class SlowFirst(Step):
    delay: float = 0.0

    async def run(self, x: Exchange) -> None:
        await x.begin()
        await x.content(first_delay=self.delay)
        await x.finish()


@dataclass(frozen=True)
class SlowHeaders(Step):
    delay: float = 0.0

    async def run(self, x: Exchange) -> None:
        await x.sleep(self.delay)
        await x.begin()
        await x.content()
        await x.finish()


@dataclass(frozen=True)
class Cut(Step):
    after: int = 0
    how: How = "close"
    answer: Content = None

    async def run(self, x: Exchange) -> None:
        await x.begin(self.answer)
        await x.content(self.after)
        await x.abort(self.how)


@dataclass(frozen=True)
class Stall(Step):
    after: int = 0
    seconds: float | None = None

    async def run(self, x: Exchange) -> None:
        await x.begin()
        await x.content(self.after)
        await x.sleep(self.seconds)
        await x.content()
        await x.finish()


@dataclass(frozen=True)
class Malformed(Step):
    after: int = 0

    async def run(self, x: Exchange) -> None:
        await x.begin()
        await x.content(self.after)
        await x.malformed()
        await x.sleep(0.05)  # a server that goes on briefly after the bad event, as a broken proxy would
        await x.end()


@dataclass(frozen=True)
class NoTerminal(Step):
    after: int | None = None

    async def run(self, x: Exchange) -> None:
        await x.begin()
        await x.content(self.after)
        await x.end()


@dataclass(frozen=True)
class InbandError(Step):
    after: int = 0
    error_type: str | None = None

    async def run(self, x: Exchange) -> None:
        await x.begin()
        await x.content(self.after)
        await x.inband_error(inband_shape(x.kind, self.error_type))
        await x.end()


@dataclass(frozen=True)
class StallThenClose(Step):
    after: int = 0
    seconds: float = 0.0

    async def run(self, x: Exchange) -> None:
        await x.begin()
        await x.content(self.after)
        await x.sleep(self.seconds)
        await x.end()
        await x.abort("close")


@dataclass(frozen=True)
class Trickle(Step):
    headers: float | None = None
    body: float | None = None

    async def run(self, x: Exchange) -> None:
        x.trickle(self.headers, self.body)
        await x.begin()
        await x.content()
        await x.finish()


@dataclass(frozen=True)
class EchoKey(Status):
    """An error whose message quotes the request's API key (`{key}` in the message), as an HTTP error
    or (`after` set) in-band after that many chunks."""

    after: int | None = None

    async def run(self, x: Exchange) -> None:
        shape = self.shape(x.kind, x.model)
        shape = replace(shape, message=shape.message.replace("{key}", x.api_key))
        if self.after is None:
            await x.send_error(shape.status, shape, self.headers)
            return
        await x.begin()
        await x.content(self.after)
        await x.inband_error(shape)
        await x.end()
