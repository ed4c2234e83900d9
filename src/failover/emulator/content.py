"""What an answer is made of, independent of the protocol: an ordered list of content blocks.

A block is text, thinking, a refusal, a tool call or content of a kind no client knows, already cut into
the pieces it is streamed in. Every piece of every block is one *chunk*: `steps.cut(after=N)` and the
other "after N chunks" faults count text chunks, thinking chunks and tool-call argument fragments alike,
so a cut can land in the middle of a call's arguments.

How the emulator answers a request that no step gives content to (`automatic`):
  - the last message carries tool results (OpenAI `tool` messages, Anthropic `tool_result` blocks):
    text quoting each one, "<tool name> says: <result>";
  - the request has `tools`, `tool_choice` is not "none" and the last message is the user's: one call
    to the tool `tool_choice` names, else the first tool, with arguments from its schema (`schema.py`);
  - a structured answer was asked for (OpenAI `response_format` json_schema / json_object, Anthropic
    `output_config.format`): a JSON document, valid for the schema, in fixed-width fragments;
  - otherwise the emulator's text answer (continuation-aware).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from failover.emulator.request import ChatRequest
from failover.emulator.schema import instance
from failover.emulator.wire import Finish, split_chunks, split_fragments

BlockKind = Literal["text", "thinking", "refusal", "tool_call", "unknown", "answer"]
SIGNATURE = "EmulatorSignature=="  # the opaque signature closing an Anthropic thinking block
DEFAULT_THINKING = "The user wants a short answer. I will give one."
DEFAULT_REFUSAL = "I'm sorry, but I can't help with that."
DEFAULT_TOOL = ("get_weather", {"city": "Paris"})  # what a tool-call step calls when the request has no tools


@dataclass(frozen=True)
class Block:
    """One content block. `answer` stands for whatever the request gets without a step's content;
    a `tool_call` without pieces is the automatic call of the request's tool."""

    kind: BlockKind
    pieces: tuple[str, ...] = ()
    name: str = ""


ANSWER = Block("answer")


def text(value: str, kind: BlockKind = "text") -> Block:
    return Block(kind, tuple(split_chunks(value)))


def document(value: Any) -> Block:
    """A JSON document as a text block, in fixed-width fragments (it has no spaces to split on)."""
    return Block("text", tuple(split_fragments(json.dumps(value, ensure_ascii=False))))


def tool_call(name: str, arguments: Mapping[str, Any] | str) -> Block:
    """A call of `name`; `arguments` a mapping or a raw JSON string (sent as is, even if invalid)."""
    raw = arguments if isinstance(arguments, str) else json.dumps(dict(arguments), ensure_ascii=False)
    return Block("tool_call", tuple(split_fragments(raw)), name)


def tool_calls(calls: Sequence[tuple[str, Mapping[str, Any] | str]] | None) -> tuple[Block, ...]:
    """Explicit calls, or (None) one automatic call."""
    if calls is None:
        return (Block("tool_call"),)
    if not calls:
        raise ValueError("tool_calls needs at least one (name, arguments) pair, or None for an automatic call")
    out = []
    for i, call in enumerate(calls):
        if not (isinstance(call, tuple | list) and len(call) == 2 and isinstance(call[0], str) and call[0]
                and isinstance(call[1], (str, Mapping))):
            raise ValueError(f"tool_calls[{i}] must be a (name, arguments) pair with arguments a dict or a JSON "
                             f"string, not {call!r}")
        out.append(tool_call(*call))
    return tuple(out)


def automatic(chat: ChatRequest, answer: str) -> tuple[Block, ...] | None:
    """The content the request itself calls for, or None for the plain text answer."""
    if chat.tool_results:
        return (text(" ".join(f"{name} says: {result}" for name, result in chat.tool_results)),)
    if chat.tools and chat.tool_choice != "none" and chat.ends_with_user:
        return (_auto_call(chat),)
    if chat.output_schema is not None:
        return (document(instance(chat.output_schema)),)
    if chat.json_object:
        return (document({"answer": answer}),)
    return None


def _auto_call(chat: ChatRequest) -> Block:
    tool = chat.chosen_tool()
    if tool is None:
        return tool_call(*DEFAULT_TOOL)
    args = instance(tool.schema) if tool.schema else {}
    return tool_call(tool.name, args if isinstance(args, dict) else {})


@dataclass
class Plan:
    """The answer to send: its blocks (none empty but a lone text block), every piece in order as
    (block index, piece), and why it ends."""

    blocks: list[Block]
    pieces: list[tuple[int, str]]
    finish: Finish

    def sent(self, count: int) -> list[tuple[int, Block, str]]:
        """Each block that has started after `count` pieces: its index, itself and its text so far."""
        got: dict[int, list[str]] = {}
        for index, piece in self.pieces[:count]:
            got.setdefault(index, []).append(piece)
        return [(i, self.blocks[i], "".join(parts)) for i, parts in sorted(got.items())]


def plan(blocks: Sequence[Block], chat: ChatRequest, answer: Sequence[Block]) -> Plan:
    """Resolve `ANSWER` and automatic calls, drop empty blocks, and cut at the request's `max_tokens`."""
    resolved: list[Block] = []
    for block in blocks:
        if block.kind == "answer":
            resolved.extend(answer)
        elif block.kind == "tool_call" and not block.pieces:
            resolved.append(_auto_call(chat))
        else:
            resolved.append(block)
    kept = [b for b in resolved if b.pieces] or [Block("text")]
    pieces = [(i, p) for i, b in enumerate(kept) for p in b.pieces]
    finish: Finish = ("tool_calls" if any(b.kind == "tool_call" for b in kept)
                      else "refusal" if any(b.kind == "refusal" for b in kept) else "stop")
    limit = chat.max_tokens
    if limit is not None and len(pieces) > limit:
        pieces, finish = pieces[:max(limit, 0)], "length"
    return Plan(kept, pieces, finish)
