"""OpenAI Chat Completions shapes (messages and call parameters) → a validated `Request`.

Everything the router cannot send faithfully is a `ValueError` here, naming the message index and
key (`messages[2].tool_calls[0].function.arguments: ...`), before any provider is contacted: it is
the caller's error, never a provider's failure, and no breaker hears of it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict, cast

from failover.request import (
    IMAGES,
    INSTRUCTION_ROLES,
    JSON_SCHEMA,
    ROLES,
    TOOLS,
    Image,
    Message,
    OutputFormat,
    Part,
    Request,
    Role,
    Text,
    Tool,
    ToolChoice,
    decode_image,
)
from failover.types import ToolCall


class CallParams(TypedDict, total=False):
    """The parameters of `stream`, `astream`, `complete` and `acomplete`, by their OpenAI names."""

    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: str | Sequence[str] | None
    seed: int | None
    user: str | None
    tools: Sequence[Mapping[str, Any]] | None
    tool_choice: str | Mapping[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: Mapping[str, Any] | None
    chain: str | None  # a named chain of the YAML (DESIGN §2); the router picks it
    extra: Mapping[str, Mapping[str, Any]] | None  # provider name or type -> SDK kwargs


PARAMS = tuple(CallParams.__annotations__)
_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "tool_calls", "refusal"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_DETAILS = ("auto", "low", "high")


def sendable(text: str, where: str) -> str:
    """`text`, or a `ValueError` for text no provider can be sent: JSON bodies are UTF-8, and a lone
    surrogate (say, from a badly decoded file) has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where} cannot be sent: {e.reason} at position {e.start} "
                         f"({text[e.start]!r}); UTF-8 text only") from None
    return text


def _string(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {_kind(value)}")
    if not empty and not value:
        raise ValueError(f"{where} must not be empty")
    return sendable(value, where)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {_kind(value)}")
    return value


def unknown_parameters(names: Iterable[str]) -> None:
    """A `ValueError` naming call parameters the router does not know (with the closest known one)."""
    for name in names:
        if name not in PARAMS:
            close = difflib.get_close_matches(name, PARAMS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown parameter {name!r}{hint}; the parameters are: {', '.join(PARAMS)}")


# ---- messages


def _parts(value: Any, where: str, role: Role) -> tuple[Part, ...]:
    parts: list[Part] = []
    for j, raw in enumerate(value):
        at = f"{where}[{j}]"
        part = _mapping(raw, at)
        kind = part.get("type")
        if kind == "text":
            parts.append(Text(_string(part.get("text"), f"{at}.text")))
        elif kind == "refusal" and role == "assistant":
            parts.append(Text(_string(part.get("refusal"), f"{at}.refusal")))
        elif kind == "image_url" and role == "user":
            parts.append(_image(_mapping(part.get("image_url"), f"{at}.image_url"), f"{at}.image_url"))
        elif kind == "image_url":
            raise ValueError(f"{at}: images go in user messages, not in a {role} message")
        else:
            raise ValueError(f"{at}.type must be 'text' or 'image_url' (a user message's image), got {kind!r}")
    return tuple(parts)


def _image(spec: Mapping[str, Any], where: str) -> Image:
    url = _string(spec.get("url"), f"{where}.url", empty=False)
    detail = spec.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise ValueError(f"{where}.detail must be one of {', '.join(_DETAILS)}, got {detail!r}")
    image = Image(url, detail)
    if url.startswith(("https://", "http://")):
        return image
    if not url.startswith("data:"):
        raise ValueError(f"{where}.url must be an http(s):// URL or a data:image/...;base64, URL")
    try:
        media_type, _ = decode_image(image)
    except ValueError as e:
        raise ValueError(f"{where}.url: {e}") from None
    if media_type not in _IMAGE_TYPES:
        raise ValueError(f"{where}.url: the image type must be one of {', '.join(_IMAGE_TYPES)}, got {media_type!r}")
    return image


def _tool_calls(value: Any, where: str, seen: set[str]) -> tuple[ToolCall, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{where} must be a non-empty list of tool calls")
    calls: list[ToolCall] = []
    for j, raw in enumerate(value):
        at = f"{where}[{j}]"
        call = _mapping(raw, at)
        if call.get("type", "function") != "function":
            raise ValueError(f"{at}.type must be 'function', got {call.get('type')!r}")
        call_id = _string(call.get("id"), f"{at}.id", empty=False)
        if call_id in seen:
            raise ValueError(f"{at}.id {call_id!r} is used by an earlier tool call")
        function = _mapping(call.get("function"), f"{at}.function")
        name = _string(function.get("name"), f"{at}.function.name", empty=False)
        arguments = _string(function.get("arguments", "{}"), f"{at}.function.arguments")
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            raise ValueError(f"{at}.function.arguments is not valid JSON: {arguments[:60]!r}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"{at}.function.arguments must be a JSON object, got {type(parsed).__name__}")
        seen.add(call_id)
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def _message(i: int, raw: Any, calls: set[str], answered: set[str]) -> Message:
    where = f"messages[{i}]"
    m = _mapping(raw, where)
    role = m.get("role")
    if role not in ROLES:
        raise ValueError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
    role = cast(Role, role)
    # Keys an SDK object's dump carries empty (`audio: None`, `annotations: []`) mean nothing; any
    # other key would be dropped silently, so it is refused.
    extra = sorted(k for k, v in m.items() if k not in _KEYS[role] and v not in (None, [], {}))
    if extra:
        raise ValueError(f"{where} ({role}) has keys failover cannot send: {extra}; "
                         f"a {role} message takes {', '.join(sorted(_KEYS[role]))}")
    name = m.get("name")
    if name is not None:
        name = _string(name, f"{where}.name", empty=False)
    content: Any = m.get("content")
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id = None
    if role == "assistant":
        if m.get("tool_calls"):
            tool_calls = _tool_calls(m["tool_calls"], f"{where}.tool_calls", calls)
        refusal = m.get("refusal")
        if content is None and isinstance(refusal, str):
            content = refusal
        if content is None and not tool_calls:
            raise ValueError(f"{where}.content must be a string or a list of parts when there are no tool_calls")
    elif role == "tool":
        tool_call_id = _string(m.get("tool_call_id"), f"{where}.tool_call_id", empty=False)
        if tool_call_id not in calls:
            raise ValueError(f"{where}.tool_call_id {tool_call_id!r} answers no earlier tool call")
        if tool_call_id in answered:
            raise ValueError(f"{where}.tool_call_id {tool_call_id!r} was already answered")
        answered.add(tool_call_id)
    if content is None:
        content = ""
    if isinstance(content, str):
        sendable(content, f"{where}.content")
    elif isinstance(content, list | tuple):
        content = _parts(content, f"{where}.content", role)
    else:
        raise ValueError(f"{where}.content must be a string or a list of parts, got {_kind(content)}")
    return Message(role, content, tool_calls, tool_call_id, name)


# ---- parameters


def _tools(value: Any) -> tuple[Tool, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"tools must be a list of function tools, got {_kind(value)}")
    tools: list[Tool] = []
    for i, raw in enumerate(value):
        where = f"tools[{i}]"
        spec = _mapping(raw, where)
        if spec.get("type", "function") != "function":
            raise ValueError(f"{where}.type must be 'function' (the function-tool shape), got {spec.get('type')!r}")
        function = _mapping(spec.get("function"), f"{where}.function")
        name = _string(function.get("name"), f"{where}.function.name", empty=False)
        if not _TOOL_NAME.fullmatch(name):
            raise ValueError(f"{where}.function.name must be 1-64 letters, digits, '_' or '-', got {name!r}")
        if any(t.name == name for t in tools):
            raise ValueError(f"{where}.function.name {name!r} names an earlier tool too")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        parameters = _mapping(parameters, f"{where}.function.parameters")
        if parameters.get("type", "object") != "object":
            raise ValueError(f"{where}.function.parameters must be a JSON schema of an object")
        description = function.get("description")
        if description is not None:
            description = _string(description, f"{where}.function.description")
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise ValueError(f"{where}.function.strict must be true or false")
        tools.append(Tool(name, parameters, description, strict))
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[ToolChoice | None, str | None]:
    if value is None:
        return None, None
    if value in ("auto", "none", "required"):
        if value == "required" and not tools:
            raise ValueError("tool_choice 'required' needs tools")
        return cast(ToolChoice, value), None
    spec = _mapping(value, "tool_choice") if not isinstance(value, str) else None
    if spec is None or spec.get("type") != "function":
        raise ValueError("tool_choice must be 'auto', 'none', 'required' or "
                         "{'type': 'function', 'function': {'name': ...}}")
    name = _string(_mapping(spec.get("function"), "tool_choice.function").get("name"), "tool_choice.function.name")
    if not any(t.name == name for t in tools):
        raise ValueError(f"tool_choice names {name!r}, which is not one of the tools")
    return "required", name


def _response_format(value: Any) -> OutputFormat | None:
    if value is None:
        return None
    spec = _mapping(value, "response_format")
    kind = spec.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat("json_object")
    if kind != "json_schema":
        raise ValueError(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")
    inner = _mapping(spec.get("json_schema"), "response_format.json_schema")
    schema = _mapping(inner.get("schema", {"type": "object"}), "response_format.json_schema.schema")
    name = inner.get("name", "answer")
    strict = inner.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ValueError("response_format.json_schema.strict must be true or false")
    return OutputFormat("json_schema", schema, _string(name, "response_format.json_schema.name", empty=False), strict)


def _number(name: str, value: Any, upper: float) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= upper):
        raise ValueError(f"{name} must be a number between 0 and {upper:g}, got {value!r}")
    return value


def _stops(stop: Any) -> tuple[str, ...] | None:
    if stop is None:
        return None
    values = (stop,) if isinstance(stop, str) else stop
    if not isinstance(values, list | tuple) or not all(isinstance(s, str) for s in values):
        raise ValueError("stop must be a string or a list of strings")
    return tuple(sendable(s, f"stop[{i}]") for i, s in enumerate(values))


def _extra(value: Any) -> Mapping[str, Mapping[str, Any]]:
    if value is None:
        return {}
    extra = _mapping(value, "extra")
    for key, kwargs in extra.items():
        _mapping(kwargs, f"extra[{key!r}]")
    return {str(k): dict(v) for k, v in extra.items()}


def build_request(messages: Iterable[Mapping[str, Any]], **params: Any) -> Request:
    """Validate OpenAI-style messages and call parameters; a `ValueError` names what is wrong."""
    unknown_parameters(params)
    if isinstance(messages, str | bytes) or not isinstance(messages, Iterable):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    calls: set[str] = set()
    answered: set[str] = set()
    out = tuple(_message(i, m, calls, answered) for i, m in enumerate(messages))
    if not any(m.role == "user" for m in out):
        raise ValueError("messages must contain at least one user message")
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    user = params.get("user")
    if user is not None:
        user = _string(user, "user")
    parallel = params.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ValueError("parallel_tool_calls must be true or false")
    tools = _tools(params["tools"]) if params.get("tools") is not None else ()
    choice, choice_name = _tool_choice(params.get("tool_choice"), tools)
    response_format = _response_format(params.get("response_format"))
    needs = set()
    if tools or any(m.tool_calls or m.role == "tool" for m in out):
        needs.add(TOOLS)
    if any(isinstance(p, Image) for m in out if not isinstance(m.content, str) for p in m.content):
        needs.add(IMAGES)
    if response_format is not None:
        needs.add(JSON_SCHEMA)
    return Request(
        messages=out, max_tokens=max_tokens, temperature=_number("temperature", params.get("temperature"), 2.0),
        top_p=_number("top_p", params.get("top_p"), 1.0), stop=_stops(params.get("stop")), seed=seed, user=user,
        tools=tools, tool_choice=choice, tool_choice_name=choice_name, parallel_tool_calls=parallel,
        response_format=response_format, extra=_extra(params.get("extra")), needs=frozenset(needs))


__all__ = ["INSTRUCTION_ROLES", "CallParams", "build_request", "sendable", "unknown_parameters"]
