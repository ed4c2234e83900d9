"""OpenAI Chat Completions' rules for a request (see `rules.py`)."""

from __future__ import annotations

import re
from typing import Any

from failover.emulator.wire import refuse

# The body parameters of the installed SDK's `create()`.
_OPENAI_PARAMS = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs", "max_completion_tokens",
    "max_tokens", "messages", "metadata", "modalities", "model", "moderation", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
    "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options"})
_OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
_OPENAI_ALL_PARTS = ("text", "image_url", "input_audio", "refusal", "audio", "file")
_OPENAI_PARTS = {"user": ("text", "image_url", "input_audio", "file"), "assistant": ("text", "refusal")}
_DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+\S*")
_OPENAI_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]+")


def _quoted(values: tuple[str, ...]) -> str:
    """`'a', 'b', and 'c'`: how the API lists the values it accepts."""
    items = [f"'{v}'" for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", and " + items[-1]


def _a(value: Any) -> str:
    """OpenAI's words for a JSON type."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "an object"}
    return names.get(type(value), "an object")


def check_openai(body: dict[str, Any]) -> None:
    """Raise `Refused` with the API's 400 for this request body, if the API would refuse it."""
    for key in body:
        if key not in _OPENAI_PARAMS:
            refuse(f"Unrecognized request argument supplied: {key}")
    if "model" not in body:
        refuse("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list):
        refuse("Missing required parameter: 'messages'." if messages is None else
               f"Invalid type for 'messages': expected an array, but got {_a(messages)} instead.", "messages",
               "missing_required_parameter" if messages is None else "invalid_type")
    if not messages:
        refuse("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array "
               "instead.", "messages", "empty_array")
    _openai_messages(messages)
    has_tools = _openai_tools(body.get("tools"))
    _openai_tool_choice(body.get("tool_choice"), has_tools, body.get("tools"))
    _openai_response_format(body.get("response_format"))
    if body.get("stream_options") is not None and body.get("stream") is not True:
        refuse("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")


def _openai_messages(messages: list[Any]) -> None:
    calls: list[str] | None = None  # the ids of the assistant tool_calls the current run of tool messages answers
    waiting: list[str] = []  # those not answered yet
    asked_at = 0
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            refuse(f"Invalid type for '{where}': expected an object, but got {_a(m)} instead.", where, "invalid_type")
        role = m.get("role")
        if role not in _OPENAI_ROLES:
            refuse(f"Invalid value: {role!r}. Supported values are: {_quoted(_OPENAI_ROLES)}.", f"{where}.role",
                   "invalid_value")
        if role == "tool":
            if calls is None:
                refuse("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                       "with 'tool_calls'.", f"messages.[{i}].role")
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                refuse(f"Missing required parameter: '{where}.tool_call_id'.", f"{where}.tool_call_id",
                       "missing_required_parameter")
            if call_id not in calls:
                refuse(f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' of previous "
                       "message.", f"messages.[{i}].tool_call_id")
            if call_id in waiting:
                waiting.remove(call_id)
        else:
            _openai_unanswered(waiting, asked_at)
            calls = None
        _openai_content(m, role, where)
        if role == "assistant" and m.get("tool_calls") is not None:
            calls, asked_at = _openai_calls(m["tool_calls"], where), i
            waiting = list(calls)
    _openai_unanswered(waiting, asked_at)


def _openai_unanswered(waiting: list[str], asked_at: int) -> None:
    if waiting:
        refuse("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
               f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(waiting)}",
               f"messages.[{asked_at}].role")


def _openai_content(m: dict[str, Any], role: str, where: str) -> None:
    content = m.get("content")
    if content is None:
        if role == "assistant" and (m.get("tool_calls") or m.get("refusal") or m.get("function_call")):
            return
        refuse("Invalid value for 'content': expected a string, got null.", f"{where}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        refuse(f"Invalid type for '{where}.content': expected one of a string or array of objects, but got "
               f"{_a(content)} instead.", f"{where}.content", "invalid_type")
    allowed = _OPENAI_PARTS.get(role, ("text",))
    for j, part in enumerate(content):
        pw = f"{where}.content[{j}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or ptype not in _OPENAI_ALL_PARTS:
            refuse(f"Invalid value: {ptype!r}. Supported values are: {_quoted(_OPENAI_ALL_PARTS)}.", f"{pw}.type",
                   "invalid_value")
        if ptype not in allowed:
            if ptype == "image_url":
                refuse(f"Image URLs are only allowed for messages with role 'user', but this message with role "
                       f"'{role}' contains an image URL.", pw, "invalid_value")
            refuse(f"Invalid value: {ptype!r}. Supported values are: {_quoted(allowed)}.", f"{pw}.type",
                   "invalid_value")
        if ptype in ("text", "refusal") and not isinstance(part.get(ptype), str):
            refuse(f"Missing required parameter: '{pw}.{ptype}'.", f"{pw}.{ptype}", "missing_required_parameter")
        if ptype == "image_url":
            _openai_image(part.get("image_url"), f"{pw}.image_url")


def _openai_image(image: Any, where: str) -> None:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        refuse(f"Missing required parameter: '{where}.url'.", f"{where}.url", "missing_required_parameter")
    if url.startswith("data:"):
        data = _DATA_URL.match(url)
        mime = data.group(1) if data else ""
        if data is None or not mime.startswith("image/") or ";base64" not in data.group(2):
            refuse(f"Invalid '{where}.url'. Expected a base64-encoded data URL with an image MIME type (e.g. "
                   f"'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got unsupported MIME type '{mime}'.",
                   f"{where}.url", "invalid_image_format")
    elif not _HTTP_URL.fullmatch(url):
        refuse(f"Invalid '{where}.url'. Expected a valid URL, but got a value with an invalid format.",
               f"{where}.url", "invalid_value")


def _openai_calls(calls: Any, where: str) -> list[str]:
    if not isinstance(calls, list):
        refuse(f"Invalid type for '{where}.tool_calls': expected an array, but got {_a(calls)} instead.",
               f"{where}.tool_calls", "invalid_type")
    ids = []
    for k, call in enumerate(calls):
        cw = f"{where}.tool_calls[{k}]"
        if not isinstance(call, dict):
            refuse(f"Invalid type for '{cw}': expected an object, but got {_a(call)} instead.", cw, "invalid_type")
        if call.get("type", "function") != "function":
            refuse(f"Invalid value: {call.get('type')!r}. Supported values are: 'function'.", f"{cw}.type",
                   "invalid_value")
        fn = call.get("function")
        for name, value in (("id", call.get("id")), ("function", fn)):
            if value is None:
                refuse(f"Missing required parameter: '{cw}.{name}'.", f"{cw}.{name}", "missing_required_parameter")
        fn = fn if isinstance(fn, dict) else {}
        if not isinstance(fn.get("name"), str):
            refuse(f"Missing required parameter: '{cw}.function.name'.", f"{cw}.function.name",
                   "missing_required_parameter")
        args = fn.get("arguments")
        if not isinstance(args, str):
            refuse(f"Invalid type for '{cw}.function.arguments': expected a string, but got {_a(args)} instead.",
                   f"{cw}.function.arguments", "invalid_type")
        ids.append(str(call["id"]))
    return ids


def _openai_tools(tools: Any) -> bool:
    if tools is None:
        return False
    if not isinstance(tools, list):
        refuse(f"Invalid type for 'tools': expected an array, but got {_a(tools)} instead.", "tools", "invalid_type")
    if not tools:
        refuse("Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array "
               "instead.", "tools", "empty_array")
    for k, tool in enumerate(tools):
        tw = f"tools[{k}]"
        if not isinstance(tool, dict):
            refuse(f"Invalid type for '{tw}': expected an object, but got {_a(tool)} instead.", tw, "invalid_type")
        if tool.get("type") != "function":
            refuse(f"Missing required parameter: '{tw}.type'." if "type" not in tool else
                   f"Invalid value: {tool['type']!r}. Supported values are: 'function'.", f"{tw}.type",
                   "missing_required_parameter" if "type" not in tool else "invalid_value")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            refuse(f"Missing required parameter: '{tw}.function'.", f"{tw}.function", "missing_required_parameter")
        name = fn.get("name")
        if not isinstance(name, str):
            refuse(f"Missing required parameter: '{tw}.function.name'.", f"{tw}.function.name",
                   "missing_required_parameter")
        if not _OPENAI_TOOL_NAME.fullmatch(name):
            refuse(f"Invalid '{tw}.function.name': string does not match pattern. Expected a string that matches "
                   "the pattern '^[a-zA-Z0-9_-]+$'.", f"{tw}.function.name", "invalid_value")
        if len(name) > 64:
            refuse(f"Invalid '{tw}.function.name': string too long. Expected a string with maximum length 64, but "
                   f"got a string with length {len(name)} instead.", f"{tw}.function.name",
                   "string_above_max_length")
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            refuse(f"Invalid type for '{tw}.function.parameters': expected an object, but got "
                   f"{_a(fn['parameters'])} instead.", f"{tw}.function.parameters", "invalid_type")
    return True


def _openai_tool_choice(choice: Any, has_tools: bool, tools: Any) -> None:
    if choice is None:
        return
    if not has_tools:
        refuse("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
               "tool_choice")
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            refuse(f"Invalid value: {choice!r}. Supported values are: 'none', 'auto', and 'required'.",
                   "tool_choice", "invalid_value")
        return
    fn = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(fn, dict) \
            or not isinstance(fn.get("name"), str):
        refuse("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
               "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice", "invalid_value")
    names = [t["function"]["name"] for t in tools]
    if fn["name"] not in names:
        refuse(f"Invalid value for 'tool_choice': function '{fn['name']}' is not one of the 'tools'.", "tool_choice",
               "invalid_value")


def _openai_response_format(fmt: Any) -> None:
    if fmt is None:
        return
    kinds = ("text", "json_object", "json_schema")
    ftype = fmt.get("type") if isinstance(fmt, dict) else None
    if not isinstance(fmt, dict) or ftype not in kinds:
        refuse(f"Invalid value: {ftype!r}. Supported values are: {_quoted(kinds)}.", "response_format.type",
               "invalid_value")
    if ftype == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            refuse("Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema",
                   "missing_required_parameter")
        if not isinstance(spec.get("name"), str):
            refuse("Missing required parameter: 'response_format.json_schema.name'.",
                   "response_format.json_schema.name", "missing_required_parameter")
        if "schema" in spec and not isinstance(spec["schema"], dict):
            refuse(f"Invalid type for 'response_format.json_schema.schema': expected an object, but got "
                   f"{_a(spec['schema'])} instead.", "response_format.json_schema.schema", "invalid_type")
