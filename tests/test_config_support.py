"""Helpers shared by the tests/test_config_*.py files (this module holds no test)."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from failover.config import Config, load_config
from failover.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-0123456789abcdefWXYZ"  # long enough that mask_secret shows its last 4
SECRET_BODY = "SECRET-0123456789abcdef"  # a part that must never appear anywhere

ONE = """\
providers:
  - name: main
    type: openai
    model: gpt-4o
    api_key: literal-key
"""


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
