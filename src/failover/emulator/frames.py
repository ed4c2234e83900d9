"""The answer on the wire: each protocol's SSE frames for a planned answer, and its non-streaming body.

Frames are built from pre-encoded prefix/suffix bytes set when a block opens, so a chunk costs one
`quote()` of its text and a concatenation: the benchmarks stream through a thousand connections at once.

OpenAI-compatible: text is `delta.content`, thinking `delta.reasoning_content` (as several compatible
servers send it), a refusal `delta.refusal` (finish_reason "stop"), a tool call `delta.tool_calls` (a
first fragment with `id`, `type`, `function.name` and empty `arguments`, then `arguments` pieces),
unknown content `delta.x_emulator_widget`. Anthropic: one content block per block, opened by
`content_block_start` and closed by `content_block_stop` (a thinking block gets its `signature_delta`
first); a refusal is text with `stop_reason: "refusal"`; unknown content is a block of type
`x_emulator_widget` with `x_emulator_widget_delta` deltas.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from failover.emulator.content import SIGNATURE, Block, Plan
from failover.emulator.wire import Finish, Kind, dumps, quote, sse

UNKNOWN = "x_emulator_widget"  # a content kind no client knows
_ANTHROPIC_STOP: dict[Finish, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                      "refusal": "refusal"}
_OPENAI_FINISH: dict[Finish, str] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                     "refusal": "stop"}
_OPENAI_FIELDS = {"text": b"content", "thinking": b"reasoning_content", "refusal": b"refusal"}


def call_ids(kind: Kind, plan: Plan, seq: int) -> list[str]:
    """The id of each tool-call block of one response ("" for other blocks)."""
    prefix = "call_emu" if kind == "openai" else "toolu_emu"
    return [f"{prefix}{seq:06d}{i:02d}" if b.kind == "tool_call" else "" for i, b in enumerate(plan.blocks)]


class Frames(Protocol):
    """The SSE frames of one streamed answer; `open`/`close` take the block's index in the plan."""

    def preamble(self) -> bytes: ...
    def open(self, index: int) -> bytes: ...
    def piece(self, text: str) -> bytes: ...
    def close(self, index: int) -> bytes: ...
    def terminal(self, finish: Finish, usage: tuple[int, int], include_usage: bool) -> bytes: ...
    def malformed(self) -> bytes: ...


class OpenAIFrames:
    def __init__(self, model: str, msg_id: str, created: int, plan: Plan, ids: list[str]) -> None:
        # The common head of every chunk object, left open so each frame can append its own fields.
        self._head = b"data: " + dumps({"id": msg_id, "object": "chat.completion.chunk", "created": created,
                                        "model": model})[:-1] + b","
        self._delta = self._head + b'"choices":[{"index":0,"delta":'
        self._end = b',"finish_reason":null}]}\n\n'
        self._blocks, self._ids = plan.blocks, ids
        self._calls = 0  # tool calls opened so far: the next one's `index`
        self._prefix = self._suffix = b""

    def preamble(self) -> bytes:
        # Null content when the answer has no text (calls, a refusal), as the API sends it.
        text = b'""' if any(b.kind == "text" for b in self._blocks) else b"null"
        return self._delta + b'{"role":"assistant","content":' + text + b'},"finish_reason":null,"logprobs":null}]}\n\n'

    def open(self, index: int) -> bytes:
        block = self._blocks[index]
        if block.kind == "tool_call":
            n = self._calls
            self._calls += 1
            self._prefix = self._delta + b'{"tool_calls":[{"index":' + str(n).encode() + b',"function":{"arguments":'
            self._suffix = b"}}]}" + self._end
            first = {"tool_calls": [{"index": n, "id": self._ids[index], "type": "function",
                                     "function": {"name": block.name, "arguments": ""}}]}
            return self._delta + dumps(first) + self._end
        field = _OPENAI_FIELDS.get(block.kind)
        if field is None:
            self._prefix = self._delta + b'{"' + UNKNOWN.encode() + b'":{"data":'
            self._suffix = b"}}" + self._end
        else:
            self._prefix, self._suffix = self._delta + b'{"' + field + b'":', b"}" + self._end
        return b""

    def piece(self, text: str) -> bytes:
        return self._prefix + quote(text) + self._suffix

    def close(self, index: int) -> bytes:
        return b""

    def terminal(self, finish: Finish, usage: tuple[int, int], include_usage: bool) -> bytes:
        out = (self._head + b'"choices":[{"index":0,"delta":{},"finish_reason":"' + _OPENAI_FINISH[finish].encode()
               + b'"}]}\n\n')
        if include_usage:
            inp, n = usage
            out += self._head + b'"choices":[],"usage":' + dumps(
                {"prompt_tokens": inp, "completion_tokens": n, "total_tokens": inp + n}) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def malformed(self) -> bytes:
        return b'data: {"choices": [ {oops\n\n'


# Anthropic: (content block at start, delta type, delta field) per block kind.
_ANTHROPIC_BLOCKS: dict[str, tuple[dict[str, Any], str, str]] = {
    "text": ({"type": "text", "text": ""}, "text_delta", "text"),
    "refusal": ({"type": "text", "text": ""}, "text_delta", "text"),
    "thinking": ({"type": "thinking", "thinking": "", "signature": ""}, "thinking_delta", "thinking"),
    "tool_call": ({"type": "tool_use", "input": {}}, "input_json_delta", "partial_json"),
    "unknown": ({"type": UNKNOWN, "data": ""}, UNKNOWN + "_delta", "data"),
}


class AnthropicFrames:
    def __init__(self, model: str, msg_id: str, input_tokens: int, plan: Plan, ids: list[str]) -> None:
        self._start = sse(dumps({"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}), "message_start")
        self._blocks, self._ids = plan.blocks, ids
        self._pinged = False
        self._prefix = self._suffix = b""

    def preamble(self) -> bytes:
        return self._start

    def open(self, index: int) -> bytes:
        block = self._blocks[index]
        start, delta_type, field = _ANTHROPIC_BLOCKS[block.kind]
        if block.kind == "tool_call":
            start = {"type": "tool_use", "id": self._ids[index], "name": block.name, "input": {}}
        out = sse(dumps({"type": "content_block_start", "index": index, "content_block": start}),
                  "content_block_start")
        if not self._pinged:  # the API pings once, after the first block starts
            self._pinged = True
            out += sse(b'{"type":"ping"}', "ping")
        self._prefix = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                        + str(index).encode() + b',"delta":{"type":"' + delta_type.encode() + b'","'
                        + field.encode() + b'":')
        self._suffix = b"}}\n\n"
        return out

    def piece(self, text: str) -> bytes:
        return self._prefix + quote(text) + self._suffix

    def close(self, index: int) -> bytes:
        out = b""
        if self._blocks[index].kind == "thinking":
            out = sse(dumps({"type": "content_block_delta", "index": index,
                             "delta": {"type": "signature_delta", "signature": SIGNATURE}}), "content_block_delta")
        return out + sse(b'{"type":"content_block_stop","index":' + str(index).encode() + b"}", "content_block_stop")

    def terminal(self, finish: Finish, usage: tuple[int, int], include_usage: bool) -> bytes:
        delta = {"type": "message_delta", "delta": {"stop_reason": _ANTHROPIC_STOP[finish], "stop_sequence": None},
                 "usage": {"output_tokens": usage[1]}}
        return sse(dumps(delta), "message_delta") + sse(b'{"type":"message_stop"}', "message_stop")

    def malformed(self) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", oops\n\n'


def frames_for(kind: Kind, model: str, msg_id: str, created: int, input_tokens: int, plan: Plan,
               ids: list[str]) -> Frames:
    if kind == "openai":
        return OpenAIFrames(model, msg_id, created, plan, ids)
    return AnthropicFrames(model, msg_id, input_tokens, plan, ids)


def completion_body(kind: Kind, model: str, msg_id: str, created: int, plan: Plan, ids: list[str], sent: int,
                    finish: Finish | None, usage: tuple[int, int]) -> dict[str, Any]:
    """The non-streaming answer (`"stream": false`) after `sent` pieces; `finish=None`: an answer cut short."""
    inp, out = usage
    blocks = [(b, t, ids[i]) for i, b, t in plan.sent(sent)]
    if kind == "openai":
        return {"id": msg_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": _openai_message(blocks),
                             "finish_reason": _OPENAI_FINISH[finish] if finish else None, "logprobs": None}],
                "usage": {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}}
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [_anthropic_block(*b) for b in blocks] or [{"type": "text", "text": ""}],
            "stop_reason": _ANTHROPIC_STOP[finish] if finish else None, "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": out}}


def _openai_message(blocks: list[tuple[Block, str, str]]) -> dict[str, Any]:
    def joined(kind: str) -> str | None:
        parts = [t for b, t, _ in blocks if b.kind == kind]
        return "".join(parts) if parts else None

    text = joined("text")
    # Null content when the answer is something else only (calls, a refusal), as the API sends it.
    message: dict[str, Any] = {"role": "assistant", "content": "" if text is None and not blocks else text,
                               "refusal": joined("refusal")}
    calls = [{"id": i, "type": "function", "function": {"name": b.name, "arguments": t}}
             for b, t, i in blocks if b.kind == "tool_call"]
    if calls:
        message["tool_calls"] = calls
    if (thinking := joined("thinking")) is not None:
        message["reasoning_content"] = thinking
    if (unknown := joined("unknown")) is not None:
        message[UNKNOWN] = {"data": unknown}
    return message


def _anthropic_block(block: Block, text: str, call_id: str) -> dict[str, Any]:
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": text, "signature": SIGNATURE}
    if block.kind == "tool_call":
        try:
            args = json.loads(text)
        except ValueError:  # arguments cut short, or a deliberately invalid raw string: no object to show
            args = {}
        return {"type": "tool_use", "id": call_id, "name": block.name, "input": args if isinstance(args, dict) else {}}
    if block.kind == "unknown":
        return {"type": UNKNOWN, "data": text}
    return {"type": "text", "text": text}
