"""The caller's request as typed values: messages (text, images, tool calls and their results) and the
call's parameters. Built and validated once by `failover.validate.build_request`, before any provider
is contacted; each provider type translates it to its own API (providers/).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from failover.types import ToolCall

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "developer", "user", "assistant", "tool")
INSTRUCTION_ROLES = ("system", "developer")

# Capabilities a request may need (DESIGN §2): a provider without one is skipped, not sent a 400.
TOOLS, IMAGES, JSON_SCHEMA = "tools", "images", "json_schema"
CAPABILITIES = (TOOLS, IMAGES, JSON_SCHEMA)


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    url: str  # https://... or data:image/png;base64,...
    detail: str | None = None  # auto | low | high (OpenAI's hint)

    @property
    def inline(self) -> tuple[str, str] | None:
        """(media type, base64 data) of a `data:` URL; None for an http(s) URL."""
        if not self.url.startswith("data:"):
            return None
        head, _, data = self.url[5:].partition(",")
        return head.removesuffix(";base64"), data


Part = Text | Image


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str | tuple[Part, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message's calls
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None  # an optional participant name (OpenAI carries it; Anthropic cannot)

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, Text))

    @property
    def parts(self) -> tuple[Part, ...]:
        if isinstance(self.content, str):
            return (Text(self.content),) if self.content else ()
        return self.content


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: Mapping[str, Any]  # a JSON schema (an object)
    description: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """`response_format`: a JSON object, or JSON that follows `schema`."""

    kind: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


ToolChoice = Literal["auto", "none", "required"]


@dataclass(frozen=True, slots=True)
class Request:
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    user: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    tool_choice_name: str | None = None  # tool_choice naming one function
    parallel_tool_calls: bool | None = None
    response_format: OutputFormat | None = None
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # provider name or type -> kwargs
    needs: frozenset[str] = frozenset()  # capabilities this request needs

    @property
    def system(self) -> str | None:
        """All system and developer messages joined: Anthropic takes them as one `system` parameter."""
        parts = [m.text for m in self.messages if m.role in INSTRUCTION_ROLES]
        return "\n\n".join(parts) if parts else None

    @property
    def conversation(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.role not in INSTRUCTION_ROLES)

    @property
    def structured(self) -> bool:
        """The answer is JSON: it is never stitched from two generations."""
        return self.response_format is not None

    def extended(self, *messages: Message) -> Request:
        return replace(self, messages=self.messages + messages)

    def extra_for(self, name: str, kind: str) -> dict[str, Any]:
        """The call's `extra` kwargs for the provider of this YAML name and type (the name wins)."""
        return {**self.extra.get(kind, {}), **self.extra.get(name, {})}


def decode_image(image: Image) -> tuple[str, str]:
    """(media type, base64 data) of an inline image, checked: a `ValueError` for bad data."""
    inline = image.inline
    if inline is None:
        raise ValueError("not a data: URL")
    media_type, data = inline
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its data is not valid base64") from None
    return media_type, data
