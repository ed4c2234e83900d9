"""Reading a chat request, the same for both protocols: what the emulator needs to plan its answer.

Parsing is lenient on purpose (anything odd is simply absent): refusing bad requests is `rules.py`'s job,
and a request it let through must still be answerable here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from failover.emulator.wire import Kind


@dataclass(frozen=True)
class Tool:
    name: str
    schema: dict[str, Any]  # JSON schema of the arguments (OpenAI `parameters`, Anthropic `input_schema`)


@dataclass(frozen=True)
class ChatRequest:
    """What the emulator needs from a chat request body."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    messages: tuple[tuple[str, str], ...]  # (role, text), system prompts excluded
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"  # "auto" | "none" | "required" (Anthropic "any") | "tool" (then `forced_tool`)
    forced_tool: str | None = None
    tool_results: tuple[tuple[str, str], ...] = ()  # (tool name, result text) the last message carries
    output_schema: dict[str, Any] | None = None  # a structured answer was asked for with this schema
    json_object: bool = False  # OpenAI `response_format: {"type": "json_object"}`

    @property
    def prefill(self) -> bool:
        return bool(self.messages) and self.messages[-1][0] == "assistant"

    @property
    def ends_with_user(self) -> bool:
        """The last message is the user's own turn, not tool results."""
        return bool(self.messages) and self.messages[-1][0] == "user" and not self.tool_results

    def continued_prefix(self, answer: str) -> str | None:
        """The assistant text this request asks to continue, if it is a prefix of `answer`."""
        for role, text in reversed(self.messages):
            stripped = text.rstrip()
            if role == "assistant" and stripped and answer.startswith(stripped):
                return stripped
        return None

    def chosen_tool(self) -> Tool | None:
        """The tool an automatic answer calls: the one `tool_choice` names, else the first."""
        if self.forced_tool is not None:
            return next((t for t in self.tools if t.name == self.forced_tool), Tool(self.forced_tool, {}))
        return self.tools[0] if self.tools else None


def text_of(content: Any) -> str:
    """The text of a message or tool result: a plain string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_chat(kind: Kind, body: dict[str, Any]) -> ChatRequest:
    raw = [m for m in _list(body.get("messages")) if isinstance(m, dict)]
    options = body.get("stream_options")
    base = ChatRequest(
        model=str(body.get("model", "")),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        max_tokens=_int(body.get("max_tokens", body.get("max_completion_tokens"))),
        messages=tuple((str(m.get("role", "")), text_of(m.get("content")))
                       for m in raw if m.get("role") not in ("system", "developer")),
    )
    return _openai_extras(base, body, raw) if kind == "openai" else _anthropic_extras(base, body, raw)


def _openai_extras(base: ChatRequest, body: dict[str, Any], raw: list[dict[str, Any]]) -> ChatRequest:
    tools = tuple(Tool(str(f.get("name", "")), _dict(f.get("parameters")))
                  for t in _list(body.get("tools")) if (f := _dict(_dict(t).get("function"))))
    choice, forced = body.get("tool_choice", "auto"), None
    if isinstance(choice, dict):
        forced = str(_dict(choice.get("function")).get("name", ""))
        choice = "tool"
    # The tool messages at the end of the conversation answer the calls of the assistant message before them.
    results: list[tuple[str, str]] = []
    names: dict[str, str] = {}
    tail = len(raw)
    while tail and raw[tail - 1].get("role") == "tool":
        tail -= 1
    if tail < len(raw) and tail:
        names = {str(c.get("id")): str(_dict(c.get("function")).get("name", "tool"))
                 for c in _list(raw[tail - 1].get("tool_calls")) if isinstance(c, dict)}
    for m in raw[tail:]:
        results.append((names.get(str(m.get("tool_call_id")), "tool"), text_of(m.get("content"))))
    fmt = _dict(body.get("response_format"))
    schema = _dict(_dict(fmt.get("json_schema")).get("schema")) if fmt.get("type") == "json_schema" else None
    return replace(base, tools=tools, tool_choice=str(choice), forced_tool=forced, tool_results=tuple(results),
                   output_schema=schema, json_object=fmt.get("type") == "json_object")


_ANTHROPIC_CHOICE = {"any": "required", "auto": "auto", "none": "none", "tool": "tool"}


def _anthropic_extras(base: ChatRequest, body: dict[str, Any], raw: list[dict[str, Any]]) -> ChatRequest:
    tools = tuple(Tool(str(t.get("name", "")), _dict(t.get("input_schema")))
                  for t in _list(body.get("tools")) if isinstance(t, dict) and "input_schema" in t)
    choice = _dict(body.get("tool_choice"))
    kind = _ANTHROPIC_CHOICE.get(str(choice.get("type", "auto")), "auto")
    forced = str(choice.get("name", "")) if kind == "tool" else None
    results: list[tuple[str, str]] = []
    if raw and raw[-1].get("role") == "user":
        blocks = [b for b in _list(raw[-1].get("content")) if isinstance(b, dict) and b.get("type") == "tool_result"]
        names = {}
        if blocks and len(raw) > 1:
            names = {str(b.get("id")): str(b.get("name", "tool")) for b in _list(raw[-2].get("content"))
                     if isinstance(b, dict) and b.get("type") == "tool_use"}
        results = [(names.get(str(b.get("tool_use_id")), "tool"), text_of(b.get("content"))) for b in blocks]
    # The current form is `output_config.format`; the beta's top-level `output_format` is read too.
    fmt = _dict(_dict(body.get("output_config")).get("format")) or _dict(body.get("output_format"))
    schema = _dict(fmt.get("schema")) if fmt.get("type") == "json_schema" else None
    return replace(base, tools=tools, tool_choice=kind, forced_tool=forced, tool_results=tuple(results),
                   output_schema=schema)
