"""Provider-specific behaviour: request shapes, parameters the SDKs accept, secrets in errors."""

from __future__ import annotations

import pytest
from tests.conftest import MESSAGES, OTHER, make_router, provider_entry, run_sync

from failover import AllProvidersFailed, ConfigError, Router
from failover.emulator import steps


def test_system_messages_become_anthropics_system_parameter(emu):
    claude = emu["anthropic"]
    with make_router(claude) as router:
        run_sync(router, [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Be kind."},
                          {"role": "user", "content": "Hi"}], max_tokens=7, stop=["\n\n"])
    body = claude.requests[0].body
    assert body["system"] == "Be brief.\n\nBe kind."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["max_tokens"] == 7 and body["stop_sequences"] == ["\n\n"]


def test_openai_gets_messages_as_given_and_asks_for_usage(emu):
    gpt = emu["openai"]
    with make_router(gpt) as router:
        out = run_sync(router, MESSAGES, max_tokens=9, temperature=0.2, top_p=0.9, stop="END")
    body = gpt.requests[0].body
    assert body["messages"] == MESSAGES
    assert body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop"]) == (9, 0.2, 0.9, ["END"])
    assert out.result.finish_reason == "length"  # the emulator honours max_tokens


def test_anthropic_without_sampling_parameters_still_serves(emu):
    claude = emu["anthropic"]
    # A parameter the developer passes in code and this SDK cannot send: a warning, not a failure.
    with pytest.warns(UserWarning, match="temperature and top_p"), make_router(claude) as router:
        out = run_sync(router, MESSAGES, temperature=0.3, top_p=0.5)
    assert out.result is not None and out.result.provider == "primary"
    assert "temperature" not in claude.requests[0].body


@pytest.mark.parametrize(("kind", "param"), [("anthropic", "temperature"), ("openai", "max_output_tokens")])
def test_params_the_sdk_does_not_accept_are_a_config_error_at_load(emu, kind, param):
    entry = provider_entry("p", emu[kind], params={param: 1})
    with pytest.raises(ConfigError) as info:
        Router.from_dict({"providers": [entry]}, source="test.yaml")
    assert info.value.path == "providers[0].params"
    assert repr(param) in str(info.value) and "test.yaml" in str(info.value)


def test_params_pass_through_to_the_request(emu):
    gpt = emu["openai"]
    with make_router(gpt, primary_opts={"params": {"seed": 7, "extra_body": {"custom": True}}}) as router:
        run_sync(router)
    assert gpt.requests[0].body["seed"] == 7 and gpt.requests[0].body["custom"] is True


def test_a_provider_echoing_the_key_never_leaks_it(emu, kind):
    primary = emu[kind]
    key = "sk-live-0123456789abcdefXYZ"
    primary.script(steps.status(401, error_type="authentication_error",
                                message=f"Incorrect API key provided: {key}."))
    with make_router(primary, primary_opts={"api_key": key}) as router:
        out = run_sync(router)
    assert isinstance(out.error, AllProvidersFailed)
    assert key not in str(out.error)
    assert all(key not in (a.message or "") for a in out.error.attempts)
    assert "***" in out.error.attempts[0].message


def test_missing_key_variable_is_skipped_and_named(emu, kind, monkeypatch):
    monkeypatch.delenv("FAILOVER_TEST_MISSING_KEY", raising=False)
    primary, fallback = emu[kind], emu[OTHER[kind]]
    entry = provider_entry("primary", primary, api_key="${FAILOVER_TEST_MISSING_KEY}")
    with Router.from_dict({"providers": [entry, provider_entry("fallback", fallback)]}) as router:
        out = run_sync(router)
    assert out.result.provider == "fallback"
    assert out.attempts[0].outcome == "skipped"
    assert out.attempts[0].message == "$FAILOVER_TEST_MISSING_KEY is not set"
    assert len(primary.requests) == 0
