"""Anthropic Messages' rules for a request (see `rules.py`), in the API's pydantic-style wording."""

from __future__ import annotations

import re
from typing import Any

from failover.emulator.wire import refuse

# The body parameters of the installed SDK's `create()`, the beta's included (`output_format` is its older
# name for `output_config.format`).
_PARAMS = frozenset({
    "billing_policy", "cache_control", "compaction", "container", "context_management", "diagnostics",
    "fallback_credit_token", "fallbacks", "inference_geo", "max_tokens", "mcp_servers", "messages", "metadata",
    "model", "output_config", "output_format", "service_tier", "speed", "stop_sequences", "stream", "system",
    "thinking", "thread", "tool_choice", "tools", "user_profile_id", "workspace_id"})
_BLOCKS = ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")
_ASSISTANT_ONLY = ("tool_use", "thinking", "redacted_thinking")
_USER_ONLY = ("tool_result",)
_RESULT_BLOCKS = ("text", "image", "document")
_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_SERVER_TOOL = re.compile(r"[a-z_]+_\d{8}")  # web_search_20250305 and the like
_CHOICES = ("auto", "any", "tool", "none")


def _either(values: tuple[str, ...]) -> str:
    items = [f"'{v}'" for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _tags(where: str, tag: Any, expected: tuple[str, ...]) -> str:
    return (f"{where}: Input tag {tag!r} found using 'type' does not match any of the expected tags: "
            + ", ".join(f"'{t}'" for t in expected))


def check_anthropic(body: dict[str, Any]) -> None:
    """Raise `Refused` with the API's 400 for this request body, if the API would refuse it."""
    for key in body:
        if key not in _PARAMS:
            refuse(f"{key}: Extra inputs are not permitted")
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            refuse(f"{key}: Field required")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        refuse("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        refuse("max_tokens: Input should be greater than or equal to 1")
    _system(body.get("system"))
    messages = body["messages"]
    if not isinstance(messages, list):
        refuse("messages: Input should be a valid list")
    if not messages:
        refuse("messages: at least one message is required")
    for i, m in enumerate(messages):
        _message(messages, i, m)
    has_tools = _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"), has_tools)
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list):
            refuse("stop_sequences: Input should be a valid list")
        for k, stop in enumerate(stops):
            if not isinstance(stop, str):
                refuse(f"stop_sequences.{k}: Input should be a valid string")
    config = body.get("output_config")
    if config is not None:
        if not isinstance(config, dict):
            refuse("output_config: Input should be a valid dictionary")
        _output_format(config.get("format"), "output_config.format")
    _output_format(body.get("output_format"), "output_format")


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        refuse("system: Input should be a valid string")
    for k, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            refuse(f"system.{k}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            refuse(f"system.{k}.text: Field required")


def _message(messages: list[Any], i: int, m: Any) -> None:
    where = f"messages.{i}"
    if not isinstance(m, dict):
        refuse(f"{where}: Input should be a valid dictionary")
    role = m.get("role")
    if role == "system":
        refuse('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not '
               '"system" as an input message role.')
    if role not in ("user", "assistant"):
        refuse(f"{where}.role: Input should be 'user' or 'assistant'")
    if "content" not in m:
        refuse(f"{where}.content: Field required")
    content = m["content"]
    if not isinstance(content, (str, list)):
        refuse(f"{where}.content: Input should be a valid string")
    if not content and not (role == "assistant" and i == len(messages) - 1):
        refuse(f"{where}: all messages must have non-empty content except for the optional final assistant message")
    for j, block in enumerate(content if isinstance(content, list) else []):
        _block(block, f"{where}.content.{j}", role)
    if i:
        _answers(messages[i - 1], m, i)


def _answers(previous: dict[str, Any], m: dict[str, Any], i: int) -> None:
    """The tool results of message `i` answer exactly the calls of the message before it."""
    asked = _tool_use_ids(previous) if previous.get("role") == "assistant" else []
    content = m["content"] if isinstance(m["content"], list) else []
    answered = set()
    for j, block in enumerate(content):
        if block.get("type") == "tool_result":
            if block.get("tool_use_id") not in asked:
                refuse(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                       f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` "
                       "block in the previous message.")
            answered.add(block["tool_use_id"])
    missing = [call for call in asked if call not in answered]
    if missing:
        refuse(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
               f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in the "
               "next message.")


def _tool_use_ids(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    return [str(b.get("id")) for b in content if isinstance(b, dict) and b.get("type") == "tool_use"] \
        if isinstance(content, list) else []


def _block(block: Any, where: str, role: str) -> None:
    if not isinstance(block, dict):
        refuse(f"{where}: Input should be a valid dictionary")
    btype = block.get("type")
    if btype not in _BLOCKS:
        refuse(_tags(where, btype, _BLOCKS))
    if btype in _ASSISTANT_ONLY and role != "assistant":
        refuse(f"{where}: `{btype}` blocks are only allowed in assistant messages")
    if btype in _USER_ONLY and role != "user":
        refuse(f"{where}: `{btype}` blocks are only allowed in user messages")
    if btype == "text":
        text = block.get("text")
        if not isinstance(text, str):
            refuse(f"{where}.text.text: Field required" if text is None else
                   f"{where}.text.text: Input should be a valid string")
        if not text:
            refuse("messages: text content blocks must be non-empty")
    elif btype == "image":
        _image(block.get("source"), f"{where}.image.source")
    elif btype == "tool_use":
        for field in ("id", "name"):
            if not isinstance(block.get(field), str):
                refuse(f"{where}.tool_use.{field}: Field required")
        if not isinstance(block.get("input"), dict):
            refuse(f"{where}.tool_use.input: Input should be a valid dictionary")
    elif btype == "tool_result":
        _tool_result(block, f"{where}.tool_result")
    elif btype == "thinking":
        for field in ("thinking", "signature"):
            if not isinstance(block.get(field), str):
                refuse(f"{where}.thinking.{field}: Field required")


def _tool_result(block: dict[str, Any], where: str) -> None:
    if not isinstance(block.get("tool_use_id"), str):
        refuse(f"{where}.tool_use_id: Field required")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        refuse(f"{where}.content: Input should be a valid list")
    for k, part in enumerate(content):
        pw = f"{where}.content.{k}"
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype not in _RESULT_BLOCKS:
            refuse(_tags(pw, ptype, _RESULT_BLOCKS))
        if ptype == "text" and not isinstance(part.get("text"), str):
            refuse(f"{pw}.text.text: Field required")
        if ptype == "image":
            _image(part.get("source"), f"{pw}.image.source")


def _image(source: Any, where: str) -> None:
    if not isinstance(source, dict):
        refuse(f"{where}: Field required" if source is None else f"{where}: Input should be a valid dictionary")
    stype = source.get("type")
    if stype == "base64":
        if source.get("media_type") not in _MEDIA_TYPES:
            refuse(f"{where}.base64.media_type: Input should be {_either(_MEDIA_TYPES)}")
        if not isinstance(source.get("data"), str):
            refuse(f"{where}.base64.data: Field required")
    elif stype == "url":
        if not isinstance(source.get("url"), str):
            refuse(f"{where}.url.url: Field required")
    else:
        refuse(_tags(where, stype, ("base64", "url")))


def _tools(tools: Any) -> bool:
    if tools is None:
        return False
    if not isinstance(tools, list):
        refuse("tools: Input should be a valid list")
    for k, tool in enumerate(tools):
        where = f"tools.{k}"
        if not isinstance(tool, dict):
            refuse(f"{where}: Input should be a valid dictionary")
        ttype = tool.get("type")
        if ttype is not None and ttype != "custom":
            if isinstance(ttype, str) and _SERVER_TOOL.fullmatch(ttype):
                continue
            refuse(_tags(where, ttype, ("custom",)))
        where += ".custom"
        name = tool.get("name")
        if not isinstance(name, str):
            refuse(f"{where}.name: Field required")
        if not _TOOL_NAME.fullmatch(name):
            refuse(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if schema is None:
            refuse(f"{where}.input_schema: Field required")
        if not isinstance(schema, dict):
            refuse(f"{where}.input_schema: Input should be a valid dictionary")
        if schema.get("type") != "object":
            refuse(f"{where}.input_schema.type: Input should be 'object'")
    return bool(tools)


def _tool_choice(choice: Any, has_tools: bool) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        refuse("tool_choice: Input should be a valid dictionary")
    ctype = choice.get("type")
    if ctype not in _CHOICES:
        refuse(_tags("tool_choice", ctype, _CHOICES))
    if ctype == "tool" and not isinstance(choice.get("name"), str):
        refuse("tool_choice.tool.name: Field required")
    for key, value in choice.items():
        if key == "disable_parallel_tool_use" and ctype != "none":
            if not isinstance(value, bool):
                refuse(f"tool_choice.{ctype}.{key}: Input should be a valid boolean")
        elif key not in ("type", "name") or (key == "name" and ctype != "tool"):
            refuse(f"tool_choice.{ctype}.{key}: Extra inputs are not permitted")
    if not has_tools and ctype != "none":
        refuse("tool_choice may only be specified while providing tools.")


def _output_format(fmt: Any, where: str) -> None:
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        refuse(f"{where}: Input should be a valid dictionary")
    if fmt.get("type") != "json_schema":
        refuse(f"{where}.type: Input should be 'json_schema'")
    if not isinstance(fmt.get("schema"), dict):
        refuse(f"{where}.schema: Field required")
