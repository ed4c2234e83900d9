"""Requests checked against each API's rules: what the real API refuses, the emulator refuses with the
same 400 and error shape (so a router's translation bugs show up), and what it accepts passes as sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from failover.emulator import Emulator, steps
from failover.emulator.rules import check

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
USER = {"role": "user", "content": "Hello"}
OA_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
AN_TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
OA_CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
AN_USE = {"role": "assistant", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}


def an_result(tool_use_id: str = "toolu_1") -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "22C"}]}


_SHARED: list[httpx2.Client] = []


@pytest.fixture(scope="module", autouse=True)
def shared_http_client() -> Iterator[None]:
    _SHARED.append(httpx2.Client())
    yield
    _SHARED.pop().close()


@pytest.fixture(scope="module")
def emus() -> Iterator[dict[str, Emulator]]:
    with Emulator("openai") as o, Emulator("anthropic") as a:
        yield {"openai": o, "anthropic": a}


def send(emu: Emulator, **params: Any) -> Any:
    """One non-streamed request through the SDK; the body parameters go as given."""
    if emu.kind == "openai":
        params.setdefault("messages", [USER])
        client = openai.OpenAI(api_key="sk-test", base_url=emu.base_url, max_retries=0, http_client=_SHARED[0])
        return client.chat.completions.create(model="gpt-test", **params)
    params.setdefault("messages", [USER])
    params.setdefault("max_tokens", 100)
    aclient = anthropic.Anthropic(api_key="sk-ant", base_url=emu.base_url, max_retries=0, http_client=_SHARED[0])
    return aclient.messages.create(model="claude-test", **params)


# (name, request parameters, a piece of the API's message, OpenAI `param`)
OPENAI_REFUSALS: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("tool without tool_calls", {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "22C"}]},
     "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'", "messages.[1].role"),
    ("tool answering another id", {"messages": [USER, OA_CALL, {"role": "tool", "tool_call_id": "call_9",
                                                                "content": "22C"}]},
     "'tool_call_id' of 'call_9' not found in 'tool_calls' of previous message", "messages.[2].tool_call_id"),
    ("call left unanswered", {"messages": [USER, OA_CALL, USER]},
     "The following tool_call_ids did not have response messages: call_1", "messages.[1].role"),
    ("call at the end", {"messages": [USER, OA_CALL]}, "did not have response messages: call_1", "messages.[1].role"),
    ("arguments as an object", {"messages": [USER, {**OA_CALL, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
     "expected a string, but got an object instead", "messages[1].tool_calls[0].function.arguments"),
    ("relative image url", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "image.png"}}]}]},
     "Expected a valid URL", "messages[0].content[0].image_url.url"),
    ("data url of text", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}]},
     "unsupported MIME type 'text/plain'", "messages[0].content[0].image_url.url"),
    ("anthropic image block", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]},
     "Invalid value: 'image'. Supported values are", "messages[0].content[0].type"),
    ("image from the assistant", {"messages": [USER, {"role": "assistant", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}, USER]},
     "Image URLs are only allowed for messages with role 'user'", "messages[1].content[0]"),
    ("unknown role", {"messages": [{"role": "model", "content": "hi"}]},
     "Invalid value: 'model'. Supported values are", "messages[0].role"),
    ("empty messages", {"messages": []}, "empty array", "messages"),
    ("anthropic-shaped tool", {"tools": [AN_TOOL]}, "Missing required parameter: 'tools[0].type'", "tools[0].type"),
    ("tool name with spaces", {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
     "string does not match pattern", "tools[0].function.name"),
    ("tool_choice without tools", {"tool_choice": "required"}, "only allowed when 'tools' are specified",
     "tool_choice"),
    ("anthropic tool_choice", {"tools": [OA_TOOL], "tool_choice": {"type": "any"}},
     "Invalid value for 'tool_choice'", "tool_choice"),
    ("json_schema without name", {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "Missing required parameter: 'response_format.json_schema.name'", "response_format.json_schema.name"),
    ("unknown response_format", {"response_format": {"type": "xml"}}, "Invalid value: 'xml'",
     "response_format.type"),
    ("anthropic parameter", {"extra_body": {"stop_sequences": ["END"]}},
     "Unrecognized request argument supplied: stop_sequences", None),
    ("stream_options without stream", {"stream_options": {"include_usage": True}},
     "only allowed when 'stream' is enabled", "stream_options"),
]

ANTHROPIC_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("system role", {"messages": [{"role": "system", "content": "Be brief."}, USER]},
     'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter'),
    ("tool role", {"messages": [USER, {"role": "tool", "content": "x"}]},
     "messages.1.role: Input should be 'user' or 'assistant'"),
    ("result for no call", {"messages": [USER, {"role": "assistant", "content": "Let me see."}, an_result()]},
     "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1. Each `tool_result` "
     "block must have a corresponding `tool_use` block in the previous message."),
    ("result for another call", {"messages": [USER, AN_USE, an_result("toolu_9")]},
     "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9"),
    ("call left unanswered", {"messages": [USER, AN_USE, USER]},
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1"),
    ("openai image part", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]},
     "messages.0.content.0: Input tag 'image_url' found using 'type' does not match any of the expected tags"),
    ("bmp image", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG}}]}]},
     "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' "
     "or 'image/webp'"),
    ("image source kind", {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "link", "href": "x"}}]}]},
     "Input tag 'link' found using 'type' does not match any of the expected tags: 'base64', 'url'"),
    ("openai-shaped tool", {"tools": [OA_TOOL]},
     "tools.0: Input tag 'function' found using 'type' does not match any of the expected tags"),
    ("tool without schema", {"tools": [{"name": "get_weather"}]}, "tools.0.custom.input_schema: Field required"),
    ("tool schema not an object", {"tools": [{"name": "f", "input_schema": {"type": "string"}}]},
     "tools.0.custom.input_schema.type: Input should be 'object'"),
    ("openai tool_choice", {"tools": [AN_TOOL], "tool_choice": {"type": "required"}},
     "tool_choice: Input tag 'required' found using 'type' does not match any of the expected tags"),
    ("tool_choice without name", {"tools": [AN_TOOL], "tool_choice": {"type": "tool"}},
     "tool_choice.tool.name: Field required"),
    ("stop_sequences as a string", {"stop_sequences": "END"}, "stop_sequences: Input should be a valid list"),
    ("stop_sequences of numbers", {"stop_sequences": ["END", 7]}, "stop_sequences.1: Input should be a valid string"),
    ("openai parameter", {"extra_body": {"stream_options": {"include_usage": True}}},
     "stream_options: Extra inputs are not permitted"),
    ("max_tokens zero", {"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    ("thinking from the user", {"messages": [{"role": "user", "content": [
        {"type": "thinking", "thinking": "hm", "signature": "s"}]}]},
     "`thinking` blocks are only allowed in assistant messages"),
    ("arguments as a string", {"messages": [USER, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": '{"city": "Paris"}'}]}, an_result()]},
     "messages.1.content.0.tool_use.input: Input should be a valid dictionary"),
    ("empty content", {"messages": [{"role": "user", "content": ""}]},
     "all messages must have non-empty content except for the optional final assistant message"),
    ("empty text block", {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
     "text content blocks must be non-empty"),
    ("output format kind", {"output_config": {"format": {"type": "json_object"}}},
     "output_config.format.type: Input should be 'json_schema'"),
]


@pytest.mark.parametrize(("name", "params", "message", "param"), OPENAI_REFUSALS, ids=[r[0] for r in OPENAI_REFUSALS])
def test_openai_refuses(emus: dict[str, Emulator], name: str, params: dict[str, Any], message: str,
                        param: str | None) -> None:
    emu = emus["openai"]
    emu.reset()
    emu.script(steps.ok("scripted"))
    with pytest.raises(openai.BadRequestError) as info:
        send(emu, **params)
    e = info.value
    assert e.status_code == 400 and e.type == "invalid_request_error"
    assert message in e.body["message"] and e.body["param"] == param
    (record,) = emu.wait_for_requests(1)
    assert (record.step, record.status) == ("invalid_request", 400)
    assert send(emu).choices[0].message.content == "scripted"  # the refusal consumed no step


@pytest.mark.parametrize(("name", "params", "message"), ANTHROPIC_REFUSALS, ids=[r[0] for r in ANTHROPIC_REFUSALS])
def test_anthropic_refuses(emus: dict[str, Emulator], name: str, params: dict[str, Any], message: str) -> None:
    emu = emus["anthropic"]
    emu.reset()
    emu.script(steps.ok("scripted"))
    with pytest.raises(anthropic.BadRequestError) as info:
        send(emu, **params)
    e = info.value
    assert e.status_code == 400 and e.type == "invalid_request_error"
    assert message in e.body["error"]["message"] and e.body["type"] == "error"
    assert e.body["request_id"] == e.request_id
    (record,) = emu.wait_for_requests(1)
    assert (record.step, record.status) == ("invalid_request", 400)
    assert send(emu).content[0].text == "scripted"


def test_anthropic_requires_max_tokens(emus: dict[str, Emulator]) -> None:
    # The SDK's signature already insists on max_tokens: only a raw request can leave it out.
    r = httpx2.post(emus["anthropic"].base_url + "/v1/messages", headers={"x-api-key": "k"},
                    json={"model": "m", "messages": [USER]})
    assert r.status_code == 400
    assert r.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


def test_refusals_come_after_the_down_window_and_authentication(emus: dict[str, Emulator]) -> None:
    emu = emus["anthropic"]
    emu.reset()
    bad = {"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]}
    url = emu.base_url + "/v1/messages"
    assert httpx2.post(url, json=bad).status_code == 401  # no key: authentication first
    emu.down_for(5)
    assert httpx2.post(url, json=bad, headers={"x-api-key": "k"}).status_code == 503
    emu.reset()
    assert httpx2.post(url, json=bad, headers={"x-api-key": "k"}).status_code == 400


OPENAI_ACCEPTED: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these pictures? Answer in json."},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sun"}]},
    ],
    "tools": [OA_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {"type": "json_object"}, "temperature": 0.2, "stop": ["END"], "seed": 7,
}

ANTHROPIC_ACCEPTED: dict[str, Any] = {
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these pictures?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two tools.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sun"}],
             "is_error": False}]},
        {"role": "assistant", "content": "So"},
    ],
    "tools": [AN_TOOL, {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
}


def test_valid_requests_pass_exactly_as_sent(emus: dict[str, Emulator]) -> None:
    emus["openai"].reset()
    c = send(emus["openai"], **OPENAI_ACCEPTED)
    assert c.choices[0].message.content == "get_weather says: rain get_weather says: sun"
    (record,) = emus["openai"].wait_for_requests(1)
    assert record.step == "ok" and {k: record.body[k] for k in OPENAI_ACCEPTED} == OPENAI_ACCEPTED
    emus["anthropic"].reset()
    m = send(emus["anthropic"], **ANTHROPIC_ACCEPTED)
    assert m.stop_reason == "end_turn"
    (record,) = emus["anthropic"].wait_for_requests(1)
    assert record.step == "ok" and {k: record.body[k] for k in ANTHROPIC_ACCEPTED} == ANTHROPIC_ACCEPTED


def test_check_accepts_what_the_sdks_send_for_a_plain_stream() -> None:
    assert check("openai", {"model": "m", "messages": [USER], "stream": True,
                            "stream_options": {"include_usage": True}, "max_tokens": 5}) is None
    assert check("anthropic", {"model": "m", "messages": [USER, {"role": "assistant", "content": "Par"}],
                               "stream": True, "max_tokens": 5, "system": "x"}) is None
    refused = check("anthropic", {"model": "m", "messages": [USER], "max_tokens": True})
    assert refused is not None and refused.message == "max_tokens: Input should be a valid integer"
