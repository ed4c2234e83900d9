"""`${VAR}` interpolation as a table: what each written form becomes."""

from __future__ import annotations

import pytest

from failover.config.env import InterpolationError, interpolate, looks_secret, value_of

ENV = {"A": "1", "B": "two", "EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "result", "refs", "unset", "empty"),
    [
        ("plain", "plain", [], [], []),
        ("${A}", "1", ["A"], [], []),
        ("x-${A}-${B}", "x-1-two", ["A", "B"], [], []),
        ("${NOPE}", "", ["NOPE"], ["NOPE"], []),
        ("${NOPE:-dflt}", "dflt", ["NOPE"], [], ["NOPE"]),
        ("${EMPTY:-dflt}", "dflt", ["EMPTY"], [], ["EMPTY"]),  # as in the shell: empty takes the default
        ("${EMPTY}", "", ["EMPTY"], [], ["EMPTY"]),
        ("${A:-}", "1", ["A"], [], []),
        ("$${A}", "${A}", [], [], []),
        ("cost: $5 $ $A", "cost: $5 $ $A", [], [], []),
        ("${A:-a:b c}", "1", ["A"], [], []),
        ("${NOPE:-a:b c}", "a:b c", ["NOPE"], [], ["NOPE"]),
    ],
)
def test_interpolation(text: str, result: str, refs: list[str], unset: list[str], empty: list[str]) -> None:
    resolved = interpolate(text, ENV)
    assert (resolved.text, resolved.refs, resolved.unset, resolved.empty) == (result, refs, unset, empty)


@pytest.mark.parametrize("text", ["${1X}", "${A:B}", "${UNCLOSED", "${A:-${B}}", "${}", "${ A}", "x${-}"])
def test_malformed_references(text: str) -> None:
    with pytest.raises(InterpolationError, match="invalid variable reference"):
        interpolate(text, ENV)


def test_a_secret_text_is_never_quoted() -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate("sk-SECRET${oops", ENV, secret=True)
    assert "SECRET" not in str(info.value) and "oops" not in str(info.value)
    with pytest.raises(InterpolationError) as info:
        interpolate("${" + "x" * 100, ENV)
    assert "xxxxx" not in str(info.value)  # a long reference is not reprinted


@pytest.mark.parametrize(
    ("name", "secret"),
    [("OPENAI_API_KEY", True), ("ANTHROPIC_API_KEY", True), ("GITHUB_TOKEN", True), ("DB_PASSWORD", True),
     ("AWS_SECRET_ACCESS_KEY", True), ("KEY", True), ("api_key", True), ("GCP_CREDENTIALS", True),
     ("MODEL", False), ("KEYBOARD_LAYOUT", False), ("MONKEY", False), ("TOKENIZER", False), ("HOST", False)],
)
def test_secret_looking_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


@pytest.mark.parametrize(
    ("text", "names", "said"),
    [("${K}", ["K"], "the value of ${K}"), (" ${K} ", ["K"], "the value of ${K}"),
     ("http://${H}:${P}/", ["H", "P"], "a value built from ${H}, ${P}"),
     ("${A}${A}", ["A", "A"], "a value built from ${A}"), ("${K:-x}", ["K"], "the value of ${K}")],
)
def test_how_a_value_from_the_environment_is_named(text: str, names: list[str], said: str) -> None:
    assert value_of(text, names) == said
