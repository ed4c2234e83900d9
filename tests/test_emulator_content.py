"""The emulator's answers beyond plain text, through the real SDKs: tool calls (explicit and automatic),
tool results, structured output, thinking, refusals and content no client knows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import httpx2
import openai
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.emulator import Emulator, steps
from failover.emulator.content import SIGNATURE
from failover.emulator.frames import UNKNOWN
from failover.emulator.schema import instance
from failover.emulator.wire import split_chunks, split_fragments

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["celsius", "fahrenheit"]},
        "detailed": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}, "note": {"type": "string"}},
                  "required": ["lat"]},
        "optional": {"type": "string"},
    },
    "required": ["city", "days", "unit", "detailed", "tags", "where"],
}
WEATHER_ARGS = {"city": "Paris", "days": 1, "unit": "celsius", "detailed": True, "tags": [], "where": {"lat": 1}}
OTHER_SCHEMA = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}

_SHARED: list[httpx2.Client] = []


@pytest.fixture(scope="module", autouse=True)
def shared_http_client() -> Iterator[None]:
    _SHARED.append(httpx2.Client())
    yield
    _SHARED.pop().close()


@pytest.fixture
def emu(kind: str) -> Iterator[Emulator]:
    with Emulator(kind) as e:
        yield e


def oa(emu: Emulator) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=emu.base_url, max_retries=0, timeout=5, http_client=_SHARED[0])


def an(emu: Emulator) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=emu.base_url, max_retries=0, timeout=5,
                               http_client=_SHARED[0])


def tools(kind: str, *named: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    named = named or (("get_weather", WEATHER_SCHEMA),)
    if kind == "openai":
        return [{"type": "function", "function": {"name": n, "description": "d", "parameters": s}} for n, s in named]
    return [{"name": n, "description": "d", "input_schema": s} for n, s in named]


def final(emu: Emulator, messages: list[dict[str, Any]] | None = None, **params: Any) -> Any:
    """The streamed answer as each SDK's stream helper assembles it (its own check of our frames)."""
    messages = messages or USER
    if emu.kind == "openai":
        with oa(emu).chat.completions.stream(model="gpt-test", messages=messages, **params) as s:
            for _ in s:
                pass
            return s.get_final_completion()
    with an(emu).messages.stream(model="claude-test", max_tokens=1024, messages=messages, **params) as s2:
        for _ in s2:
            pass
        return s2.get_final_message()


def raw_events(emu: Emulator, messages: list[dict[str, Any]] | None = None, **params: Any) -> list[Any]:
    """Every chunk / event of a streamed answer, as the SDK's plain stream yields them."""
    messages = messages or USER
    if emu.kind == "openai":
        with oa(emu).chat.completions.create(model="gpt-test", messages=messages, stream=True, **params) as s:
            return list(s)
    with an(emu).messages.create(model="claude-test", max_tokens=1024, messages=messages, stream=True,
                                 **params) as s2:
        return list(s2)


def calls_of(emu: Emulator, message: Any) -> list[tuple[str, str, Any]]:
    """(id, name, arguments) of each call in a final message, arguments parsed."""
    if emu.kind == "openai":
        return [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    return [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]


# ---------------------------------------------------------------- automatic tool calls


def test_automatic_tool_call_streamed(emu: Emulator) -> None:
    done = final(emu, tools=tools(emu.kind))
    message = done.choices[0].message if emu.kind == "openai" else done
    ((call_id, name, args),) = calls_of(emu, message)
    assert (name, args) == ("get_weather", WEATHER_ARGS)
    if emu.kind == "openai":
        assert call_id.startswith("call_") and done.choices[0].finish_reason == "tool_calls"
        assert message.content is None
    else:
        assert call_id.startswith("toolu_") and done.stop_reason == "tool_use"
    assert emu.wait_for_requests(1)[0].chunks_sent == len(split_fragments(json.dumps(WEATHER_ARGS)))


def test_tool_call_frames_openai() -> None:
    with Emulator("openai") as emu:
        chunks = raw_events(emu, tools=tools("openai"))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    first, rest = deltas[0], deltas[1:]
    assert (first.index, first.type, first.function.name, first.function.arguments) == (0, "function",
                                                                                        "get_weather", "")
    assert first.id is not None and first.id.startswith("call_")
    assert len(rest) > 3 and all(d.id is None and d.function.name is None and d.index == 0 for d in rest)
    assert json.loads("".join(d.function.arguments for d in rest)) == WEATHER_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_call_frames_anthropic() -> None:
    with Emulator("anthropic") as emu:
        events = raw_events(emu, tools=tools("anthropic"))
    types = [e.type for e in events]
    start = next(e for e in events if e.type == "content_block_start")
    assert (start.content_block.type, start.content_block.name, start.content_block.input) == ("tool_use",
                                                                                                "get_weather", {})
    parts = [e.delta.partial_json for e in events if e.type == "content_block_delta"]
    assert len(parts) > 3 and all(e.delta.type == "input_json_delta" for e in events if e.type == "content_block_delta")
    assert json.loads("".join(parts)) == WEATHER_ARGS
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "tool_use"


def test_automatic_tool_call_async(emu: Emulator) -> None:
    async def go() -> list[tuple[str, str, Any]]:
        if emu.kind == "openai":
            client = openai.AsyncOpenAI(api_key="k", base_url=emu.base_url, max_retries=0)
            async with client, client.chat.completions.stream(model="m", messages=USER, tools=tools("openai")) as s:
                async for _ in s:
                    pass
                return calls_of(emu, (await s.get_final_completion()).choices[0].message)
        aclient = anthropic.AsyncAnthropic(api_key="k", base_url=emu.base_url, max_retries=0)
        async with aclient, aclient.messages.stream(model="m", max_tokens=100, messages=USER,
                                                    tools=tools("anthropic")) as s2:
            async for _ in s2:
                pass
            return calls_of(emu, await s2.get_final_message())

    ((_, name, args),) = asyncio.run(go())
    assert (name, args) == ("get_weather", WEATHER_ARGS)


def test_automatic_tool_call_not_streamed(emu: Emulator) -> None:
    if emu.kind == "openai":
        c = oa(emu).chat.completions.create(model="m", messages=USER, tools=tools("openai"))
        message, finish = c.choices[0].message, c.choices[0].finish_reason
    else:
        message = an(emu).messages.create(model="m", max_tokens=100, messages=USER, tools=tools("anthropic"))
        finish = message.stop_reason
    ((_, name, args),) = calls_of(emu, message)
    assert (name, args) == ("get_weather", WEATHER_ARGS)
    assert finish == ("tool_calls" if emu.kind == "openai" else "tool_use")


def test_tool_choice_picks_the_named_tool_or_none(emu: Emulator) -> None:
    both = tools(emu.kind, ("get_weather", WEATHER_SCHEMA), ("search", OTHER_SCHEMA))
    named = ({"type": "function", "function": {"name": "search"}} if emu.kind == "openai"
             else {"type": "tool", "name": "search"})
    done = final(emu, tools=both, tool_choice=named)
    message = done.choices[0].message if emu.kind == "openai" else done
    assert [(n, a) for _, n, a in calls_of(emu, message)] == [("search", {"query": "example"})]
    none: Any = "none" if emu.kind == "openai" else {"type": "none"}
    done = final(emu, tools=both, tool_choice=none)
    message = done.choices[0].message if emu.kind == "openai" else done
    assert calls_of(emu, message) == []
    text = message.content if emu.kind == "openai" else message.content[0].text
    assert text == emu.answer


def test_tool_results_are_quoted_in_an_agent_loop(emu: Emulator) -> None:
    """Call, run the tool, send the result back: the answer quotes it, so the result provably arrived."""
    if emu.kind == "openai":
        first = oa(emu).chat.completions.create(model="m", messages=USER, tools=tools("openai"))
        call = first.choices[0].message.tool_calls[0]
        messages = [*USER, first.choices[0].message.model_dump(exclude_none=True),
                    {"role": "tool", "tool_call_id": call.id, "content": "22 degrees and sunny"}]
        second = oa(emu).chat.completions.create(model="m", messages=messages, tools=tools("openai"))
        answer = second.choices[0].message.content
    else:
        first2 = an(emu).messages.create(model="m", max_tokens=100, messages=USER, tools=tools("anthropic"))
        use = first2.content[0]
        messages = [*USER, {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                  "content": [{"type": "text", "text": "22 degrees and sunny"}]}]}]
        second2 = an(emu).messages.create(model="m", max_tokens=100, messages=messages, tools=tools("anthropic"))
        answer = second2.content[0].text
    assert answer == "get_weather says: 22 degrees and sunny"
    assert emu.wait_for_requests(2)[1].body["messages"] == messages  # the exact request the SDK sent


# ---------------------------------------------------------------- explicit tool calls


def test_explicit_parallel_calls_with_text(emu: Emulator) -> None:
    emu.script(steps.tool_calls([("get_weather", {"city": "Rome"}), ("search", '{"query": "rain"}')],
                                text="Let me check. "))
    done = final(emu)
    message = done.choices[0].message if emu.kind == "openai" else done
    assert [(n, a) for _, n, a in calls_of(emu, message)] == [("get_weather", {"city": "Rome"}),
                                                              ("search", {"query": "rain"})]
    ids = [i for i, _, _ in calls_of(emu, message)]
    assert len(set(ids)) == 2
    if emu.kind == "openai":
        assert message.content == "Let me check. "
        assert [c.function.arguments for c in message.tool_calls] == ['{"city": "Rome"}', '{"query": "rain"}']
    else:
        assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
        assert message.content[0].text == "Let me check. "


def test_explicit_parallel_call_indexes_openai() -> None:
    with Emulator("openai") as emu:
        emu.script(steps.tool_calls([("a", {"x": 1}), ("b", {"y": 2})]))
        chunks = raw_events(emu)
    heads = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls
             and c.choices[0].delta.tool_calls[0].id]
    assert [(h.index, h.function.name) for h in heads] == [(0, "a"), (1, "b")]


@pytest.mark.parametrize("how", ["tool_calls_after", "cut_in_auto_mode"])
def test_cut_lands_mid_arguments(emu: Emulator, how: str) -> None:
    args = {"query": "a long query string that spans several fragments"}
    if how == "tool_calls_after":
        emu.script(steps.tool_calls([("search", args)], text="One two ", after=4))
        params: dict[str, Any] = {}
        sent_args = "".join(split_fragments(json.dumps(args))[:2])  # 2 text chunks, then 2 fragments
    else:
        emu.script(steps.cut(after=2))
        params = {"tools": tools(emu.kind)}
        sent_args = "".join(split_fragments(json.dumps(WEATHER_ARGS))[:2])
    got: list[str] = []
    with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):
        for event in raw_events_iter(emu, **params):
            got.append(event)
    assert "".join(got) == sent_args
    with pytest.raises(ValueError):
        json.loads(sent_args)
    r = emu.wait_for_requests(1)[0]
    assert r.chunks_sent == (4 if how == "tool_calls_after" else 2) and not r.disconnected


def raw_events_iter(emu: Emulator, **params: Any) -> Iterator[str]:
    """The argument fragments of a streamed answer, as they arrive."""
    if emu.kind == "openai":
        with oa(emu).chat.completions.create(model="m", messages=USER, stream=True, **params) as s:
            for c in s:
                if c.choices and c.choices[0].delta.tool_calls:
                    yield c.choices[0].delta.tool_calls[0].function.arguments or ""
    else:
        with an(emu).messages.create(model="m", max_tokens=100, messages=USER, stream=True, **params) as s2:
            for e in s2:
                if e.type == "content_block_delta" and e.delta.type == "input_json_delta":
                    yield e.delta.partial_json


def test_max_tokens_cuts_arguments_with_length(emu: Emulator) -> None:
    emu.script(steps.tool_calls([("search", {"query": "several fragments of arguments here"})]))
    key = "max_completion_tokens" if emu.kind == "openai" else "max_tokens"
    events = raw_events(emu, **{key: 2}) if emu.kind == "openai" else \
        list(an(emu).messages.create(model="m", max_tokens=2, messages=USER, stream=True))
    if emu.kind == "openai":
        assert events[-1].choices[0].finish_reason == "length"
    else:
        assert next(e for e in events if e.type == "message_delta").delta.stop_reason == "max_tokens"


def test_tool_calls_rejects_bad_calls() -> None:
    with pytest.raises(ValueError, match="at least one"):
        steps.tool_calls([])
    with pytest.raises(ValueError, match=r"tool_calls\[1\]"):
        steps.tool_calls([("ok", {}), ("bad", 5)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="after"):
        steps.tool_calls(after=-1)


# ---------------------------------------------------------------- structured output


class Inner(pydantic.BaseModel):
    lat: float
    label: str


class Forecast(pydantic.BaseModel):
    city: str
    days: int
    tags: list[str]
    where: Inner
    note: str | None


EXPECTED = Forecast(city="Paris", days=1, tags=[], where=Inner(lat=1, label="example"), note="example")


def test_structured_output_parsed_by_the_sdk_helpers(emu: Emulator) -> None:
    if emu.kind == "openai":
        c = oa(emu).chat.completions.parse(model="m", messages=USER, response_format=Forecast)
        assert c.choices[0].message.parsed == EXPECTED
        with oa(emu).chat.completions.stream(model="m", messages=USER, response_format=Forecast) as s:
            for _ in s:
                pass
            assert s.get_final_completion().choices[0].message.parsed == EXPECTED
    else:
        m = an(emu).messages.parse(model="m", max_tokens=500, messages=USER, output_format=Forecast)
        assert m.parsed_output == EXPECTED
        with an(emu).messages.stream(model="m", max_tokens=500, messages=USER, output_format=Forecast) as s2:
            for _ in s2:
                pass
            assert s2.get_final_message().parsed_output == EXPECTED
    request = emu.wait_for_requests(1)[0].body
    if emu.kind == "openai":
        assert request["response_format"]["type"] == "json_schema"
    else:
        assert request["output_config"]["format"]["type"] == "json_schema"


def test_structured_output_streams_in_several_chunks(emu: Emulator) -> None:
    schema = Forecast.model_json_schema()
    if emu.kind == "openai":
        params: dict[str, Any] = {"response_format": {"type": "json_schema",
                                                      "json_schema": {"name": "forecast", "schema": schema}}}
        texts = [c.choices[0].delta.content for c in raw_events(emu, **params) if c.choices
                 and c.choices[0].delta.content]
    else:
        params = {"output_config": {"format": {"type": "json_schema", "schema": schema}}}
        texts = [e.delta.text for e in raw_events(emu, **params) if e.type == "content_block_delta"]
    assert len(texts) > 3
    assert Forecast.model_validate_json("".join(texts)) == EXPECTED


def test_json_object_mode_openai() -> None:
    with Emulator("openai", answer="a short answer") as emu:
        messages = [{"role": "user", "content": "Answer in JSON."}]
        c = oa(emu).chat.completions.create(model="m", messages=messages, response_format={"type": "json_object"})
    assert json.loads(c.choices[0].message.content or "") == {"answer": "a short answer"}


# ---------------------------------------------------------------- thinking, refusals, unknown content


def test_thinking_then_text_streamed(emu: Emulator) -> None:
    emu.script(steps.thinking(thinking="Let me think about it."))
    if emu.kind == "openai":
        kinds, reasoning, text = [], [], []
        for c in raw_events(emu):
            delta = c.choices[0].delta if c.choices else None
            if delta is not None and getattr(delta, "reasoning_content", None):
                kinds.append("reasoning")
                reasoning.append(delta.reasoning_content)
            if delta is not None and delta.content:
                kinds.append("content")
                text.append(delta.content)
        assert "".join(reasoning) == "Let me think about it." and "".join(text) == emu.answer
        assert kinds == sorted(kinds, reverse=True)  # all reasoning before any content
    else:
        events = raw_events(emu)
        deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
        assert deltas == (["thinking_delta"] * len(split_chunks("Let me think about it.")) + ["signature_delta"]
                          + ["text_delta"] * len(split_chunks(emu.answer)))
        emu.script(steps.thinking(thinking="Let me think about it."))
        done = final(emu)
        assert [b.type for b in done.content] == ["thinking", "text"]
        assert (done.content[0].thinking, done.content[0].signature) == ("Let me think about it.", SIGNATURE)
        assert done.content[1].text == emu.answer and done.stop_reason == "end_turn"


def test_only_thinking_ends_cleanly(emu: Emulator) -> None:
    emu.script(steps.only_thinking("Just thinking."))
    events = raw_events(emu)
    if emu.kind == "openai":
        assert "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                       for c in events if c.choices) == "Just thinking."
        assert not any(c.choices[0].delta.content for c in events if c.choices)
        assert events[-1].choices[0].finish_reason == "stop"
    else:
        assert [e.content_block.type for e in events if e.type == "content_block_start"] == ["thinking"]
        assert [e.type for e in events][-2:] == ["message_delta", "message_stop"]
        assert events[-2].delta.stop_reason == "end_turn"


def test_refusal(emu: Emulator) -> None:
    emu.script(steps.refusal())
    done = final(emu)
    if emu.kind == "openai":
        message = done.choices[0].message
        assert (message.refusal, message.content) == (steps.DEFAULT_REFUSAL, None)
        assert done.choices[0].finish_reason == "stop"
    else:
        assert done.content[0].text == steps.DEFAULT_REFUSAL and done.stop_reason == "refusal"


def test_unknown_delta(emu: Emulator) -> None:
    emu.script(steps.unknown_delta(text="after it", data="secret widget"))
    events = raw_events(emu)
    if emu.kind == "openai":
        widget = "".join((getattr(c.choices[0].delta, UNKNOWN, None) or {}).get("data", "")
                         for c in events if c.choices)
        text = "".join(c.choices[0].delta.content or "" for c in events if c.choices)
        assert (widget, text) == ("secret widget", "Before the widget. after it")
    else:
        starts = [e.content_block.type for e in events if e.type == "content_block_start"]
        assert starts == ["text", UNKNOWN, "text"]
        odd = [e.delta for e in events if e.type == "content_block_delta" and e.index == 1]
        assert [d.type for d in odd] == [UNKNOWN + "_delta"] * 2
        assert "".join(getattr(d, "data", "") for d in odd) == "secret widget"
        # The SDK's own accumulator keeps the block but silently drops its content: the loss a router
        # must not copy.
        emu.script(steps.unknown_delta(text="after it", data="secret widget"))
        done = final(emu)
        assert [b.type for b in done.content] == ["text", UNKNOWN, "text"]
        assert [getattr(b, "data", None) for b in done.content] == [None, "", None]


@pytest.mark.parametrize("step", ["thinking", "refusal", "unknown_delta"])
def test_special_content_not_streamed(emu: Emulator, step: str) -> None:
    emu.script(getattr(steps, step)())
    if emu.kind == "openai":
        c = oa(emu).chat.completions.create(model="m", messages=USER)
        m = c.choices[0].message
        got = {"thinking": getattr(m, "reasoning_content", None), "refusal": m.refusal,
               "unknown_delta": (getattr(m, UNKNOWN, None) or {}).get("data")}[step]
    else:
        msg = an(emu).messages.create(model="m", max_tokens=100, messages=USER)
        block = {"thinking": 0, "refusal": 0, "unknown_delta": 1}[step]
        got = msg.content[block].model_dump().get({"thinking": "thinking", "refusal": "text",
                                                    "unknown_delta": "data"}[step])
    expected = {"thinking": steps.DEFAULT_THINKING, "refusal": steps.DEFAULT_REFUSAL,
                "unknown_delta": "payload of a kind no client knows"}[step]
    assert got == expected


# ---------------------------------------------------------------- schema instances


def test_schema_instance_covers_what_tool_schemas_use() -> None:
    schema = {
        "type": "object",
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}},
                           "required": ["child"]}},
        "properties": {
            "kind": {"const": "fixed"}, "level": {"type": "integer", "minimum": 3},
            "ratio": {"type": "number", "exclusiveMinimum": 1}, "code": {"type": "string", "minLength": 10},
            "when": {"type": "string", "format": "date-time"}, "email": {"type": "string"},
            "pair": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]}, "either": {"type": ["null", "string"]},
            "node": {"$ref": "#/$defs/Node"}, "skipped": {"type": "string"},
        },
        "required": ["kind", "level", "ratio", "code", "when", "email", "pair", "maybe", "either", "node"],
    }
    got = instance(schema)
    node = got.pop("node")
    assert got == {"kind": "fixed", "level": 3, "ratio": 2, "code": "examplexxx", "when": "2024-01-01T00:00:00Z",
                   "email": "user@example.com", "pair": [True, True], "maybe": 1, "either": "example"}
    depth = 0
    while node is not None:  # a recursive schema still ends
        node, depth = node["child"], depth + 1
    assert 10 < depth < 100


class Tree(pydantic.BaseModel):
    name: str
    children: list[Tree]
    kind: Literal["leaf", "branch"]
    weight: float = pydantic.Field(ge=5)
    meta: dict[str, int]
    parent: Forecast | None


def test_schema_instances_validate_against_pydantic_models() -> None:
    for model in (Forecast, Inner, Tree):
        model.model_validate(instance(model.model_json_schema()))


@given(st.text(max_size=60))
def test_split_fragments_round_trips(text: str) -> None:
    pieces = split_fragments(text)
    assert "".join(pieces) == text and pieces and all(len(p) <= 8 for p in pieces)
