"""The whole Chat API through failover (issue 11): tools, images, JSON output, per-call parameters,
named chains, capabilities. Through both real SDKs to the emulator, which checks every translated
request against its API's rules and records the exact body each SDK sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.conftest import MESSAGES, OTHER, make_router, provider_entry, run_async, run_sync

from failover import AllProvidersFailed, Router, StreamInterrupted, ToolCall
from failover.emulator import Emulator, steps

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
       "60e6kgAAAABJRU5ErkJggg==")


def body(emu: Emulator) -> dict[str, Any]:
    return emu.requests[-1].body


# ---- the request each SDK sent, translated per provider type


def test_openai_gets_the_shapes_as_they_are(emu):
    primary = emu["openai"]
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "name": "ana", "content": [{"type": "text", "text": "What is this?"},
                                                   {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]},
    ]
    with make_router(primary) as router:
        named = {"type": "function", "function": {"name": "get_weather"}}
        run_sync(router, messages, tools=[WEATHER], tool_choice=named, parallel_tool_calls=False, seed=7,
                 user="u-1", stop=["END"], max_tokens=50, temperature=0.2, extra={"openai": {"logprobs": True}})
    sent = body(primary)
    assert sent["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "name": "ana", "content": [{"type": "text", "text": "What is this?"},
                                                   {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]}]
    assert sent["tools"] == [WEATHER]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (sent["parallel_tool_calls"], sent["seed"], sent["user"], sent["stop"]) == (False, 7, "u-1", ["END"])
    assert (sent["max_tokens"], sent["temperature"], sent["logprobs"]) == (50, 0.2, True)


def test_anthropic_gets_its_own_shapes(emu):
    primary = emu["anthropic"]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Compare these."},
                                     {"type": "image_url", "image_url": {"url": PNG}},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "Thanks. And tomorrow?"},
    ]
    with pytest.warns(UserWarning, match="seed"), make_router(primary) as router:
        out = run_sync(router, messages, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False,
                       stop="END", user="u-1", seed=3, response_format={"type": "json_schema", "json_schema": {
                           "name": "w", "schema": {"type": "object", "properties": {"t": {"type": "string"}}}}},
                       extra={"primary": {"metadata": {"user_id": "override"}}})
    assert out.error is None
    sent = body(primary)
    assert sent["system"] == "Be brief.\n\nAnswer in French."
    user, assistant, results = sent["messages"]
    assert user == {"role": "user", "content": [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG.split(",", 1)[1]}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}
    assert assistant == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}]}
    assert results == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "21 C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
        {"type": "text", "text": "Thanks. And tomorrow?"}]}
    assert sent["tools"] == [
        {"name": "get_weather", "description": "The weather in a city",
         "input_schema": WEATHER["function"]["parameters"]},
        {"name": "get_time", "input_schema": TIME["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["stop_sequences"] == ["END"] and "seed" not in sent
    assert sent["metadata"] == {"user_id": "override"}  # the call's `extra` for this provider wins
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"t": {"type": "string"}}}}}


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tool_choice_in_anthropic_terms(emu, choice, parallel, expected):
    primary = emu["anthropic"]
    with make_router(primary) as router:
        run_sync(router, tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel)
    assert body(primary)["tool_choice"] == expected


# ---- answers with tool calls, whoever serves


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_tool_conversation_changes_provider_at_every_turn(emulators, mode):
    """Turn 1 fails over from OpenAI to Anthropic, turn 2 is served by OpenAI with Anthropic's
    tool-call id in its history, turn 3 by Anthropic with OpenAI's: ids stay valid across providers,
    and the emulator checks every tool result answers a tool call as each API requires."""
    oai, ant = emulators["openai"], emulators["anthropic"]
    for e in (oai, ant):
        e.reset()
    routers = {
        "oai": Router.from_dict({"providers": [provider_entry("oai", oai), provider_entry("ant", ant)],
                                 "defaults": {"retry": {"max_attempts": 1}}}),
        "ant": Router.from_dict({"providers": [provider_entry("ant", ant), provider_entry("oai", oai)],
                                 "defaults": {"retry": {"max_attempts": 1}}}),
    }
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]

    def turn(router: Router) -> Any:
        if mode == "sync":
            return run_sync(router, messages, tools=[WEATHER])
        return asyncio.run(run_async(router, messages, tools=[WEATHER]))

    try:
        oai.script(steps.server_error(503))
        first = turn(routers["oai"])
        assert first.result.provider == "ant" and first.result.finish_reason == "tool_calls"
        [call] = first.result.tool_calls
        assert call.id.startswith("toolu_") and call.parsed_arguments() == {"city": "Paris"}
        # the streamed deltas add up to the same call
        deltas = [d for c in first.chunks for d in c.tool_calls]
        assert deltas[0].id == call.id and deltas[0].name == "get_weather"
        assert "".join(d.arguments for d in deltas) == call.arguments
        messages += [first.result.message(), {"role": "tool", "tool_call_id": call.id, "content": "21 C"}]

        second = turn(routers["oai"])
        assert second.result.provider == "oai" and "21 C" in second.result.text
        assert body(oai)["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "21 C"}
        messages += [second.result.message(), {"role": "user", "content": "And in Rome?"}]

        third = turn(routers["oai"])  # OpenAI calls the tool this time
        assert third.result.provider == "oai"
        [again] = third.result.tool_calls
        assert again.id.startswith("call_")
        messages += [third.result.message(), {"role": "tool", "tool_call_id": again.id, "content": "25 C"}]
        fourth = turn(routers["ant"])  # ...and Anthropic answers with OpenAI's id in the history
        assert fourth.result.provider == "ant" and "25 C" in fourth.result.text
        tool_results = [b for m in body(ant)["messages"] if isinstance(m["content"], list)
                        for b in m["content"] if b["type"] == "tool_result"]
        assert [b["tool_use_id"] for b in tool_results] == [call.id, again.id]
    finally:
        for r in routers.values():
            r.close()


def test_parallel_tool_calls_arrive_whole_and_in_order(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.tool_calls([("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]))
    with make_router(primary) as router:
        out = call(router, tools=[WEATHER, TIME])
    assert [(c.name, c.parsed_arguments()) for c in out.result.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]
    assert {d.index for c in out.chunks for d in c.tool_calls} == {0, 1}
    assert out.result.finish_reason == "tool_calls" and out.result.text == ""
    assert out.result.message()["tool_calls"] == [c.as_message_part() for c in out.result.tool_calls]


def test_text_before_a_tool_call_is_kept(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.tool_calls([("get_weather", {"city": "Oslo"})], text="Let me look that up. "))
    with make_router(primary) as router:
        out = call(router, tools=[WEATHER])
    assert out.result.text == "Let me look that up. "
    assert [c.name for c in out.result.tool_calls] == ["get_weather"]


# ---- failover semantics: tool calls and JSON are never stitched


def test_a_tool_call_cut_mid_arguments_restarts_never_stitched(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.tool_calls([("get_weather", {"city": "Paris"})], after=3))
    with make_router(primary, fallback, midstream="resume") as router:
        out = call(router, tools=[WEATHER])
    assert out.error is None
    restarts = [c for c in out.chunks if c.restart]
    assert len(restarts) == 1  # the consumer is told to throw the partial call away
    assert out.result.resumed is False
    after = out.chunks[out.chunks.index(restarts[0]):]
    [whole] = out.result.tool_calls
    assert "".join(d.arguments for c in after for d in c.tool_calls) == whole.arguments
    assert whole.parsed_arguments() == {"city": "Paris"}
    assert not any(r.continuation for r in primary.requests + fallback.requests)  # no continuation was asked


def test_a_tool_call_cut_with_raise_is_interrupted(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.tool_calls([("get_weather", {"city": "Paris"})], after=3))
    with make_router(primary, fallback, midstream="raise") as router:
        out = call(router, tools=[WEATHER])
    assert isinstance(out.error, StreamInterrupted)
    assert not fallback.requests


def test_a_json_answer_cut_restarts(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.cut(after=3))
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}
    with make_router(primary, midstream="resume") as router:
        out = call(router, response_format=fmt)
    assert any(c.restart for c in out.chunks) and not out.result.resumed
    assert isinstance(json.loads(out.result.text), dict)


# ---- images, capabilities, refusals


def test_image_and_text_reach_both_provider_types(emu, kind, call):
    primary = emu[kind]
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image_url", "image_url": {"url": PNG}}]}]
    with make_router(primary) as router:
        out = call(router, messages)
    assert out.error is None and out.result.provider == "primary"


def test_a_provider_without_images_is_skipped_with_the_reason(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}]
    with make_router(primary, fallback, primary_opts={"capabilities": {"images": False}}) as router:
        out = call(router, messages)
        assert router.breaker("primary").fail_counter == 0
    assert out.summary() == [("primary", "skipped", "skipped"), ("fallback", "ok", None)]
    assert "images" in out.attempts[0].message
    assert not primary.requests


def test_a_text_call_still_uses_a_provider_without_tools(emu, kind, call):
    primary = emu[kind]
    with make_router(primary, primary_opts={"capabilities": {"tools": False}}) as router:
        plain = call(router)
        with_tools = call(router, tools=[WEATHER])
    assert plain.result.provider == "primary"
    assert isinstance(with_tools.error, AllProvidersFailed) and "tools" in str(with_tools.error)


def test_a_refusal_is_the_result_s_refusal(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.refusal())
    with make_router(primary) as router:
        out = call(router)
    assert out.error is None and out.result.refusal == "I'm sorry, but I can't help with that."
    if kind == "anthropic":
        assert out.result.finish_reason == "content_filter"


# ---- named chains


def test_chain_picks_the_named_chain_and_an_unknown_one_is_a_value_error(emu):
    oai, ant = emu["openai"], emu["anthropic"]
    config = {"providers": [provider_entry("big", oai), provider_entry("small", ant)],
              "chains": {"cheap": ["small", "big"]}}
    with Router.from_dict(config) as router:
        assert run_sync(router).result.provider == "big"
        assert run_sync(router, chain="cheap").result.provider == "small"
        assert run_sync(router, chain="default").result.provider == "big"
        with pytest.raises(ValueError, match=r"chain='nope'.*cheap"):
            router.stream(MESSAGES, chain="nope")
        ant.script(steps.server_error(503), steps.server_error(503), steps.server_error(503))
        failed_over = run_sync(router, chain="cheap")
        assert failed_over.result.provider == "big"  # breakers stay per provider, shared by the chains
        assert router.breaker("small").fail_counter == 3


# ---- what the router refuses before any request


@pytest.mark.parametrize(("messages", "params", "match"), [
    ([{"role": "user", "content": "hi"}], {"temprature": 0.2}, "unknown parameter 'temprature'.*temperature"),
    ([{"role": "robot", "content": "hi"}], {}, r"messages\[0\]\.role"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], {}, r"messages\[0\]\.content\[0\]"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}], {},
     r"messages\[0\]\.content\[0\]\.image_url\.url"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}], {},
     "not valid base64"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_9", "content": "x"}], {},
     r"messages\[1\]\.tool_call_id 'call_9' answers no earlier tool call"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}], {},
     r"messages\[1\]\.tool_calls\[0\]\.function\.arguments is not valid JSON"),
    ([{"role": "user", "content": "hi", "cache_control": {"type": "ephemeral"}}], {}, "keys failover cannot send"),
    ([{"role": "user", "content": "hi"}], {"tools": [{"type": "web_search"}]}, r"tools\[0\]\.type"),
    ([{"role": "user", "content": "hi"}], {"tool_choice": "required"}, "needs tools"),
    ([{"role": "user", "content": "hi"}], {"tools": [WEATHER], "tool_choice": {
        "type": "function", "function": {"name": "nope"}}}, "not one of the tools"),
    ([{"role": "user", "content": "hi"}], {"response_format": {"type": "xml"}}, "response_format.type"),
    ([{"role": "user", "content": "hi"}], {"extra": {"mistral": {"x": 1}}}, "names no provider"),
    ([{"role": "user", "content": "hi"}], {"extra": {"openai": {"not_a_param": 1}}}, "not accepted by the installed"),
    ([{"role": "user", "content": "hi"}], {"extra": {"openai": {"model": "x"}}}, "failover sets them itself"),
    ([{"role": "user", "content": "hi"}], {"seed": "7"}, "seed must be an integer"),
])
def test_what_cannot_be_sent_is_a_value_error_before_any_request(emu, messages, params, match):
    primary = emu["openai"]
    with make_router(primary) as router, pytest.raises(ValueError, match=match):
        router.stream(messages, **params)
    assert not primary.requests


def test_a_result_round_trips_as_the_next_turn_s_message():
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    assert call.as_message_part() == {"id": "call_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
