"""Hostile input: each of these once escaped as another exception (or loaded and broke every call).
Now each is one ConfigError naming the file, the line and the key path, and never quoting a secret."""

from __future__ import annotations

import pathlib

import pytest
from tests.test_config_support import ONE, SECRET, SECRET_BODY, error, load, problems, write

from failover.config import load_config, parse_config
from failover.errors import ConfigError


def entry(**extra: object) -> dict[str, object]:
    return {"name": "main", "type": "openai", "model": "gpt-4o", "api_key": "k", **extra}


def expect(err: ConfigError, path: str | None, line: int | None, *fragments: str) -> None:
    assert (err.path, err.line) == (path, line), str(err)
    assert err.source is not None and str(err).startswith(f"{err.source}:")
    for fragment in fragments:
        assert fragment in str(err), str(err)


# --------------------------------------------------------------------------- values YAML cannot construct


def test_impossible_date_is_a_config_error(tmp_path: pathlib.Path) -> None:
    # Was: ValueError "day is out of range for month" from PyYAML's timestamp constructor.
    err = error(tmp_path, ONE.replace("gpt-4o", "2024-02-30"))
    expect(err, "providers[0].model", 4, "invalid YAML: not a valid date or time", "quote the value")


def test_a_real_date_where_text_is_needed_says_quote_it(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, ONE.replace("gpt-4o", "2024-02-28"))
    expect(err, "providers[0].model", 4, "valid string", "got a date: quote it")


@pytest.mark.parametrize(
    ("value", "tag"),
    [("!!int x", "!!int"), ("!!float x", "!!float"), ("!!bool maybe", "!!bool"), ("!!timestamp x", None),
     ("!!int 0x", "!!int"), ("!!binary ÿ", None), ("!!set [1]", None)],
)
def test_explicit_tag_that_cannot_construct_its_value(tmp_path: pathlib.Path, value: str, tag: str | None) -> None:
    # Was: ValueError (!!int), KeyError (!!bool), TypeError (!!timestamp) from PyYAML's constructors.
    err = error(tmp_path, ONE + f"    max_tokens: {value}\n")
    expect(err, "providers[0].max_tokens", 6, "invalid YAML")
    if tag:
        assert f"cannot be read as {tag}" in str(err)
    assert len(problems(err)) == 1, str(err)


def test_integer_past_pythons_digit_limit(tmp_path: pathlib.Path) -> None:
    # Was: ValueError "Exceeds the limit (4300 digits) for integer string conversion".
    err = error(tmp_path, ONE + "    max_tokens: " + "9" * 5000 + "\n")
    expect(err, "providers[0].max_tokens", 6, "an integer with more than 4300 digits")
    assert "9999999999" not in str(err)


def test_huge_integer_from_code_or_env_is_reported_without_its_digits() -> None:
    # repr() of such an int raises; the message must not try to quote it.
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": [entry(max_tokens=10**5000)]}, env={})
    expect(info.value, "providers[0].max_tokens", None, "less than or equal to 1000000000")
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": [entry(max_tokens="${BIG}")]}, env={"BIG": "9" * 5000})
    expect(info.value, "providers[0].max_tokens", None, "the value of ${BIG}")
    assert "99999" not in str(info.value)


# --------------------------------------------------------------------------- characters YAML refuses


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\ufffe"])
def test_control_character_in_the_file(tmp_path: pathlib.Path, char: str) -> None:
    # Was: yaml.reader.ReaderError, raised while the loader was created, before any try.
    text = ONE.replace("literal-key", f"{SECRET}{char}")
    err = error(tmp_path, text)
    expect(err, None, 5, "invalid YAML", f"U+{ord(char):04X}", "not allowed")
    assert SECRET_BODY not in str(err)


def test_escaped_lone_surrogate_is_not_valid_text(tmp_path: pathlib.Path) -> None:
    # A "\ud800" escape builds a string no request body can encode: every call would fail.
    err = error(tmp_path, ONE.replace("gpt-4o", '"gpt\\ud800"'))
    expect(err, "providers[0].model", 4, "not valid Unicode text")


# --------------------------------------------------------------------------- nesting and aliases


@pytest.mark.parametrize(
    "text",
    [
        "providers: " + "{a: " * 600 + "1" + "}" * 600 + "\n",
        "providers: " + "[" * 600 + "]" * 600 + "\n",
        "providers:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(600)),
    ],
    ids=["flow-mapping", "flow-sequence", "block-mapping"],
)
def test_deep_nesting_in_the_text(tmp_path: pathlib.Path, text: str) -> None:
    # Was: RecursionError from PyYAML's recursive composer.
    err = error(tmp_path, text)
    assert err.line is not None and "nested more than 64 levels deep" in str(err)


def test_deep_nesting_through_aliases(tmp_path: pathlib.Path) -> None:
    # Each alias is built as its own copy: 600 aliases of aliases nest 600 levels without nesting the text.
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 600)]
    err = error(tmp_path, "\n".join(lines) + "\n")
    assert "nested more than 64 levels deep (through aliases)" in str(err)


def test_merge_keys_that_merge_themselves_or_nest_deeply(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, "providers:\n  - &p {name: a, <<: *p}\n")
    assert "recursive alias" in str(err) and (err.path, err.line) == ("providers[0]", 2)
    err = error(tmp_path, "a: &a {x: 1}\nb: &b\n  <<: [*a, *b]\n")
    assert "config.yaml:2: b: recursive alias: this value contains itself" in str(err)
    chain = ["m0: &m0 {k: 1}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}}}" for i in range(1, 600)]
    err = error(tmp_path, "\n".join(chain) + "\n")
    assert "nested more than 64 levels deep" in str(err)


def test_merge_bomb_is_refused_quickly(tmp_path: pathlib.Path) -> None:
    # PyYAML's own flatten_mapping copies every merged entry: 10 merges of 10 over 8 levels is 10**9.
    levels = ["m0: &m0 {" + ", ".join(f"k{j}: {j}" for j in range(10)) + "}"]
    levels += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}" for i in range(1, 9)]
    err = error(tmp_path, "\n".join(levels) + "\n")
    assert "expands to more than" in str(err)


def test_recursive_and_deep_mappings_from_code() -> None:
    looped: dict[str, object] = entry()
    looped["params"] = {"extra_body": looped}
    with pytest.raises(ConfigError, match="recursive value") as info:
        parse_config({"providers": [looped]}, env={})
    assert info.value.path == "providers[0].params.extra_body"
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["x"] = node = {}
    with pytest.raises(ConfigError, match="nested more than 64 levels deep"):
        parse_config({"providers": [entry(params={"extra_body": deep})]}, env={})


def test_file_larger_than_a_configuration(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, ONE + "#" + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB") as info:
        load_config(path, env={})
    assert info.value.source == str(path)


# --------------------------------------------------------------------------- values that would break every call


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("base_url", "http://localhost:99999/v1", "invalid port"),
        ("base_url", "http://localhost:0/v1", "invalid port"),
        ("base_url", "http://localhost:x/v1", "invalid port"),
        ("base_url", "http://[::1/v1", "no valid host"),
        ("base_url", "http://:8080/v1", "no valid host"),
        ("base_url", "http://999.1.1.1/v1", "no valid host"),
        ("base_url", "http://bad host/v1", "spaces, control or non-ASCII"),
        ("base_url", "http://hôst/v1", "spaces, control or non-ASCII"),
        ("breaker", "{storage: 'redis://localhost:99999/0'}", "invalid port"),
        ("breaker", "{storage: 'redis://:pw@:6379/0'}", "no valid host"),
    ],
)
def test_urls_are_checked_as_the_clients_will_read_them(tmp_path: pathlib.Path, key: str, value: str,
                                                        fragment: str) -> None:
    # Was: loaded, then every call raised a bare ValueError (or httpx.InvalidURL) deep in the SDK.
    quoted = value if value.startswith("{") else f"'{value}'"
    err = error(tmp_path, ONE + f"    {key}: {quoted}\n")
    path = "providers[0].base_url" if key == "base_url" else "providers[0].breaker.storage"
    expect(err, path, 6, fragment)


def test_telemetry_endpoint_port_is_checked(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, ONE + "telemetry: {endpoint: 'http://collector:70000'}\n")
    expect(err, "telemetry.endpoint", 6, "invalid port")


SECONDS = [
    "retry: {initial_backoff: 1.0e10, max_backoff: 1.0e10}",
    "retry: {max_retry_after: 1.0e10}",
    "breaker: {reset_timeout: 1.0e10}",
    "timeouts: {connect: 1.0e10, first_token: 1.0e10, idle: 1.0e10, total: 1.0e10}",
]


@pytest.mark.parametrize("extra", SECONDS)
def test_every_seconds_value_is_capped_at_one_day(tmp_path: pathlib.Path, extra: str) -> None:
    # Was: loaded, then every sync call raised OverflowError ("timeout value is too large").
    err = error(tmp_path, ONE + "    " + extra + "\n")
    count = extra.count("1.0e10")
    assert len(problems(err)) == count, str(err)
    assert str(err).count("must be at most 86400 seconds (one day)") == count
    assert err.line == 6 and err.path is not None and err.path.startswith("providers[0].")


def test_one_day_itself_is_accepted(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, ONE + "    timeouts: {total: 86400, idle: 86400}\n    breaker: {reset_timeout: 86400}\n")
    assert cfg.providers[0].timeouts.total == 86400.0 and cfg.providers[0].breaker.reset_timeout == 86400.0


def test_attempts_and_multiplier_keep_the_backoff_finite(tmp_path: pathlib.Path) -> None:
    # 2.0 ** 1024 is an OverflowError in the retry policy: max_attempts and multiplier are bounded.
    err = error(tmp_path, ONE + "    retry: {max_attempts: 2000, multiplier: 1000}\n")
    assert len(problems(err)) == 2 and "less than or equal to 100" in str(err)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ("{seed: 2024-01-01}", "seed is date, not a JSON value"),
        ("{extra_body: {t: .nan}}", "extra_body.t is not a finite number"),
        ("{extra_body: {t: [1, .inf]}}", "extra_body.t[1] is not a finite number"),
        ("{extra_body: !!set {a, b}}", "extra_body is set, not a JSON value"),
    ],
)
def test_params_must_be_json(tmp_path: pathlib.Path, params: str, fragment: str) -> None:
    # The SDK serialises params into the body: each of these failed every call with a TypeError/ValueError.
    err = error(tmp_path, ONE + f"    params: {params}\n")
    expect(err, "providers[0].params", 6, "params are sent as JSON", fragment)


@pytest.mark.parametrize("key", ["sk-ünïcode-key", "sk-key\x07bell", "sk-key\u2028sep"])
def test_api_key_must_fit_in_an_http_header(key: str) -> None:
    # httpx encodes headers as ASCII: this failed every call with a UnicodeEncodeError.
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": [entry(api_key="${K}")]}, env={"K": key})
    expect(info.value, "providers[0].api_key", None, "printable ASCII")
    assert key not in str(info.value) and "sk-" not in str(info.value)


# --------------------------------------------------------------------------- values from ${VAR} are never echoed

ENV = {"OPENAI_API_KEY": SECRET, "PLAIN": SECRET, "FIVE": "5"}


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    [
        ("max_tokens: ${OPENAI_API_KEY}", "providers[0].max_tokens", "the value of ${OPENAI_API_KEY}"),
        ("retry: {max_attempts: '${PLAIN}'}", "providers[0].retry.max_attempts", "the value of ${PLAIN}"),
        ("base_url: ${PLAIN}", "providers[0].base_url", "the value of ${PLAIN}"),
        ("base_url: http://${PLAIN}:99999/", "providers[0].base_url", "a value built from ${PLAIN}"),
        ("midstream: ${PLAIN}", "providers[0].midstream", "the value of ${PLAIN}"),
        ("supports_prefill: ${PLAIN}", "providers[0].supports_prefill", "the value of ${PLAIN}"),
        ("breaker: {storage: '${PLAIN}'}", "providers[0].breaker.storage", "the value of ${PLAIN}"),
        ("breaker: {namespace: '${PLAIN}/x'}", "providers[0].breaker.namespace", "a value built from ${PLAIN}"),
        ("timeouts: {total: '${FIVE}'}", "providers[0].timeouts.total", "first_token, idle must not exceed total"),
    ],
)
def test_a_value_read_from_the_environment_is_never_echoed(tmp_path: pathlib.Path, extra: str, path: str,
                                                           fragment: str) -> None:
    # Was: "... (got 'sk-test-SECRET-…')": a key read into the wrong field, printed in the error.
    err = error(tmp_path, ONE + "    " + extra + "\n", env=ENV)
    expect(err, path, 6, fragment)
    assert SECRET_BODY not in str(err) and "(5)" not in str(err)


@pytest.mark.parametrize("key", ["model", "name", "type"])
def test_shown_values_may_not_come_from_a_secret_variable(tmp_path: pathlib.Path, key: str) -> None:
    # `model: ${OPENAI_API_KEY}` loaded, and the key was then printed in every log line and span.
    value = {"model": "gpt-4o", "name": "main", "type": "openai"}[key]
    err = error(tmp_path, ONE.replace(f"{key}: {value}", f"{key}: ${{OPENAI_API_KEY}}"), env=ENV)
    assert err.path == f"providers[0].{key}" and "must not be read from ${OPENAI_API_KEY}" in str(err)
    assert SECRET_BODY not in str(err) and len(problems(err)) == 1, str(err)


def test_names_from_the_environment_are_not_echoed_in_duplicates_or_chains(tmp_path: pathlib.Path) -> None:
    text = ONE + "  - {name: '${PLAIN_NAME}', type: openai, model: m, api_key: k}\nchains: {x: ['${OTHER}']}\n"
    err = error(tmp_path, text, env={"PLAIN_NAME": "Main", "OTHER": "nosuch"})
    assert "duplicate provider name the value of ${PLAIN_NAME}" in str(err)
    assert "unknown provider the value of ${OTHER}" in str(err)
    assert "'Main'" not in str(err) and "nosuch" not in str(err)
    # Found by the fuzz test: the list of known providers named one read from the environment.
    err = error(tmp_path, ONE.replace("name: main", "name: ${PLAIN}") + "chains: {x: [opnai]}\n", env=ENV)
    assert "unknown provider 'opnai'; providers: the value of ${PLAIN}" in str(err)
    assert SECRET_BODY not in str(err)


# --------------------------------------------------------------------------- PyYAML's own errors, in our words


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (ONE + f"    model: '{SECRET}\n", 7, "found unexpected end of stream (while scanning a quoted scalar that "
                                            "starts at line 6)"),
        (ONE.replace("literal-key", f"{SECRET}: nested"), 5, "mapping values are not allowed here"),
        (ONE + f"   bad: {SECRET}\n", 6, "expected <block end>"),
        (ONE + f"    model: *{SECRET}\n", 6, "undefined alias"),
        ("providers:\n\t- name: a\n", 2, "a tab character: YAML indents with spaces only"),
        ("a: 1\n---\nb: 2\n", 2, "several YAML documents"),
    ],
)
def test_yaml_errors_in_our_words_without_the_source_line(tmp_path: pathlib.Path, text: str, line: int,
                                                          fragment: str) -> None:
    err = error(tmp_path, text)
    expect(err, None, line, "invalid YAML: ", fragment)
    assert str(err).startswith(f"{err.source}:{line}: invalid YAML: ")
    assert "<unicode string>" not in str(err) and "column" not in str(err)
    assert SECRET_BODY[:10] not in str(err)  # the line is never quoted, nor a name from it


def test_constructor_error_has_the_key_path(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, ONE + "    params: !!python/object/apply:os.system ['echo pwned']\n")
    expect(err, "providers[0].params", 6, "invalid YAML: could not determine a constructor")
