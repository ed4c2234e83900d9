"""What both providers' wire formats share: JSON encoding, chunking, SSE framing and error bodies.

Text goes out as raw UTF-8 (`ensure_ascii=False`), as the real APIs send it: U+2028, U+2029 and U+0085
are legal unescaped inside JSON strings, and a client that splits lines on them breaks on real traffic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, Literal, NoReturn

Kind = Literal["openai", "anthropic"]
# Why an answer ended, in a vocabulary of our own; each protocol maps it to its own field.
Finish = Literal["stop", "length", "tool_calls", "refusal"]
KINDS: tuple[Kind, ...] = ("openai", "anthropic")

_WORD = re.compile(r"\s*\S+\s*")
FRAGMENT = 8  # characters of JSON per fragment when a document or tool arguments are streamed


def dumps(value: Any) -> bytes:
    """Compact JSON, raw UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def quote(text: str) -> bytes:
    """`dumps` for one string, on the per-chunk path: the C string encoder without a JSONEncoder per call."""
    return encode_basestring(text).encode()


def split_chunks(text: str) -> list[str]:
    """One word per chunk with the whitespace after it; leading whitespace rides on the first word.

    `"".join(split_chunks(t)) == t` for every `t`.
    """
    return _WORD.findall(text) or ([text] if text else [])


def split_fragments(text: str, width: int = FRAGMENT) -> list[str]:
    """Fixed-width pieces of a JSON text (tool arguments, a structured answer), as the APIs stream them.

    `"".join(split_fragments(t)) == t`; an empty text is one empty fragment, so a call still has one.
    """
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


def sse(data: bytes, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


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


class Refused(Exception):
    """A request the API refuses: a 400 `invalid_request_error`, both APIs' answer to it."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.shape = ErrorShape(400, "invalid_request_error", message, code, param)


def refuse(message: str, param: str | None = None, code: str | None = None) -> NoReturn:
    raise Refused(message, param, code)


_INBAND_MESSAGES = {
    "server_error": "The server had an error while processing your request.",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}


def inband_shape(kind: Kind, error_type: str | None) -> ErrorShape:
    etype = error_type or ("server_error" if kind == "openai" else "overloaded_error")
    message = _INBAND_MESSAGES.get(etype, etype.replace("_", " ").capitalize())
    return ErrorShape(200, etype, message, code=etype if kind == "openai" else None)


def inband_frame(kind: Kind, shape: ErrorShape) -> bytes:
    """An error event inside a 200 stream: OpenAI's bare error object, Anthropic's `event: error`."""
    if kind == "openai":
        return sse(dumps(error_body("openai", shape, "")))
    return sse(dumps({"type": "error", "error": {"type": shape.type, "message": shape.message}}), "error")
