"""config.py: YAML / mapping → validated, frozen config; every problem a ConfigError with path and line."""

from __future__ import annotations

import logging
import pathlib
import re
import tempfile
import textwrap
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from failover.config import (
    BreakerSettings,
    Config,
    ProviderConfig,
    RetrySettings,
    TelemetrySettings,
    TimeoutSettings,
    describe,
    load_config,
    mask_secret,
    parse_config,
)
from failover.errors import ConfigError, FailoverError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-0123456789abcdefWXYZ"  # long enough that mask_secret shows its last 4
SECRET_BODY = "SECRET-0123456789abcdef"  # a part that must never appear anywhere


def write(tmp_path: pathlib.Path, text: str, name: str = "config.yaml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: pathlib.Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=env or {})


def error(tmp_path: pathlib.Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return info.value


def problems(err: ConfigError) -> list[str]:
    """Every line of a ConfigError is one problem, `file:line: path: problem`."""
    return str(err).splitlines()


ONE = """\
providers:
  - name: main
    type: openai
    model: gpt-4o
    api_key: literal-key
"""


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
    assert BreakerSettings().model_dump() == {"fail_max": 5, "failure_rate": 0.5, "window": 10.0,
                                              "reset_timeout": 15.0, "storage": "memory",
                                              "namespace": None}
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


# --------------------------------------------------------------------------- every kind of error

# (yaml body appended to a valid provider's indentation, expected path, expected line, text in message)
PROVIDER_ERRORS = [
    ("retry: {max_attempt: 2}", "providers[0].retry.max_attempt", 6, "did you mean 'max_attempts'?"),
    ("modle: x", "providers[0].modle", 6, "unknown key 'modle' (did you mean 'model'?)"),
    ("retry: {max_attempts: 0}", "providers[0].retry.max_attempts", 6, "greater than or equal to 1"),
    ("retry: {max_attempts: three}", "providers[0].retry.max_attempts", 6, "valid integer"),
    ("retry: {max_attempts: yes}", "providers[0].retry.max_attempts", 6, "not a boolean"),
    ("retry: {max_attempts: 2.5}", "providers[0].retry.max_attempts", 6, "valid integer"),
    ("retry: {initial_backoff: -0.1}", "providers[0].retry.initial_backoff", 6, "greater than or equal to 0"),
    ("retry: {multiplier: 0.5}", "providers[0].retry.multiplier", 6, "greater than or equal to 1"),
    ("retry: {max_retry_after: -1}", "providers[0].retry.max_retry_after", 6, "greater than or equal to 0"),
    ("retry: {max_backoff: 0.1}", "providers[0].retry.max_backoff", 6, "must not be below initial_backoff"),
    (
        "retry: {initial_backoff: 9}",
        "providers[0].retry.initial_backoff",
        6,
        "must not be below initial_backoff",
    ),
    ("retry: 3", "providers[0].retry", 6, "must be a mapping (got a number)"),
    ("breaker: {fail_max: 0}", "providers[0].breaker.fail_max", 6, "greater than or equal to 1"),
    ("breaker: {reset_timeout: 0}", "providers[0].breaker.reset_timeout", 6, "greater than 0"),
    ("breaker: {storage: disk}", "providers[0].breaker.storage", 6, "must be 'memory' or a redis://"),
    ("breaker: {storage: 'http://x'}", "providers[0].breaker.storage", 6, "must be 'memory' or a redis://"),
    ("breaker: {storage: 'redis://h:port/0'}", "providers[0].breaker.storage", 6, "invalid port"),
    ("breaker: {storage: 'redis://h/zero'}", "providers[0].breaker.storage", 6, "database must be a number"),
    ("timeouts: {first_token: 200}", "providers[0].timeouts.first_token", 6, "must not exceed total (120)"),
    ("timeouts: {total: 5}", "providers[0].timeouts.total", 6, "must not exceed total (5)"),
    ("timeouts: {connect: 0}", "providers[0].timeouts.connect", 6, "greater than 0"),
    ("timeouts: {idle: .inf}", "providers[0].timeouts.idle", 6, "finite number"),
    ("timeouts: {total: -1}", "providers[0].timeouts.total", 6, "greater than 0"),
    ("midstream: resumed", "providers[0].midstream", 6, "'resume', 'restart' or 'raise'"),
    ("supports_prefill: 2", "providers[0].supports_prefill", 6, "true or false"),
    ("max_tokens: 0", "providers[0].max_tokens", 6, "greater than or equal to 1"),
    ("base_url: localhost:8080", "providers[0].base_url", 6, "http:// or https:// URL"),
    ("params: [1, 2]", "providers[0].params", 6, "must be a mapping (got a list)"),
    ("params: {model: other}", "providers[0].params", 6, "params may not set 'model'"),
    ("params: {stream: false}", "providers[0].params", 6, "failover always streams"),
    ("continue_prompt: '  '", "providers[0].continue_prompt", 6, "must not be empty"),
    ("missing_env: [X]", "providers[0].missing_env", 6, "computed from api_key"),
    ("api_key_env: X", "providers[0].api_key_env", 6, "computed from api_key"),
]


@pytest.mark.parametrize(("extra", "path", "line", "text"), PROVIDER_ERRORS)
def test_provider_errors_have_path_and_line(
    tmp_path: pathlib.Path, extra: str, path: str, line: int, text: str
) -> None:
    err = error(tmp_path, ONE + "    " + extra + "\n")
    assert issubclass(type(err), FailoverError) and issubclass(type(err), ValueError)
    assert (err.path, err.line) == (path, line), str(err)
    assert text in str(err)
    assert err.source is not None and err.source.endswith("config.yaml")
    assert str(err).startswith(f"{err.source}:{line}: {path}: ")
    assert len(problems(err)) == 1, str(err)


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        ("providers: []\n", "providers", 1, "at least one provider"),
        ("providers: {a: 1}\n", "providers", 1, "must be a list"),
        ("telemetry: {exporter: none}\n", "providers", 1, "'providers' is missing"),
        ("provider: []\n", "provider", 1, "did you mean 'providers'?"),
        ("providers:\n  - just-a-name\n", "providers[0]", 2, "must be a mapping (got a string)"),
        (ONE + "telemetry: {exporter: jaeger}\n", "telemetry.exporter", 6, "'none', 'console' or 'otlp'"),
        (ONE + "telemetry: {endpoint: 'localhost:4317'}\n", "telemetry.endpoint", 6, "http:// or https://"),
        (ONE + "telemetry: {capture_content: 1}\n", "telemetry.capture_content", 6, "true or false"),
        (ONE + "telemetry: {service_name: ''}\n", "telemetry.service_name", 6, "must not be empty"),
        (ONE + "telemetry: [1]\n", "telemetry", 6, "must be a mapping"),
        (ONE + "defaults: {model: gpt-4o}\n", "defaults.model", 6, "cannot be set in defaults"),
        (ONE + "defaults: {retries: {}}\n", "defaults.retries", 6, "did you mean 'retry'?"),
        (
            ONE + "defaults:\n  timeouts:\n    total: 1\n",
            "defaults.timeouts.total",
            8,
            "must not exceed total (1)",
        ),
        (
            "providers:\n  - {type: openai, model: m, api_key: k}\n",
            "providers[0].name",
            2,
            "'name' is missing",
        ),
        (
            "providers:\n  - {name: a, type: openai, api_key: k}\n",
            "providers[0].model",
            2,
            "'model' is missing",
        ),
        (
            "providers:\n  - {name: a, type: openai, model: m}\n",
            "providers[0].api_key",
            2,
            "'api_key' is missing",
        ),
        ("providers:\n  - {name: a, type: openai, model: m, api_key: }\n", "providers[0].api_key", 2, "null"),
        (
            "providers:\n  - {name: a, type: openai, model: m, api_key: ''}\n",
            "providers[0].api_key",
            2,
            "empty",
        ),
        (
            "providers:\n  - {name: a, type: openai, model: m, api_key: 12}\n",
            "providers[0].api_key",
            2,
            "string",
        ),
        (
            "providers:\n  - {name: a b, type: openai, model: m, api_key: k}\n",
            "providers[0].name",
            2,
            "letters",
        ),
        (
            "providers:\n  - {name: a, type: openai, model: '', api_key: k}\n",
            "providers[0].model",
            2,
            "empty",
        ),
        (
            "providers:\n  - {name: a, type: openai, model: 4, api_key: k}\n",
            "providers[0].model",
            2,
            "string",
        ),
    ],
)
def test_file_level_errors(tmp_path: pathlib.Path, text: str, path: str, line: int, message: str) -> None:
    err = error(tmp_path, text)
    assert (err.path, err.line) == (path, line), str(err)
    assert message in str(err)


def test_duplicate_provider_names(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, ONE + "  - {name: Main, type: anthropic, model: c, api_key: k}\n")
    assert (err.path, err.line) == ("providers[1].name", 6)
    assert "duplicate provider name 'Main'" in str(err) and "providers[0] at line 2" in str(err)


def test_invalid_defaults_reported_once_at_defaults(tmp_path: pathlib.Path) -> None:
    # Three providers inherit the bad value; the user wrote it once, so it is reported once, there.
    err = error(
        tmp_path,
        """\
        providers:
          - {name: a, type: openai, model: m, api_key: k}
          - {name: b, type: openai, model: m, api_key: k}
          - {name: c, type: openai, model: m, api_key: k, retry: {max_attempts: 2}}
        defaults:
          retry:
            max_attempts: 0
        """,
    )
    assert (err.path, err.line) == ("defaults.retry.max_attempts", 7)
    assert len(problems(err)) == 1, str(err)


def test_cross_field_error_points_at_the_value_the_user_wrote(tmp_path: pathlib.Path) -> None:
    # total from defaults, first_token on the provider: the provider's line is the one to fix.
    err = error(
        tmp_path,
        """\
        providers:
          - name: a
            type: openai
            model: m
            api_key: k
            timeouts:
              first_token: 50
        defaults:
          timeouts: {total: 40}
        """,
    )
    assert (err.path, err.line) == ("providers[0].timeouts.first_token", 7)
    assert "first_token (50) must not exceed total (40)" in str(err)


def test_several_problems_in_one_error(tmp_path: pathlib.Path) -> None:
    err = error(
        tmp_path,
        """\
        providers:
          - name: a
            type: openai
            model: m
            api_key: k
            retry: {max_attempts: 0}
          - name: b
            type: anthropc
            model: m
            api_key: k
            timeouts: {first_token: 500}
        telemetry:
          exportr: otlp
        """,
    )
    source = err.source
    assert (err.path, err.line) == ("providers[0].retry.max_attempts", 6)  # the first, in file order
    lines = problems(err)
    assert len(lines) == 4, str(err)
    expected = [
        (6, "providers[0].retry.max_attempts", "greater than or equal to 1"),
        (8, "providers[1].type", "'openai' or 'anthropic'"),
        (11, "providers[1].timeouts.first_token", "must not exceed total"),
        (13, "telemetry.exportr", "did you mean 'exporter'?"),
    ]
    for text, (line, path, fragment) in zip(lines, expected, strict=True):
        assert text.startswith(f"{source}:{line}: {path}: "), text
        assert fragment in text
    assert "pydantic" not in str(err) and "http" not in str(err) and "type=" not in str(err)


# --------------------------------------------------------------------------- YAML itself


def test_duplicate_keys_name_both_lines(tmp_path: pathlib.Path) -> None:
    err = error(
        tmp_path,
        """\
        providers:
          - name: a
            type: openai
            model: gpt-4o
            api_key: k
            model: gpt-4o-mini
        """,
    )
    assert (err.path, err.line) == ("providers[0].model", 6)
    assert "duplicate key 'model' (first at line 4, again at line 6)" in str(err)


def test_duplicate_top_level_and_nested_keys_all_reported(tmp_path: pathlib.Path) -> None:
    err = error(
        tmp_path,
        ONE + "    retry:\n      max_attempts: 2\n      max_attempts: 3\n"
        "providers:\n  - {name: b, type: openai, model: m, api_key: k}\n",
    )
    text = str(err)
    assert "duplicate key 'max_attempts' (first at line 7, again at line 8)" in text
    assert "duplicate key 'providers' (first at line 1, again at line 9)" in text


def test_merge_key_override_is_not_a_duplicate(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - &base {name: a, type: openai, model: m, api_key: k}
          - <<: *base
            name: b
            model: n
        """,
    )
    assert [(p.name, p.model) for p in cfg.providers] == [("a", "m"), ("b", "n")]


def test_invalid_yaml_reports_its_line(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, "providers:\n  - name: a\n    type: [openai\n")
    assert err.line is not None and err.line >= 3
    assert "invalid YAML" in str(err) and err.path is None


def test_yaml_with_tabs_is_invalid(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, "providers:\n\t- name: a\n")
    assert err.line == 2 and "invalid YAML" in str(err)


@pytest.mark.parametrize(
    "text",
    [
        "providers: !!python/object/apply:os.system ['echo pwned']\n",
        "providers:\n  - !!python/object:builtins.dict {name: a}\n",
        "x: !!python/name:os.system\n",
    ],
)
def test_yaml_cannot_run_code(tmp_path: pathlib.Path, text: str) -> None:
    err = error(tmp_path, text)
    assert "could not determine a constructor" in str(err) and err.line is not None


def test_recursive_alias_is_an_error_not_a_crash(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, "providers: &p [*p]\n")
    assert "recursive alias" in str(err)


def test_alias_bomb_is_refused_quickly(tmp_path: pathlib.Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    err = error(tmp_path, "\n".join(levels) + "\n")
    assert "expands to more than" in str(err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("# only a comment\n\n", "the file is empty"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("just text\n", "top level must be a mapping"),
        ("a: 1\n---\nb: 2\n", "invalid YAML"),
        (b"providers: \xff\xfe\n", "not UTF-8"),
    ],
)
def test_unusable_files(tmp_path: pathlib.Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={})
    assert info.value.source == str(path)


def test_missing_file_and_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.source == str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_non_string_keys(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, ONE + "    on: true\n")  # YAML 1.1 reads an unquoted `on` as a boolean
    assert (err.path, err.line) == ("providers[0]", 6) and "keys must be strings" in str(err)


# --------------------------------------------------------------------------- secrets


KEYED = f"""\
providers:
  - name: main
    type: openai
    model: gpt-4o
    api_key: {SECRET}
    breaker: {{storage: "redis://:hunter2pass@redis:6379/0"}}
"""


def test_secret_not_in_repr_str_or_describe(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, KEYED)
    p = cfg.providers[0]
    assert p.api_key is not None and p.api_key.get_secret_value() == SECRET
    for text in (
        repr(cfg),
        str(cfg),
        repr(p),
        str(p),
        repr(p.api_key),
        str(p.api_key),
        describe(cfg),
        repr(p.breaker),
    ):
        assert SECRET_BODY not in text
        assert "hunter2pass" not in text  # the redis password: masked in repr and describe
    assert SECRET_BODY not in str(p.model_dump())  # the breaker needs its URL, but the key stays wrapped
    assert p.breaker.storage == "redis://:hunter2pass@redis:6379/0"
    shown = describe(cfg)
    assert "****WXYZ" in shown


def test_secret_not_in_error_messages(tmp_path: pathlib.Path) -> None:
    # Other problems in the same file, and a problem on the api_key line itself.
    err = error(tmp_path, KEYED + "    retry: {max_attempts: 0}\n    bogus: 1\n")
    assert SECRET_BODY not in str(err) and SECRET_BODY not in repr(err.args)
    assert len(problems(err)) == 2
    # A YAML syntax error on the key's line: PyYAML's own message would quote the line.
    err = error(tmp_path, ONE.replace("literal-key", f"{SECRET}: broken"))
    assert SECRET_BODY not in str(err) and err.line == 5
    # A malformed reference inside a key.
    err = error(tmp_path, ONE.replace("literal-key", f"{SECRET}${{oops"))
    assert err.path == "providers[0].api_key" and SECRET_BODY not in str(err)
    # A key of the wrong type.
    err = error(tmp_path, ONE.replace("literal-key", "[" + SECRET + "]"))
    assert err.path == "providers[0].api_key" and SECRET_BODY not in str(err)
    # The redis password.
    err = error(tmp_path, ONE + "    breaker: {storage: 'redis://:hunter2pass@h:nope/0'}\n")
    assert "hunter2pass" not in str(err) and "****" in str(err)


def test_secret_not_in_validation_errors_of_models_built_in_code() -> None:
    with pytest.raises(ValidationError) as info:
        ProviderConfig(name="a", type="openai", api_key=SecretStr(SECRET))  # type: ignore[call-arg]
    assert SECRET_BODY not in str(info.value)
    with pytest.raises(ValidationError) as info2:
        ProviderConfig.model_validate({"name": "a", "type": "nope", "model": "m", "api_key": SECRET})
    assert SECRET_BODY not in str(info2.value)


def test_secret_not_in_logs(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = load(
        tmp_path,
        KEYED + "  - {name: other, type: anthropic, model: c, api_key: '${UNSET_KEY}'}\n",
        env={},
    )
    assert [p.usable for p in cfg.providers] == [True, False]
    assert caplog.records, "the unset variable should have been logged"
    for record in caplog.records:
        assert SECRET_BODY not in record.getMessage() and "hunter2pass" not in record.getMessage()


def test_describe_contents(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - {name: openai, type: openai, model: gpt-4o, api_key: "${OPENAI_API_KEY}",
             params: {seed: 1, extra_headers: {x-api-key: abcdefghijklmnopqrst}}}
          - name: claude
            type: anthropic
            model: claude-sonnet-4-5
            api_key: short-key
            base_url: https://proxy.example/anthropic
            midstream: restart
            retry: {max_attempts: 1}
        telemetry: {exporter: console}
        """,
    )
    text = describe(cfg)
    assert text.index("1. openai") < text.index("2. claude")
    assert "MISSING: $OPENAI_API_KEY is not set" in text
    assert "short-key" not in text and "abcdefghijklmnopqrst" not in text and "****qrst" in text
    assert "https://proxy.example/anthropic" in text and "max_attempts=1" in text
    assert "restart" in text and "max_tokens:  1024" in text and "first_token=10s" in text
    assert "exporter=console" in text and "capture_content=false" in text
    assert "1 of 2 providers usable; skipped: openai" in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "(none)"),
        ("", "(none)"),
        ("abc", "****"),
        ("x" * 15, "****"),
        ("sk-0123456789ABCD", "****ABCD"),
        ("0123456789abcdef", "****cdef"),
    ],
)
def test_mask_secret(value: str | None, shown: str) -> None:
    assert mask_secret(value) == shown


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
    seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
    initial = draw(seconds)
    return {
        "max_attempts": draw(st.integers(min_value=1, max_value=10**6)),
        "initial_backoff": initial,
        "max_backoff": draw(
            st.floats(min_value=initial, max_value=2e6, allow_nan=False, allow_infinity=False)
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
