"""Keys and passwords never appear in repr, errors, logs or `failover check`; what describe() prints."""

from __future__ import annotations

import logging
import pathlib

import pytest
from pydantic import SecretStr, ValidationError
from tests.test_config_support import ONE, SECRET, SECRET_BODY, error, load, problems

from failover.config import ProviderConfig, describe, mask_secret

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
