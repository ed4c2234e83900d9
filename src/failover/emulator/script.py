"""Fault scripts: what the emulator does with one request.

A step drives an `Exchange` (implemented by the server) through a few verbs: send an error, start the
answer, send content chunks, end with or without the terminal event, break the connection. Error
bodies depend on the emulator's provider kind, so steps hold both renderings and pick one when run.

The public factories below are re-exported as `failover.emulator.steps`.
"""

from __future__ import annotations

import http
from dataclasses import dataclass
from typing import Literal, Protocol

from failover.emulator.wire import ErrorShape, Kind

How = Literal["close", "reset"]


class ClientGone(Exception):
    """The client closed the connection while the step was still answering."""


class Exchange(Protocol):
    """One request being answered; every method raises `ClientGone` once the client has hung up."""

    @property
    def kind(self) -> Kind: ...
    @property
    def model(self) -> str: ...

    async def sleep(self, seconds: float | None) -> None:
        """Wait (`None`: until the client hangs up or the emulator stops)."""

    async def send_error(self, status: int, shape: ErrorShape, headers: tuple[tuple[str, str], ...]) -> None: ...

    async def begin(self, text: str | None = None) -> None:
        """Plan the answer (`text` replaces the emulator's) and send the status line, headers and preamble."""

    async def content(self, count: int | None = None, delay: float | None = None, first_delay: float = 0.0) -> None:
        """Send the next `count` content chunks (`None`: all that are left), `delay` apart."""

    async def finish(self) -> None:
        """Send the terminal event(s) and end the body."""

    async def malformed(self) -> None: ...
    async def inband_error(self, error_type: str | None) -> None: ...

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
    text: str | None = None
    chunk_delay: float | None = None

    async def run(self, x: Exchange) -> None:
        await x.begin(self.text)
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

    async def run(self, x: Exchange) -> None:
        await x.begin()
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
        await x.inband_error(self.error_type)
        await x.end()


# ---------------------------------------------------------------- factories (the public `steps` module)


def ok(text: str | None = None, chunk_delay: float | None = None) -> Step:
    """The healthy answer; `text` replaces the emulator's answer, `chunk_delay` its pacing."""
    return Ok("ok", text, chunk_delay)


_OPENAI_TYPES = {429: "requests"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error"}


def _headers(retry_after: float | None, retry_after_ms: float | None) -> tuple[tuple[str, str], ...]:
    def num(v: float) -> str:
        return str(int(v)) if float(v).is_integer() else str(v)

    out: list[tuple[str, str]] = []
    if retry_after is not None:
        out.append(("retry-after", num(retry_after)))
    if retry_after_ms is not None:
        out.append(("retry-after-ms", num(retry_after_ms)))
    return tuple(out)


def _status(name: str, openai: ErrorShape, anthropic: ErrorShape,
            retry_after: float | None = None, retry_after_ms: float | None = None) -> Step:
    return Status(name, openai, anthropic, _headers(retry_after, retry_after_ms))


def status(code: int, *, error_type: str | None = None, message: str | None = None, code_field: str | None = None,
           retry_after: float | None = None, retry_after_ms: float | None = None) -> Step:
    """Any HTTP error status with the provider's error body; unset fields get the provider's usual values."""
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Overloaded" if code == 529 else f"Error {code}"
    oa_type = error_type or _OPENAI_TYPES.get(code, "server_error" if code >= 500 else "invalid_request_error")
    an_type = error_type or _ANTHROPIC_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error")
    msg = message or phrase
    return _status("status", ErrorShape(code, oa_type, msg, code_field), ErrorShape(code, an_type, msg),
                   retry_after, retry_after_ms)


def rate_limit(retry_after: float | None = None, retry_after_ms: float | None = None) -> Step:
    return _status(
        "rate_limit",
        ErrorShape(429, "requests", "Rate limit reached for {model} in organization org-emulator on requests per "
                   "min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms.", "rate_limit_exceeded"),
        ErrorShape(429, "rate_limit_error", "This request would exceed your organization's rate limit of 50 "
                   "requests per minute. Please reduce the prompt length or the maximum tokens requested, or try "
                   "again later."),
        retry_after, retry_after_ms)


def quota() -> Step:
    """Out of credit: retrying can never help (OpenAI sends it as a 429, which looks like a rate limit)."""
    return _status(
        "quota",
        ErrorShape(429, "insufficient_quota", "You exceeded your current quota, please check your plan and "
                   "billing details.", "insufficient_quota"),
        ErrorShape(400, "billing_error", "Your credit balance is too low to access the Anthropic API. Please go to "
                   "Plans & Billing to upgrade or purchase credits."))


def context_length() -> Step:
    return _status(
        "context_length",
        ErrorShape(400, "invalid_request_error", "This model's maximum context length is 128000 tokens. However, "
                   "your messages resulted in 250000 tokens. Please reduce the length of the messages.",
                   "context_length_exceeded", "messages"),
        ErrorShape(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"))


def content_filter() -> Step:
    return _status(
        "content_filter",
        ErrorShape(400, "invalid_request_error", "Your request was rejected as a result of our safety system. "
                   "Your prompt may contain text that is not allowed by our safety system.",
                   "content_policy_violation"),
        ErrorShape(400, "invalid_request_error", "Output blocked by content filtering policy"))


def bad_request(message: str = "Invalid request: messages.0.content must not be empty") -> Step:
    return _status("bad_request", ErrorShape(400, "invalid_request_error", message),
                   ErrorShape(400, "invalid_request_error", message))


def overloaded() -> Step:
    return _status("overloaded",
                   ErrorShape(503, "server_error", "The server is overloaded or not ready yet."),
                   ErrorShape(529, "overloaded_error", "Overloaded"))


def server_error(code: int = 500) -> Step:
    oa = ("The server is overloaded or not ready yet." if code == 503
          else "The server had an error while processing your request. Sorry about that!")
    an_type = _ANTHROPIC_TYPES.get(code, "api_error")
    an = "Overloaded" if code == 529 else "Internal server error"
    return _status("server_error", ErrorShape(code, "server_error", oa), ErrorShape(code, an_type, an))


def auth() -> Step:
    return _status("auth",
                   ErrorShape(401, "invalid_request_error", "Incorrect API key provided: sk-***. You can find your "
                              "API key at https://platform.openai.com/account/api-keys.", "invalid_api_key"),
                   ErrorShape(401, "authentication_error", "invalid x-api-key"))


def forbidden() -> Step:
    return _status("forbidden",
                   ErrorShape(403, "invalid_request_error", "You are not allowed to sample from this model",
                              "model_not_allowed"),
                   ErrorShape(403, "permission_error",
                              "Your API key does not have permission to use the specified resource."))


def not_found() -> Step:
    return _status("not_found",
                   ErrorShape(404, "invalid_request_error", "The model `{model}` does not exist or you do not have "
                              "access to it.", "model_not_found", "model"),
                   ErrorShape(404, "not_found_error", "model: {model}"))


def payment_required() -> Step:
    return _status("payment_required",
                   ErrorShape(402, "billing_error", "Payment required: your account has an unpaid balance.",
                              "payment_required"),
                   ErrorShape(402, "billing_error",
                              "There's an issue with your billing or payment information."))


def reset() -> Step:
    """Read the request, then RST before any response byte."""
    return Reset("reset")


def hang() -> Step:
    """Read the request and never answer."""
    return Hang("hang")


def slow_first(delay: float) -> Step:
    """Headers and preamble at once, the first content chunk `delay` seconds later."""
    return SlowFirst("slow_first", delay)


def slow_headers(delay: float) -> Step:
    """Nothing at all for `delay` seconds, then the healthy answer."""
    return SlowHeaders("slow_headers", delay)


def cut(after: int, how: How = "close") -> Step:
    """`after` content chunks, then FIN without the terminating chunk (`close`) or RST (`reset`)."""
    if how not in ("close", "reset"):
        raise ValueError(f"how must be 'close' or 'reset', not {how!r}")
    return Cut("cut", after, how)


def stall(after: int, seconds: float | None = None) -> Step:
    """`after` content chunks, silence for `seconds` (None: until the client hangs up), then the rest."""
    return Stall("stall", after, seconds)


def malformed(after: int) -> Step:
    """`after` content chunks, an event whose data is not JSON, then a clean end without a terminal event."""
    return Malformed("malformed", after)


def no_terminal(after: int | None = None) -> Step:
    """`after` content chunks (None: all), then a clean end of the body without the terminal event."""
    return NoTerminal("no_terminal", after)


def inband_error(after: int, error_type: str | None = None) -> Step:
    """`after` content chunks, then an error event inside the 200 stream (OpenAI server_error,
    Anthropic overloaded_error unless `error_type` says otherwise), then a clean end."""
    return InbandError("inband_error", after, error_type)
