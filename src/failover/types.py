"""What a caller receives: `Chunk` per piece of the answer, `Result` once the stream is over."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from failover.errors import Attempt


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: `id` and `name` on a call's first delta, `arguments` a
    fragment of its JSON (the fragments of one `index` concatenate to the whole arguments)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call: `id` is the serving provider's own (`call_…`, `toolu_…`) and is valid when
    the conversation continues on another provider; `arguments` is the JSON string."""

    id: str
    name: str
    arguments: str

    def as_message_part(self) -> dict[str, Any]:
        """The call in an assistant message's `tool_calls` (OpenAI's shape, which every provider takes)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    def parsed_arguments(self) -> Any:
        """The arguments as JSON values (a `ValueError` for a model that wrote invalid JSON)."""
        return json.loads(self.arguments or "{}")


# Not frozen: a frozen dataclass costs ~0.5 µs more to build, and one is built per chunk.
@dataclass(slots=True)
class Chunk:
    """New content from the provider that is serving now. Treat it as a value: do not modify it.

    `text` is the new text ("" for none); `tool_calls` the tool-call pieces it carries (empty for
    none). `restart` is true on the one chunk that tells a consumer, in `midstream: restart` mode (and
    for answers that are never stitched: tool calls, JSON output), to discard everything received so
    far (`discard` holds that text) because the answer starts over.
    """

    text: str
    provider: str
    model: str
    restart: bool = False
    discard: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    text: str
    provider: str
    model: str
    usage: Usage
    finish_reason: str | None  # OpenAI's vocabulary: stop, length, tool_calls, content_filter
    attempts: list[Attempt] = field(default_factory=list)
    resumed: bool = False
    tool_calls: list[ToolCall] = field(default_factory=list)
    refusal: str | None = None  # a model's refusal, when it refused

    def message(self) -> dict[str, Any]:
        """The answer as the assistant message to append to the conversation (text and tool calls),
        so the next turn can go to any provider."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.as_message_part() for call in self.tool_calls]
        elif message["content"] is None:
            message["content"] = ""
        return message
