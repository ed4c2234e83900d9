"""Valid files and mappings → the typed, frozen Config: every key, inheritance, ${VAR}, the example file."""

from __future__ import annotations

import logging
import pathlib
import re
import tempfile
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from tests.test_config_support import ONE, ROOT, SECRET, SECRET_BODY, error, load, problems, write

from failover.config import (
    BreakerSettings,
    Config,
    ProviderConfig,
    RetrySettings,
    TelemetrySettings,
    TimeoutSettings,
    describe,
    load_config,
    parse_config,
)
from failover.errors import ConfigError

# --------------------------------------------------------------------------- valid files


def test_full_file_every_key(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - name: openai
            type: openai
            model: gpt-4o
            api_key: ${OPENAI_API_KEY}
            base_url: http://localhost:11434/v1
            max_tokens: 512
            params: {seed: 7, logit_bias: {"50256": -100}}
            supports_prefill: true
            failover_on_reject: true
            continue_prompt: Go on.
            midstream: raise
            retry:
              {max_attempts: 4, initial_backoff: 0.1, max_backoff: 2, multiplier: 3, max_retry_after: 1.5}
            breaker: {fail_max: 2, reset_timeout: 0.5, storage: "redis://localhost:6379/2"}
            timeouts: {connect: 1, first_token: 2, idle: 3, total: 4}
          - name: claude.backup-2
            type: anthropic
            model: claude-sonnet-4-5
            api_key: ${ANTHROPIC_API_KEY}
        telemetry:
          exporter: otlp
          endpoint: https://collector:4317
          service_name: chat-api
          capture_content: true
        """,
        env={"OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": "ak"},
    )
    assert cfg.source.endswith("config.yaml")
    assert [p.name for p in cfg.providers] == ["openai", "claude.backup-2"]
    first, second = cfg.providers
    assert isinstance(cfg.providers, tuple)
    assert first.type == "openai" and first.model == "gpt-4o"
    assert first.api_key is not None and first.api_key.get_secret_value() == SECRET
    assert first.api_key_env == "OPENAI_API_KEY" and first.missing_env == () and first.usable
    assert first.base_url == "http://localhost:11434/v1"
    assert first.max_tokens == 512
    assert first.params == {"seed": 7, "logit_bias": {"50256": -100}}
    assert first.supports_prefill is True and first.failover_on_reject is True
    assert first.continue_prompt == "Go on." and first.midstream == "raise"
    assert first.retry == RetrySettings(
        max_attempts=4, initial_backoff=0.1, max_backoff=2.0, multiplier=3.0, max_retry_after=1.5
    )
    assert first.breaker == BreakerSettings(fail_max=2, reset_timeout=0.5, storage="redis://localhost:6379/2")
    assert first.timeouts == TimeoutSettings(connect=1, first_token=2, idle=3, total=4)
    assert isinstance(first.timeouts.total, float)
    # The second provider got every built-in default.
    assert second.type == "anthropic" and second.max_tokens == 1024 and second.base_url is None
    assert second.retry == RetrySettings() and second.breaker == BreakerSettings()
    assert second.timeouts == TimeoutSettings() and second.midstream == "resume"
    assert second.supports_prefill is False and second.failover_on_reject is False
    assert second.continue_prompt.startswith("Continue exactly where your previous message stopped.")
    assert second.params == {}
    assert cfg.telemetry == TelemetrySettings(
        exporter="otlp", endpoint="https://collector:4317", service_name="chat-api", capture_content=True
    )


def test_builtin_defaults_match_the_contract() -> None:
    assert RetrySettings().model_dump() == {
        "max_attempts": 3,
        "initial_backoff": 0.5,
        "max_backoff": 8.0,
        "multiplier": 2.0,
        "max_retry_after": 10.0,
        "budget": {"ratio": 0.2, "min_retries": 3, "window": 10.0},
    }
    assert BreakerSettings().model_dump() == {"fail_max": 5, "failure_rate": 0.9, "reset_timeout": 15.0,
                                              "probe": "background", "storage": "memory", "namespace": None}
    assert TimeoutSettings().model_dump() == {
        "connect": 5.0,
        "first_token": 10.0,
        "idle": 30.0,
        "total": 120.0,
    }
    assert TelemetrySettings().model_dump() == {
        "exporter": "none",
        "endpoint": "http://localhost:4317",
        "service_name": "failover",
        "capture_content": False,
    }


def test_defaults_inherited_and_overridden_per_key(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - {name: a, type: openai, model: m, api_key: k, retry: {max_attempts: 1}, midstream: restart}
          - {name: b, type: openai, model: m, api_key: k, timeouts: {total: 60}, supports_prefill: false}
          - {name: c, type: anthropic, model: m, api_key: k, max_tokens: 99}
        defaults:
          retry: {max_attempts: 5, initial_backoff: 1.0}
          timeouts: {idle: 20}
          breaker: {fail_max: 2}
          midstream: raise
          supports_prefill: true
          failover_on_reject: true
          continue_prompt: more please
        """,
    )
    a, b, c = cfg.providers
    # a: its own max_attempts; initial_backoff from defaults; max_backoff from the built-ins.
    assert (a.retry.max_attempts, a.retry.initial_backoff, a.retry.max_backoff) == (1, 1.0, 8.0)
    assert a.midstream == "restart" and a.supports_prefill is True
    # b: retry wholly inherited; timeouts merged key by key with defaults and built-ins.
    assert b.retry == RetrySettings(max_attempts=5, initial_backoff=1.0)
    assert b.timeouts == TimeoutSettings(connect=5, first_token=10, idle=20, total=60)
    assert b.supports_prefill is False and b.midstream == "raise"
    # c: everything from defaults, its explicit max_tokens kept.
    assert c.breaker == BreakerSettings(fail_max=2)
    assert c.failover_on_reject is True and c.continue_prompt == "more please" and c.max_tokens == 99
    assert c.timeouts.idle == 20.0


def test_empty_sections_mean_defaults(tmp_path: pathlib.Path) -> None:
    # Every key commented out leaves a YAML null: that is "use the defaults", not an error.
    cfg = load(
        tmp_path,
        """\
        providers:
          - name: a
            type: openai
            model: m
            api_key: k
            retry:
            params:
        defaults:
          timeouts:
        telemetry:
        """,
    )
    assert cfg.providers[0].retry == RetrySettings() and cfg.providers[0].params == {}
    assert cfg.telemetry == TelemetrySettings()


def test_max_tokens_default_only_for_anthropic(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - {name: o, type: openai, model: m, api_key: k}
          - {name: a, type: anthropic, model: m, api_key: k}
          - {name: n, type: anthropic, model: m, api_key: k, max_tokens: null}
        """,
    )
    assert [p.max_tokens for p in cfg.providers] == [None, 1024, 1024]


def test_yaml_anchors_and_merge_keys(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - &local {name: a, type: openai, model: llama, api_key: none, base_url: "http://localhost:1/v1"}
          - <<: *local
            name: b
        """,
    )
    assert [(p.name, p.model, p.base_url) for p in cfg.providers] == [
        ("a", "llama", "http://localhost:1/v1"),
        ("b", "llama", "http://localhost:1/v1"),
    ]


def test_config_is_frozen(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, ONE)
    with pytest.raises(ValidationError):
        cfg.providers[0].model = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.providers[0].retry.max_attempts = 9  # type: ignore[misc]
    with pytest.raises(ValidationError):
        cfg.telemetry.exporter = "otlp"  # type: ignore[misc]


def test_parse_config_takes_the_same_schema() -> None:
    mapping: dict[str, Any] = yaml.safe_load(ONE)
    cfg = parse_config(mapping, source="settings.py")
    assert cfg.source == "settings.py" and cfg.providers[0].name == "main"
    assert parse_config(mapping).source == "<dict>"
    assert mapping == yaml.safe_load(ONE), "parse_config must not modify the caller's mapping"
    # A tuple of providers and an already-wrapped key are accepted from code.
    built = parse_config({"providers": ({**mapping["providers"][0], "api_key": SecretStr("k2")},)})
    assert built.providers[0].api_key is not None and built.providers[0].api_key.get_secret_value() == "k2"


def test_parse_config_errors_name_the_source_and_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "providers": [
                    {
                        "name": "a",
                        "type": "openai",
                        "model": "m",
                        "api_key": "k",
                        "retry": {"max_attempts": 0},
                    }
                ]
            },
            source="app-settings",
        )
    err = info.value
    assert (err.source, err.path, err.line) == ("app-settings", "providers[0].retry.max_attempts", None)
    assert str(err).startswith("app-settings: providers[0].retry.max_attempts: ")


def test_parse_config_rejects_non_mapping_and_non_string_keys() -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="keys must be strings") as info:
        parse_config({"providers": [{"name": "a", "type": "openai", "model": "m", "api_key": "k", 3: "x"}]})
    assert info.value.path == "providers[0]"


def test_load_config_accepts_pathlike(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, ONE)
    assert load_config(path, env={}).source == str(path)
    assert load_config(str(path), env={}).source == str(path)


def test_direct_construction_of_models() -> None:
    # Other modules and tests build these in code; the same rules hold.
    p = ProviderConfig(name="x", type="anthropic", model="m", api_key=SecretStr("k"))
    assert p.max_tokens == 1024 and p.usable and p.missing_env == () and p.api_key_env is None
    assert not ProviderConfig(name="x", type="openai", model="m", api_key=None).usable
    assert not ProviderConfig(name="x", type="openai", model="m", api_key=SecretStr("")).usable
    with pytest.raises(ValidationError):
        TimeoutSettings(first_token=200)
    with pytest.raises(ValidationError):
        Config(providers=())
    with pytest.raises(ValidationError):
        Config(providers=(p, p))


# --------------------------------------------------------------------------- environment variables


def test_env_interpolation_everywhere(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - name: ${NAME}
            type: openai
            model: gpt-${VERSION:-4o}
            api_key: k
            base_url: http://${HOST}:${PORT:-8080}/v1
            params: {user: "${USER_ID}", extra_body: {tags: ["a-${TAG}", "$${NOT_A_VAR}", "cost: $5"]}}
            retry: {max_attempts: "${ATTEMPTS}", initial_backoff: "${BACKOFF:-0.25}"}
            supports_prefill: ${PREFILL}
        telemetry:
          endpoint: ${OTEL_ENDPOINT:-http://jaeger:4317}
        """,
        env={
            "NAME": "primary",
            "HOST": "gw",
            "USER_ID": "u1",
            "TAG": "t",
            "ATTEMPTS": "7",
            "PREFILL": "true",
            "BACKOFF": "",
        },
    )
    p = cfg.providers[0]
    assert p.name == "primary"
    assert p.model == "gpt-4o"  # unset → default
    assert p.base_url == "http://gw:8080/v1"
    assert p.params == {"user": "u1", "extra_body": {"tags": ["a-t", "${NOT_A_VAR}", "cost: $5"]}}
    assert p.retry.max_attempts == 7  # a number read from the environment is a number
    assert p.retry.initial_backoff == 0.25  # set but empty → default, as in the shell
    assert p.supports_prefill is True
    assert cfg.telemetry.endpoint == "http://jaeger:4317"


def test_env_defaults_to_os_environ(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILOVER_TEST_MODEL", "from-env")
    monkeypatch.setenv("FAILOVER_TEST_KEY", SECRET)
    path = write(
        tmp_path,
        ONE.replace("gpt-4o", "${FAILOVER_TEST_MODEL}").replace("literal-key", "${FAILOVER_TEST_KEY}"),
    )
    p = load_config(path).providers[0]
    assert p.model == "from-env"
    assert p.api_key is not None and p.api_key.get_secret_value() == SECRET


def test_unset_api_key_var_makes_provider_unusable_not_an_error(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = load(
        tmp_path,
        """\
        providers:
          - {name: openai, type: openai, model: gpt-4o, api_key: "${OPENAI_API_KEY}"}
          - {name: claude, type: anthropic, model: c, api_key: "${ANTHROPIC_API_KEY}"}
        """,
        env={"ANTHROPIC_API_KEY": SECRET},
    )
    openai, claude = cfg.providers
    assert openai.api_key is None and not openai.usable
    assert openai.api_key_env == "OPENAI_API_KEY" and openai.missing_env == ("OPENAI_API_KEY",)
    assert claude.usable and claude.missing_env == ()
    warnings = [r for r in caplog.records if r.name == "failover.config" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'openai'" in warnings[0].getMessage() and "$OPENAI_API_KEY" in warnings[0].getMessage()
    assert all(SECRET_BODY not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("value", "env", "expected_key", "missing"),
    [
        ("${K}", {"K": ""}, None, ("K",)),  # set but empty is as useless as unset
        ("${K:-}", {}, None, ("K",)),
        ("${K:-fallback}", {}, "fallback", ()),
        ("Bearer-${A}-${B}", {"A": "x"}, None, ("B",)),
        ("${K}", {"K": "  padded-key\n"}, "padded-key", ()),  # a trailing newline from a secrets file
        ("plain-literal", {}, "plain-literal", ()),
    ],
)
def test_api_key_resolution(
    tmp_path: pathlib.Path,
    value: str,
    env: dict[str, str],
    expected_key: str | None,
    missing: tuple[str, ...],
) -> None:
    p = load(tmp_path, ONE.replace("literal-key", f'"{value}"'), env).providers[0]
    assert (p.api_key.get_secret_value() if p.api_key else None) == expected_key
    assert p.missing_env == missing
    assert p.usable is (expected_key is not None)
    refs = re.findall(r"\$\{(\w+)", value)
    assert p.api_key_env == (refs[0] if refs else None)


def test_unset_variable_outside_api_key_is_an_error(tmp_path: pathlib.Path) -> None:
    err = error(
        tmp_path,
        """\
        providers:
          - name: main
            type: openai
            model: ${MODEL_NAME}
            api_key: k
        """,
    )
    assert (err.path, err.line) == ("providers[0].model", 4)
    assert "$MODEL_NAME is not set" in str(err)
    assert len(problems(err)) == 1, "the half-resolved value must not add a second, derived problem"


@pytest.mark.parametrize("value", ["${1BAD}", "${UNCLOSED", "${A:B}", "${A:-${B}}", "${}"])
def test_malformed_reference_is_an_error(tmp_path: pathlib.Path, value: str) -> None:
    err = error(tmp_path, ONE.replace("gpt-4o", f'"{value}"'), env={"A": "1", "B": "2"})
    assert err.path == "providers[0].model" and "invalid variable reference" in str(err)


# --------------------------------------------------------------------------- the example file


def test_root_config_yaml_loads_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    cfg = load_config(ROOT / "config.yaml")
    assert [(p.name, p.type, p.model) for p in cfg.providers] == [
        ("openai", "openai", "gpt-4o"),
        ("anthropic", "anthropic", "claude-sonnet-4-5"),
    ]
    assert [p.missing_env for p in cfg.providers] == [("OPENAI_API_KEY",), ("ANTHROPIC_API_KEY",)]
    assert cfg.providers[1].max_tokens == 1024
    # The example shows the defaults: what it writes must be what a bare file gets.
    bare = parse_config({"providers": [{"name": "x", "type": "openai", "model": "m", "api_key": "k"}]})
    for p in cfg.providers:
        assert p.retry == bare.providers[0].retry
        assert p.breaker == bare.providers[0].breaker
        assert p.timeouts == bare.providers[0].timeouts
        assert (p.midstream, p.supports_prefill, p.failover_on_reject, p.continue_prompt) == (
            "resume",
            False,
            False,
            bare.providers[0].continue_prompt,
        )
    assert cfg.telemetry == TelemetrySettings()


def test_root_config_yaml_with_keys() -> None:
    cfg = load_config(ROOT / "config.yaml", env={"OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET})
    assert all(p.usable for p in cfg.providers)
    assert SECRET_BODY not in describe(cfg) + repr(cfg)


# --------------------------------------------------------------------------- properties


@st.composite
def retry_settings(draw: st.DrawFn) -> dict[str, Any]:
    # Every seconds value is at most one day; at most 100 attempts keep multiplier**n a finite float.
    seconds = st.floats(min_value=0, max_value=86_400, allow_nan=False, allow_infinity=False)
    initial = draw(seconds)
    return {
        "max_attempts": draw(st.integers(min_value=1, max_value=100)),
        "initial_backoff": initial,
        "max_backoff": draw(
            st.floats(min_value=initial, max_value=86_400, allow_nan=False, allow_infinity=False)
        ),
        "multiplier": draw(st.floats(min_value=1, max_value=100, allow_nan=False, allow_infinity=False)),
        "max_retry_after": draw(seconds),
    }


@settings(max_examples=60, deadline=None)
@given(retry_settings())
def test_any_valid_retry_settings_round_trip(values: dict[str, Any]) -> None:
    provider = {"name": "p", "type": "openai", "model": "m", "api_key": "k", "retry": values}
    document = {"providers": [provider]}
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        from_file = load_config(path, env={}).providers[0].retry
    from_mapping = parse_config(document, env={}).providers[0].retry
    assert from_file == from_mapping == RetrySettings(**values)
    assert from_file.model_dump(exclude={"budget"}) == values
    # Through defaults too: the provider inherits them exactly.
    inherited = parse_config({"providers": [{**provider, "retry": None}], "defaults": {"retry": values}})
    assert inherited.providers[0].retry.model_dump(exclude={"budget"}) == values


@settings(max_examples=60, deadline=None)
@given(st.integers(max_value=0), st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False))
def test_any_impossible_retry_value_is_rejected(attempts: int, backoff: float) -> None:
    provider = {
        "name": "p",
        "type": "openai",
        "model": "m",
        "api_key": "k",
        "retry": {"max_attempts": attempts, "initial_backoff": backoff},
    }
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": [provider]}, env={})
    text = str(info.value)
    assert "providers[0].retry.max_attempts" in text and "providers[0].retry.initial_backoff" in text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(exclude_characters="$", codec="utf-8"), max_size=40))
def test_strings_without_dollar_are_untouched(text: str) -> None:
    cfg = parse_config(
        {
            "providers": [
                {"name": "p", "type": "openai", "model": "m", "api_key": "k", "params": {"extra_body": {"note": text}}}
            ]
        },
        env={},
    )
    assert cfg.providers[0].params["extra_body"]["note"] == text
