"""Every kind of mistake is a ConfigError naming file, line and key path; YAML itself."""

from __future__ import annotations

import pathlib

import pytest
from tests.test_config_support import ONE, error, load, problems

from failover.config import load_config
from failover.errors import ConfigError, FailoverError

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
