"""`chains:` and `capabilities:`: validated with lines, resolved by Config.chain(), shown by describe()."""

from __future__ import annotations

import pathlib

import pytest
from tests.test_config_support import error, load, problems

from failover.config import Capabilities, Config, ProviderConfig, describe, parse_config
from failover.errors import ConfigError

THREE = """\
providers:
  - {name: openai, type: openai, model: gpt-4o, api_key: k}
  - {name: openai-mini, type: openai, model: gpt-4o-mini, api_key: k}
  - {name: anthropic, type: anthropic, model: claude-sonnet-4-5, api_key: k}
"""


def names(chain: tuple[ProviderConfig, ...]) -> list[str]:
    return [p.name for p in chain]


# --------------------------------------------------------------------------- chains


def test_named_chains_and_the_default_rule(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, THREE + "chains:\n  default: [anthropic, openai]\n  cheap: [openai-mini, anthropic]\n")
    assert cfg.chains == {"default": ("anthropic", "openai"), "cheap": ("openai-mini", "anthropic")}
    assert names(cfg.chain()) == names(cfg.chain(None)) == names(cfg.chain("default")) == ["anthropic", "openai"]
    assert names(cfg.chain("cheap")) == ["openai-mini", "anthropic"]
    assert cfg.chain("cheap")[0] is cfg.providers[1]  # the very ProviderConfig objects, not copies


def test_without_a_default_chain_the_providers_order_is_the_default(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, THREE + "chains:\n  cheap: [openai-mini]\n")
    assert names(cfg.chain()) == names(cfg.chain("default")) == ["openai", "openai-mini", "anthropic"]
    bare = load(tmp_path, THREE)
    assert bare.chains == {} and bare.chain() == bare.providers and bare.chain("default") == bare.providers


def test_unknown_chain_is_a_key_error_naming_the_known_ones(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, THREE + "chains:\n  cheap: [openai-mini]\n  fast: [openai]\n")
    with pytest.raises(KeyError) as info:
        cfg.chain("cheep")
    assert "'cheep'" in str(info.value) and "default, cheap, fast" in str(info.value)
    with pytest.raises(KeyError, match="chains: default"):
        load(tmp_path, THREE).chain("cheap")


@pytest.mark.parametrize(
    ("chains", "path", "line", "fragment"),
    [
        ("  cheap: [openai, opnai]\n", "chains.cheap[1]", 6,
         "unknown provider 'opnai' (did you mean 'openai'?); providers: 'openai', 'openai-mini', 'anthropic'"),
        ("  cheap: [OpenAI]\n", "chains.cheap[0]", 6, "unknown provider 'OpenAI' (did you mean 'openai'?)"),
        ("  cheap: []\n", "chains.cheap", 6, "a chain must name at least one provider"),
        ("  cheap:\n", "chains.cheap", 6, "a chain must be a list of provider names (got null)"),
        ("  cheap: openai\n", "chains.cheap", 6, "must be a list of provider names (got a string)"),
        ("  cheap: [openai, anthropic, openai]\n", "chains.cheap[2]", 6, "'openai' is already in this chain (at [0])"),
        ("  cheap: [openai, 3]\n", "chains.cheap[1]", 6, "must be a provider name (got a number)"),
        ("  'che ap': [openai]\n", "chains.che ap", 6, "a chain name may only contain letters"),
        ("  cheap: [openai]\n  cheap: [anthropic]\n", "chains.cheap", 7, "duplicate key 'cheap'"),
    ],
)
def test_chain_errors_have_path_and_line(tmp_path: pathlib.Path, chains: str, path: str, line: int,
                                         fragment: str) -> None:
    err = error(tmp_path, THREE + "chains:\n" + chains)
    assert (err.path, err.line) == (path, line), str(err)
    assert fragment in str(err) and len(problems(err)) == 1, str(err)


def test_chain_problems_are_reported_with_the_providers_own(tmp_path: pathlib.Path) -> None:
    text = THREE.replace("model: gpt-4o,", "model: gpt-4o, retry: {max_attempt: 2},") + "chains:\n  x: [anthropik]\n"
    err = error(tmp_path, text)
    assert [line.split(": ")[1] for line in problems(err)] == ["providers[0].retry.max_attempt", "chains.x[0]"]


def test_chains_must_be_a_mapping_and_may_use_env(tmp_path: pathlib.Path) -> None:
    err = error(tmp_path, THREE + "chains: [openai]\n")
    assert (err.path, err.line) == ("chains", 5) and "mapping of chain names" in str(err)
    cfg = load(tmp_path, THREE + "chains:\n  default: ['${FIRST:-anthropic}', openai]\n", env={})
    assert cfg.chains["default"] == ("anthropic", "openai")


def test_chains_built_in_code_follow_the_same_rules() -> None:
    p = ProviderConfig(name="a", type="openai", model="m")
    assert Config(providers=(p,), chains={"x": ("a",)}).chain("x") == (p,)
    for chains in ({"x": ("b",)}, {"x": ()}, {"x": ("a", "a")}, {"bad name": ("a",)}):
        with pytest.raises(ValueError, match=r"chains\."):
            Config(providers=(p,), chains=chains)
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": [{"name": "a", "type": "openai", "model": "m", "api_key": "k"}],
                      "chains": {"x": ["b"]}}, source="app")
    assert str(info.value).startswith("app: chains.x[0]: unknown provider 'b'")


# --------------------------------------------------------------------------- capabilities


def test_capabilities_merge_per_key_over_defaults(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - {name: local, type: openai, model: llama3, api_key: none, capabilities: {tools: false, images: true}}
          - {name: b, type: openai, model: m, api_key: k}
          - {name: c, type: openai, model: m, api_key: k, capabilities: {json_schema: "${JS:-true}"}}
        defaults:
          capabilities: {images: false}
        """,
    )
    local, b, c = cfg.providers
    assert local.capabilities == Capabilities(tools=False, images=True, json_schema=None)
    assert b.capabilities == Capabilities(images=False)
    assert c.capabilities == Capabilities(images=False, json_schema=True)
    assert Capabilities() == Capabilities(tools=None, images=None, json_schema=None)


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    [
        ("capabilities: {tool: false}", "providers[0].capabilities.tool", "unknown key 'tool' (did you mean 'tools'?)"),
        ("capabilities: {images: 1}", "providers[0].capabilities.images", "true or false"),
        ("capabilities: [tools]", "providers[0].capabilities", "must be a mapping (got a list)"),
    ],
)
def test_capability_errors(tmp_path: pathlib.Path, extra: str, path: str, fragment: str) -> None:
    err = error(tmp_path, THREE.splitlines()[0] + "\n  - name: a\n    type: openai\n    model: m\n    api_key: k\n"
                f"    {extra}\n")
    assert (err.path, err.line) == (path, 6) and fragment in str(err), str(err)
    err = error(tmp_path, THREE + "defaults:\n  capabilities: {jsonschema: true}\n")
    assert (err.path, err.line) == ("defaults.capabilities.jsonschema", 6) and "did you mean 'json_schema'?" in str(err)


# --------------------------------------------------------------------------- describe


def test_describe_shows_chains_capabilities_and_why_a_provider_is_skipped(tmp_path: pathlib.Path) -> None:
    cfg = load(
        tmp_path,
        """\
        providers:
          - {name: openai, type: openai, model: gpt-4o, api_key: "${OPENAI_API_KEY}", capabilities: {tools: false}}
          - {name: claude, type: anthropic, model: c, api_key: "${A}-${B}"}
          - {name: local, type: openai, model: llama3, api_key: none}
        chains:
          default: [local, openai]
          paid: [openai, claude]
        """,
    )
    text = describe(cfg)
    assert "capabilities: tools=false images=default json_schema=default" in text
    assert "chains:\n  default: local -> openai\n  paid: openai -> claude  (no usable provider!)" in text
    assert "1 of 3 providers usable; skipped: openai ($OPENAI_API_KEY is not set), claude ($A, $B are not set)" in text


def test_describe_counts_in_good_english(tmp_path: pathlib.Path) -> None:
    one = "providers:\n  - {name: a, type: openai, model: m, api_key: k}\n"
    assert describe(load(tmp_path, one)).endswith("\n1 provider, usable")
    assert "chains: (none configured; the providers' order is the chain 'default')\n  default: a" in describe(
        load(tmp_path, one))
    skipped = describe(load(tmp_path, one.replace("api_key: k", "api_key: '${NOPE}'")))
    assert skipped.endswith("0 of 1 provider usable; skipped: a ($NOPE is not set)")
    assert describe(load(tmp_path, THREE)).endswith("all 3 providers usable")
