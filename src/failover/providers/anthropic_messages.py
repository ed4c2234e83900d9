"""The router's request (OpenAI's shapes) translated to Anthropic's Messages API.

- system and developer messages → the top-level `system` (the provider joins them);
- text parts → text blocks; images → image blocks (`base64` from a data URL, `url` for http(s));
- an assistant's `tool_calls` → `tool_use` blocks (arguments parsed: they were checked to be a JSON
  object before any request);
- `tool` messages → `tool_result` blocks at the start of the next user turn; consecutive tool
  results and the user message after them are one user turn, as the API wants;
- consecutive turns of one role are merged (the API refuses an assistant turn after an assistant turn
  in some cases, and tool results must directly follow their `tool_use`);
- tool-call ids pass unchanged when they fit the API's pattern (`call_…` ids from OpenAI do); any
  other id is mapped to a stable one that does, the same in the `tool_use` and its `tool_result`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from failover.request import Image, Message, OutputFormat, Request, Text, Tool, decode_image

_ID = re.compile(r"[A-Za-z0-9_-]+")


def tool_id(call_id: str) -> str:
    if _ID.fullmatch(call_id):
        return call_id
    return "toolu_" + hashlib.sha256(call_id.encode()).hexdigest()[:24]


def _image(image: Image) -> dict[str, Any]:
    if image.inline is None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type, data = decode_image(image)
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _blocks(m: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in m.parts:
        if isinstance(part, Text):
            if part.text:  # the API refuses empty text blocks
                blocks.append({"type": "text", "text": part.text})
        else:
            blocks.append(_image(part))
    for call in m.tool_calls:
        blocks.append({"type": "tool_use", "id": tool_id(call.id), "name": call.name,
                       "input": json.loads(call.arguments or "{}")})
    return blocks


def _result(m: Message) -> dict[str, Any]:
    assert m.tool_call_id is not None
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(m.tool_call_id)}
    text = m.text
    if text:
        block["content"] = text
    return block


def messages(conversation: tuple[Message, ...]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for m in conversation:
        role = "assistant" if m.role == "assistant" else "user"
        if m.role == "tool":
            blocks = [_result(m)]
        elif isinstance(m.content, str) and not m.tool_calls:
            blocks = [{"type": "text", "text": m.content}] if m.content else []
        else:
            blocks = _blocks(m)
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]["content"]
            if m.role == "tool":  # tool results lead the user turn that follows the tool_use
                at = sum(1 for b in previous if b["type"] == "tool_result")
                previous[at:at] = blocks
            else:
                previous.extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # a lone text block reads best (and costs least) as a plain string
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
        elif not content:
            turn["content"] = ""
    return turns


def tool(t: Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": t.name, "input_schema": dict(t.parameters)}
    if t.description is not None:
        spec["description"] = t.description
    if t.strict is not None:
        spec["strict"] = t.strict
    return spec


def tool_choice(request: Request) -> dict[str, Any] | None:
    """OpenAI's tool_choice and parallel_tool_calls in Anthropic's form: auto → auto, none → none,
    required → any, one function → tool; parallel_tool_calls: false → disable_parallel_tool_use."""
    choice: dict[str, Any] | None
    if request.tool_choice_name is not None:
        choice = {"type": "tool", "name": request.tool_choice_name}
    elif request.tool_choice == "required":
        choice = {"type": "any"}
    elif request.tool_choice is not None:
        choice = {"type": request.tool_choice}
    else:
        choice = None
    if request.parallel_tool_calls is False and request.tools and (choice is None or choice["type"] != "none"):
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return choice


def output_format(fmt: OutputFormat) -> dict[str, Any]:
    """`response_format` as the Messages API's native structured output (`output_config.format`)."""
    return {"type": "json_schema", "schema": dict(fmt.schema or {"type": "object"})}
