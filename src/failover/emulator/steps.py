"""The steps a script is made of: what the emulator does with one request (`failover.emulator.steps`).

    emu.script(steps.rate_limit(retry_after=1), steps.cut(after=3), steps.ok())

"After N chunks" (cut, stall, malformed, no_terminal, inband_error, stall_then_close, echo_key's in-band
form, tool_calls' `after`) counts every streamed piece of content: text chunks (one word each), thinking
chunks, and tool-call argument fragments alike, so a cut can land in the middle of a call's arguments.
Steps that take no content answer with the request's own answer: a tool call or tool-result summary or
JSON document when the request calls for one (see `failover.emulator.content`), else the emulator's text.
"""

from __future__ import annotations

import http
from collections.abc import Mapping, Sequence
from typing import Any

from failover.emulator import content
from failover.emulator.content import ANSWER, DEFAULT_REFUSAL, DEFAULT_THINKING
from failover.emulator.script import (
    Cut,
    EchoKey,
    Hang,
    How,
    InbandError,
    Malformed,
    NoTerminal,
    Ok,
    Reset,
    SlowFirst,
    SlowHeaders,
    Stall,
    StallThenClose,
    Status,
    Step,
    Trickle,
)
from failover.emulator.wire import ErrorShape

__all__ = [
    "DEFAULT_REFUSAL", "DEFAULT_THINKING", "Step", "auth", "bad_request", "content_filter", "context_length", "cut",
    "echo_key", "forbidden", "hang", "inband_error", "malformed", "no_terminal", "not_found", "ok", "only_thinking",
    "overloaded", "payment_required", "quota", "rate_limit", "refusal", "reset", "server_error", "slow_first",
    "slow_headers", "stall", "stall_then_close", "status", "thinking", "tool_calls", "trickle_body",
    "trickle_headers", "unknown_delta",
]


def _count(what: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0, not {value!r}")
    return value


def _seconds(what: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{what} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def ok(text: str | None = None, chunk_delay: float | None = None) -> Step:
    """The healthy answer; `text` replaces the emulator's answer (and the request's automatic content),
    `chunk_delay` its pacing."""
    return Ok("ok", text, chunk_delay)


_OPENAI_TYPES = {429: "requests"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error"}


def _types(code: int, error_type: str | None = None) -> tuple[str, str]:
    """The error `type` of each provider's body for an HTTP status."""
    return (error_type or _OPENAI_TYPES.get(code, "server_error" if code >= 500 else "invalid_request_error"),
            error_type or _ANTHROPIC_TYPES.get(code, "api_error" if code >= 500 else "invalid_request_error"))


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
    if not isinstance(code, int) or not 400 <= code <= 599:
        raise ValueError(f"code must be an HTTP error status (400-599), not {code!r}")
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Overloaded" if code == 529 else f"Error {code}"
    oa_type, an_type = _types(code, error_type)
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
    return SlowFirst("slow_first", _seconds("delay", delay))


def slow_headers(delay: float) -> Step:
    """Nothing at all for `delay` seconds, then the healthy answer."""
    return SlowHeaders("slow_headers", _seconds("delay", delay))


def cut(after: int, how: How = "close") -> Step:
    """`after` content chunks, then FIN without the terminating chunk (`close`) or RST (`reset`)."""
    if how not in ("close", "reset"):
        raise ValueError(f"how must be 'close' or 'reset', not {how!r}")
    return Cut("cut", _count("after", after), how)


def stall(after: int, seconds: float | None = None) -> Step:
    """`after` content chunks, silence for `seconds` (None: until the client hangs up), then the rest."""
    return Stall("stall", _count("after", after), None if seconds is None else _seconds("seconds", seconds))


def malformed(after: int) -> Step:
    """`after` content chunks, an event whose data is not JSON, then a clean end without a terminal event."""
    return Malformed("malformed", _count("after", after))


def no_terminal(after: int | None = None) -> Step:
    """`after` content chunks (None: all), then a clean end of the body without the terminal event."""
    return NoTerminal("no_terminal", None if after is None else _count("after", after))


def inband_error(after: int, error_type: str | None = None) -> Step:
    """`after` content chunks, then an error event inside the 200 stream (OpenAI server_error,
    Anthropic overloaded_error unless `error_type` says otherwise), then a clean end."""
    return InbandError("inband_error", _count("after", after), error_type)


def stall_then_close(after: int, seconds: float) -> Step:
    """`after` content chunks, silence for `seconds`, then a clean end of the body without the terminal
    event and the connection closed: a stream that went quiet and was then closed by the server."""
    return StallThenClose("stall_then_close", _count("after", after), _seconds("seconds", seconds))


def trickle_headers(interval: float) -> Step:
    """The status line and response headers one byte every `interval` seconds, then the healthy answer:
    every read makes progress, so only an overall deadline can stop it."""
    return Trickle("trickle_headers", headers=_seconds("interval", interval))


def trickle_body(interval: float) -> Step:
    """Headers at once, then every byte of the body one at a time, `interval` seconds apart."""
    return Trickle("trickle_body", body=_seconds("interval", interval))


_ECHO_PAD = "The request could not be authenticated with the key it carried. "


def echo_key(status: int = 401, prefix_len: int = 0, *, after: int | None = None) -> Step:
    """An error whose message quotes the API key the request carried, as some providers and proxies do
    ("Incorrect API key provided: <key>. ..."). The key starts at character `prefix_len` of the message
    (or right after the lead-in if that is longer): filler text pads the message before it. `after=None`:
    an HTTP error with `status`; `after=N`: N content chunks, then the same error in-band."""
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error status (400-599), not {status!r}")
    _count("prefix_len", prefix_len)
    if after is not None:
        _count("after", after)
    oa_type, an_type = _types(status)
    an_type = "authentication_error" if status == 401 else an_type

    def message(lead: str, tail: str) -> str:
        pad = max(prefix_len - len(lead), 0)
        filler = (_ECHO_PAD * (pad // len(_ECHO_PAD) + 1))[:pad - 1] + " " if pad else ""
        return filler + lead + "{key}" + tail

    return EchoKey(
        "echo_key",
        ErrorShape(status, oa_type, message("Incorrect API key provided: ", ". You can find your API key at "
                                            "https://platform.openai.com/account/api-keys."), "invalid_api_key"),
        ErrorShape(status, an_type, message("invalid x-api-key: ", ". Check the key in the Anthropic Console.")),
        after=after)


def tool_calls(calls: Sequence[tuple[str, Mapping[str, Any] | str]] | None = None, text: str | None = None,
               after: int | None = None) -> Step:
    """An answer calling tools: `calls` a list of (name, arguments), arguments a dict or a raw JSON string
    (sent as is); several entries are parallel calls. `None`: one call of the request's tool (the one
    `tool_choice` names, else the first; get_weather if it has none), with arguments from its schema.
    `text` comes before the calls. `after=N`: FIN after N chunks, e.g. in the middle of the arguments."""
    blocks = ((content.text(text),) if text else ()) + content.tool_calls(calls)
    if after is None:
        return Ok("tool_calls", blocks)
    return Cut("tool_calls", _count("after", after), "close", blocks)


def thinking(text: str | None = None, thinking: str = DEFAULT_THINKING) -> Step:
    """Thinking first (Anthropic: a `thinking` block with `thinking_delta` and `signature_delta` frames;
    OpenAI-compatible: `delta.reasoning_content`), then `text` (None: the request's own answer)."""
    return Ok("thinking", (content.text(thinking, "thinking"), ANSWER if text is None else content.text(text)))


def only_thinking(thinking: str = DEFAULT_THINKING) -> Step:
    """An answer with thinking only, and a clean terminal event."""
    return Ok("only_thinking", (content.text(thinking, "thinking"),))


def refusal(text: str = DEFAULT_REFUSAL) -> Step:
    """A refusal: OpenAI `delta.refusal` chunks (finish_reason "stop"); Anthropic text with
    `stop_reason: "refusal"`."""
    return Ok("refusal", (content.text(text, "refusal"),))


def unknown_delta(text: str | None = None, data: str = "payload of a kind no client knows") -> Step:
    """Content no client knows between two pieces of text: OpenAI a `delta.x_emulator_widget` field,
    Anthropic an `x_emulator_widget` content block with its own delta type. Text before it is
    "Before the widget. ", after it `text` (None: the request's own answer)."""
    return Ok("unknown_delta", (content.text("Before the widget. "), content.text(data, "unknown"),
                                ANSWER if text is None else content.text(text)))
