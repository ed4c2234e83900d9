"""Both providers' wire formats: reading a chat request, and the SSE frames and JSON bodies sent back.

Frames for one response are built from pre-encoded prefix/suffix bytes, so a content chunk costs one
small `json.dumps` and a concatenation: the benchmarks stream through a thousand connections at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["openai", "anthropic"]
Finish = Literal["stop", "length"]
KINDS: tuple[Kind, ...] = ("openai", "anthropic")

_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens"}
_WORD = re.compile(r"\s*\S+\s*")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def split_chunks(text: str) -> list[str]:
    """One word per chunk with the whitespace after it; leading whitespace rides on the first word.

    `"".join(split_chunks(t)) == t` for every `t`.
    """
    return _WORD.findall(text) or ([text] if text else [])


# ---------------------------------------------------------------- request side


@dataclass(frozen=True)
class ChatRequest:
    """What the emulator needs from a chat request body, the same for both protocols."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    messages: tuple[tuple[str, str], ...]  # (role, text), the system prompt excluded

    @property
    def prefill(self) -> bool:
        return bool(self.messages) and self.messages[-1][0] == "assistant"

    def continued_prefix(self, answer: str) -> str | None:
        """The assistant text this request asks to continue, if it is a prefix of `answer`."""
        for role, text in reversed(self.messages):
            stripped = text.rstrip()
            if role == "assistant" and stripped and answer.startswith(stripped):
                return stripped
        return None


def _text_of(content: Any) -> str:
    # Both SDKs accept a plain string or a list of typed parts; only text parts matter here.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    raw = body.get("messages")
    messages = tuple(
        (str(m.get("role", "")), _text_of(m.get("content")))
        for m in (raw if isinstance(raw, list) else [])
        if isinstance(m, dict) and m.get("role") != "system"
    )
    options = body.get("stream_options")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    return ChatRequest(
        model=str(body.get("model", "")),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
        messages=messages,
    )


# ---------------------------------------------------------------- response side


@dataclass(frozen=True)
class ErrorShape:
    """One provider's rendering of an HTTP error: status and the fields of its error body."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None


def error_body(kind: Kind, shape: ErrorShape, request_id: str) -> dict[str, Any]:
    if kind == "openai":
        return {"error": {"message": shape.message, "type": shape.type, "param": shape.param, "code": shape.code}}
    return {"type": "error", "error": {"type": shape.type, "message": shape.message}, "request_id": request_id}


_INBAND_MESSAGES = {
    "server_error": "The server had an error while processing your request.",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}


def inband_shape(kind: Kind, error_type: str | None) -> ErrorShape:
    etype = error_type or ("server_error" if kind == "openai" else "overloaded_error")
    message = _INBAND_MESSAGES.get(etype, etype.replace("_", " ").capitalize())
    return ErrorShape(200, etype, message, code=etype if kind == "openai" else None)


def completion_body(kind: Kind, model: str, msg_id: str, created: int, text: str, finish: Finish | None,
                    usage: tuple[int, int]) -> dict[str, Any]:
    """The non-streaming answer (`"stream": false`); `finish=None` stands for an answer cut short."""
    inp, out = usage
    if kind == "openai":
        return {"id": msg_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}}
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": _ANTHROPIC_STOP[finish] if finish else None, "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": out}}


def sse(data: bytes, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


class Frames(Protocol):
    """The SSE frames of one streamed response."""

    def preamble(self) -> bytes: ...
    def content(self, text: str) -> bytes: ...
    def terminal(self, finish: Finish, usage: tuple[int, int], include_usage: bool) -> bytes: ...
    def malformed(self) -> bytes: ...
    def inband_error(self, error_type: str | None) -> bytes: ...


class OpenAIFrames:
    def __init__(self, model: str, msg_id: str, created: int) -> None:
        # The common head of every chunk object, left open so each frame can append its own fields.
        self._head = _dumps({"id": msg_id, "object": "chat.completion.chunk", "created": created, "model": model})[:-1]
        self._prefix = b"data: " + self._head + b',"choices":[{"index":0,"delta":{"content":'
        self._suffix = b'},"finish_reason":null}]}\n\n'

    def _chunk(self, rest: bytes) -> bytes:
        return b"data: " + self._head + b"," + rest + b"}\n\n"

    def preamble(self) -> bytes:
        return self._chunk(b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                           b'"finish_reason":null,"logprobs":null}]')

    def content(self, text: str) -> bytes:
        return self._prefix + _dumps(text) + self._suffix

    def terminal(self, finish: Finish, usage: tuple[int, int], include_usage: bool) -> bytes:
        out = self._chunk(b'"choices":[{"index":0,"delta":{},"finish_reason":"' + finish.encode() + b'"}]')
        if include_usage:
            inp, n = usage
            out += self._chunk(b'"choices":[],"usage":' + _dumps(
                {"prompt_tokens": inp, "completion_tokens": n, "total_tokens": inp + n}))
        return out + b"data: [DONE]\n\n"

    def malformed(self) -> bytes:
        return b'data: {"choices": [ {oops\n\n'

    def inband_error(self, error_type: str | None) -> bytes:
        return sse(_dumps(error_body("openai", inband_shape("openai", error_type), "")))


class AnthropicFrames:
    def __init__(self, model: str, msg_id: str, input_tokens: int) -> None:
        self._start = sse(_dumps({"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}), "message_start")
        self._prefix = (b"event: content_block_delta\n"
                        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":')
        self._suffix = b"}}\n\n"

    def preamble(self) -> bytes:
        return (self._start
                + sse(b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
                      "content_block_start")
                + sse(b'{"type":"ping"}', "ping"))

    def content(self, text: str) -> bytes:
        return self._prefix + _dumps(text) + self._suffix

    def terminal(self, finish: Finish, usage: tuple[int, int], include_usage: bool) -> bytes:
        delta = {"type": "message_delta", "delta": {"stop_reason": _ANTHROPIC_STOP[finish], "stop_sequence": None},
                 "usage": {"output_tokens": usage[1]}}
        return (sse(b'{"type":"content_block_stop","index":0}', "content_block_stop")
                + sse(_dumps(delta), "message_delta")
                + sse(b'{"type":"message_stop"}', "message_stop"))

    def malformed(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", oops\n\n'

    def inband_error(self, error_type: str | None) -> bytes:
        shape = inband_shape("anthropic", error_type)
        return sse(_dumps({"type": "error", "error": {"type": shape.type, "message": shape.message}}), "error")


def frames_for(kind: Kind, model: str, msg_id: str, created: int, input_tokens: int) -> Frames:
    if kind == "openai":
        return OpenAIFrames(model, msg_id, created)
    return AnthropicFrames(model, msg_id, input_tokens)
