"""Fuzzing: whatever the bytes of the file or the contents of the mapping, only ConfigError escapes
load_config, parse_config and Router.reload(), and no error quotes a value read from the environment.

Bounded to run in seconds: a few hundred examples per strategy, no deadline (the machine is shared).
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.test_config_support import ROOT, SECRET, SECRET_BODY

from failover import Router
from failover.config import Config, load_config, parse_config
from failover.errors import ConfigError

EXAMPLE = (ROOT / "config.yaml").read_text(encoding="utf-8")
# The example with the optional parts switched on, so that chains and capabilities are mutated too.
_ANTHROPIC_MAX_TOKENS = next(line for line in EXAMPLE.splitlines() if line.startswith("    max_tokens: 1024"))
RICH = EXAMPLE.replace(_ANTHROPIC_MAX_TOKENS, _ANTHROPIC_MAX_TOKENS + """
    capabilities: {tools: true}
    params: {metadata: {user_id: u1}, extra_body: {tags: [a, b]}}""") + """\
chains:
  default: [openai, anthropic]
  claude-first: [anthropic, openai]
"""
ENV = {
    "OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET,
    "FUZZ_API_KEY": SECRET,  # named like a secret
    "FUZZ_VALUE": SECRET,  # a secret under a harmless name
    "FUZZ_BIG": "9" * 5000, "FUZZ_CTRL": "a\x00b\x07c", "FUZZ_SURROGATE": "x\udcffy", "FUZZ_NUM": "1e400",
    "FUZZ_EMPTY": "", "FUZZ_URL": "http://h:99999/", "FUZZ_UNICODE": "clé-ünïcode",
}
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values a hurried or hostile editor might put anywhere.
ODD = [
    "9" * 5000, "-" + "9" * 4400, "1.0e10", "-1.0e10", "1e400", ".inf", "-.inf", ".nan", "0", "-1", "0x1F", "0o17",
    "1_000", "2024-02-30", "2024-02-28", "2024-02-28T25:00:00", "!!int x", "!!float x", "!!bool maybe",
    "!!timestamp x", "!!binary ÿ", "!!set {a, b}", "!!omap [a: 1]", "!!python/object/apply:os.system ['true']",
    "!!str", "[[1, [2, [3]]], {a: b}]", "{}", "[]", "null", "~", "yes", "off", '"\\x07ctl"', '"\\0"', '"\\ud800"',
    '"\\t\\n"', '""', "' '", "${FUZZ_API_KEY}", "${FUZZ_VALUE}", "${UNSET_FUZZ_VAR}", "${FUZZ_BIG}", "${FUZZ_CTRL}",
    "${FUZZ_SURROGATE}", "${FUZZ_NUM}", "${FUZZ_EMPTY}", "${FUZZ_URL}", "${FUZZ_UNICODE}", "x-${FUZZ_VALUE}-y",
    "${BAD", "${1X}", "$${X}", "${A:-${B}}", "http://h:99999", "http://[::1", "'http://a b/'", "redis://:pw@h:0/x",
    "rediss://h/zero", "*undefined", "&a [*a]", "'a: b'", "a: b", "|\n  block\n", ">\n  folded\n", "\t", '"', "'",
    "{", "[", "- x", "? x", "@x", "`x`", "%x", "!", "&", "*", "x" * 300, "openai", "anthropic", "resume", "raise",
    "memory", "[openai, openai]", "[nosuch]", "{tools: 2}", "{tool: true}", "[1.5, .nan]",
]
PLAUSIBLE = ["1", "2", "3", "0.1", "2.5", "60", "true", "false", "null", "{}", "restart", "raise", "gpt-4o-mini",
             "${FUZZ_VALUE}", "${FUZZ_EMPTY:-4}", "'${NOPE:-x}'", "http://localhost:8080/v1", "[anthropic]"]
YAMLISH = [
    "providers", "defaults", "chains", "telemetry", "retry", "breaker", "timeouts", "capabilities", "name", "type",
    "model", "api_key", "openai", "k", ":", ": ", " ", "\n", "  ", "- ", "{", "}", "[", "]", ", ", "&a ", "*a", "<<: ",
    "!!int ", "!!map ", "'", '"', "# c", "${X}", "${FUZZ_VALUE}", "1", "0.5", "-1", "?", "|", ">", "%YAML 1.1\n",
    "---\n", "...\n", "\t", "\x00", "é", "@", "\\", "\r\n", "\ufeff", "\u2028", "9" * 50,
]


def check(call: Callable[[], Config]) -> Config | None:
    """Run `call`: a Config, or a ConfigError that names its source and quotes no secret; else the test fails."""
    try:
        cfg = call()
    except ConfigError as exc:
        text = str(exc)
        assert text and exc.source is not None
        assert SECRET_BODY not in text, text
        return None
    assert isinstance(cfg, Config)
    return cfg


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("fuzz") / "config.yaml"


def load_bytes(path: pathlib.Path, data: bytes) -> Config | None:
    path.write_bytes(data)
    return check(lambda: load_config(path, env=ENV))


# --------------------------------------------------------------------------- strategies


VALUE_LINE = re.compile(r"^(\s*(?:- )?[A-Za-z_]+:)( +)([^\s#].*?)(\s+#.*)?$")  # a key with a value


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """The example file with some values replaced by odd ones, as text (huge ints, tags, broken quotes...)."""
    lines = draw(st.sampled_from([EXAMPLE, RICH])).splitlines()
    candidates = [i for i, line in enumerate(lines) if VALUE_LINE.match(line)]
    odd = st.one_of(st.sampled_from(ODD), st.integers().map(str), st.floats().map(repr),
                    st.text(max_size=20).map(json.dumps), st.lists(st.sampled_from(YAMLISH), max_size=6).map("".join))
    # Half the swaps are plausible, so that valid files (and the router's rebuild) are exercised too.
    value = st.one_of(st.sampled_from(PLAUSIBLE), odd)
    for index in draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3, unique=True)):
        match = VALUE_LINE.match(lines[index])
        assert match is not None
        lines[index] = f"{match.group(1)} {draw(value)}"
    return "\n".join(lines) + "\n"


python_odd = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40), st.floats(),
              st.text(max_size=30), st.sampled_from(["${FUZZ_VALUE}", "${FUZZ_API_KEY}", "${NOPE}", "${FUZZ_NUM}"])),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))
    if path:
        yield path


def replace(document: Any, path: tuple[Any, ...], value: Any) -> None:
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@st.composite
def mutated_document(draw: st.DrawFn, values: st.SearchStrategy[Any] = python_odd) -> Any:
    """The example as data with some values (or whole sections) swapped for odd ones."""
    document = yaml.safe_load(draw(st.sampled_from([EXAMPLE, RICH])))
    paths = list(leaf_paths(document))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        try:
            replace(document, path, draw(values))
        except (KeyError, IndexError, TypeError):  # an earlier swap removed the parent
            pass
    return document


# --------------------------------------------------------------------------- load_config


@FAST
@given(st.binary(max_size=400))
def test_random_bytes(fuzz_file: pathlib.Path, data: bytes) -> None:
    load_bytes(fuzz_file, data)


@FAST
@given(st.integers(min_value=0, max_value=len(EXAMPLE)), st.binary(min_size=1, max_size=8))
def test_example_with_random_bytes_inserted(fuzz_file: pathlib.Path, at: int, data: bytes) -> None:
    raw = EXAMPLE.encode()
    load_bytes(fuzz_file, raw[:at] + data + raw[at:])


@FAST
@given(st.lists(st.sampled_from(YAMLISH), max_size=60).map("".join))
def test_random_yamlish_text(fuzz_file: pathlib.Path, text: str) -> None:
    load_bytes(fuzz_file, text.encode("utf-8", "surrogatepass"))


@FAST
@given(mutated_text())
def test_example_with_odd_values_as_text(fuzz_file: pathlib.Path, text: str) -> None:
    load_bytes(fuzz_file, text.encode())


@FAST
@given(mutated_document())
def test_example_with_odd_values_as_data(fuzz_file: pathlib.Path, document: Any) -> None:
    load_bytes(fuzz_file, yaml.safe_dump(document, allow_unicode=True).encode())
    check(lambda: parse_config(document, env=ENV))


# --------------------------------------------------------------------------- parse_config


class Weird:
    """An object a caller might leave in a mapping by mistake."""

    def __repr__(self) -> str:
        raise RuntimeError("a repr that fails")


code_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.builds(pow, st.just(10), st.just(5000)), st.floats(),
              st.text(max_size=20), st.binary(max_size=5), st.dates(), st.decimals(), st.complex_numbers(),
              st.builds(Weird), st.frozensets(st.integers(), max_size=2),
              st.sampled_from(["${FUZZ_VALUE}", "${FUZZ_BIG}"])),
    lambda children: (st.lists(children, max_size=3) | st.lists(children, max_size=3).map(tuple)
                      | st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.none()), children,
                                        max_size=3)),
    max_leaves=10,
)


@FAST
@given(mutated_document(code_values))
def test_parse_config_of_a_mapping_with_any_python_values(document: Any) -> None:
    check(lambda: parse_config(document, env=ENV))


@FAST
@given(code_values)
def test_parse_config_of_anything(value: Any) -> None:
    check(lambda: parse_config(value, env=ENV))
    check(lambda: parse_config({"providers": [value]}, env=ENV))


# --------------------------------------------------------------------------- Router.reload()


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Router, pathlib.Path]]:
    """A router built from the example file, and that file (each example rewrites it, then reloads)."""
    saved = {name: os.environ.get(name) for name in ENV}
    os.environ.update({k: v for k, v in ENV.items() if "\udcff" not in v and "\x00" not in v})
    path = tmp_path_factory.mktemp("reload") / "config.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    router = Router.from_yaml(path)
    yield router, path
    router.close()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_text(), mutated_document().map(lambda d: yaml.safe_dump(d, allow_unicode=True))))
def test_router_reload_of_a_mutated_file(router: tuple[Router, pathlib.Path], text: str) -> None:
    serving, path = router
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = serving.config
    try:
        config = serving.reload()
    except ConfigError as exc:
        assert SECRET_BODY not in str(exc)
        assert serving.config is before  # a rejected file leaves the router as it was
        return
    assert serving.config is config and [r.name for r in serving.routes] == [p.name for p in config.providers]


# --------------------------------------------------------------------------- a corpus of nasty files

ALIAS_BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                       + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)])
CORPUS: dict[str, bytes] = {
    "alias bomb": ALIAS_BOMB.encode(),
    "merge bomb": ("m0: &m0 {k: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}\n" for i in range(1, 9))).encode(),
    "recursive merge": b"a: &a {<<: *a}\n",
    "recursive sequence": b"providers: &p [*p]\n",
    "deep flow": b"providers: " + b"[{a: " * 400 + b"1" + b"}]" * 400 + b"\n",
    "deep block list": b"providers:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 500)),
    "alias chain": "\n".join(["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 400)]).encode(),
    "bom and crlf": b"\xef\xbb\xbfproviders:\r\n  - {name: a, type: openai, model: m, api_key: k}\r\n",
    "utf-16": "providers: []\n".encode("utf-16"),
    "nel and line separator": "providers:\n  - {name: a,\x85type: openai, model: m\u2028, api_key: k}\n".encode(),
    "directives": b"%YAML 1.1\n%TAG !x! tag:yaml.org,2002:\n---\nproviders: !x!seq []\n",
    "explicit python tag": b"providers: !<tag:yaml.org,2002:python/object/apply:os.system> ['true']\n",
    "complex keys": b"? [a, b]\n: 1\n? {c: d}\n: 2\n",
    "anchor on key": b"&k providers: [*k]\n",
    "huge line": b"providers: [{name: a, type: openai, api_key: k, model: " + b"x" * 50_000 + b"}]\n",
    "many providers": ("providers:\n" + "".join(
        f"  - {{name: p{i}, type: openai, model: m, api_key: k}}\n" for i in range(500))).encode(),
    "many duplicate keys": b"providers: []\n" * 2000,
    "json": json.dumps({"providers": [{"name": "a", "type": "openai", "model": "m", "api_key": "k"}]}).encode(),
    "only a document end": b"...\n",
    "null byte at start": b"\x00providers: []\n",
    "lone surrogate bytes": b"providers: [\xed\xa0\x80]\n",
    "tabs everywhere": b"providers:\n\t-\tname:\ta\n",
    "a date key": b"2024-02-30: x\nproviders: []\n",
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_nasty_files(fuzz_file: pathlib.Path, name: str) -> None:
    cfg = load_bytes(fuzz_file, CORPUS[name])
    if name not in ("bom and crlf", "json", "many providers", "nel and line separator", "huge line"):
        assert cfg is None, f"{name} loaded"
    else:
        assert cfg is not None and cfg.providers


def test_nasty_values_from_code() -> None:
    base = {"name": "a", "type": "openai", "model": "m", "api_key": "k"}
    for value in (10**5000, float("nan"), Weird(), b"bytes", decimal.Decimal("1e999999"), datetime.date.today(),
                  {1, 2}, complex(1, 2), "\udcff", "\x00"):
        for key in ("model", "max_tokens", "retry", "base_url", "params", "api_key", "name"):
            check(lambda key=key, value=value: parse_config({"providers": [{**base, key: value}]}, env=ENV))
        check(lambda value=value: parse_config({"providers": [base], "chains": {"x": [value]}}, env=ENV))
        check(lambda value=value: parse_config({"providers": [{**base, "params": {"extra_body": value}}]}, env=ENV))
