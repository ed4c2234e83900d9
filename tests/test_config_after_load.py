"""Config.line_of / Config.error: checks done after load still name the file, the line and the key path."""

from __future__ import annotations

import pathlib
import pickle

from tests.test_config_support import load

from failover.config import Config, parse_config
from failover.errors import ConfigError

TEXT = """\
providers:
  - name: a
    type: openai
    model: m
    api_key: k
    retry:
      max_attempts: 2
  - {name: b, type: openai, model: m, api_key: k}
defaults:
  retry:
    initial_backoff: 0.1
  breaker:
    storage: "redis://:pw@localhost:6379/0"
chains:
  default: [b, a]
"""


def test_line_of_follows_the_file_and_inheritance(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, TEXT)
    assert cfg.line_of(("providers", 0, "retry", "max_attempts")) == 7  # the provider's own key
    assert cfg.line_of(("providers", 0, "retry", "initial_backoff")) == 11  # inherited: where defaults wrote it
    assert cfg.line_of(("providers", 1, "breaker", "storage")) == 13
    assert cfg.line_of(("providers", 1, "retry", "max_backoff")) == 10  # built-in: the nearest enclosing key
    assert cfg.line_of(("providers", 1, "timeouts", "idle")) == 8  # nothing written: the provider's line
    assert cfg.line_of(("chains", "default", 1)) == 15
    assert cfg.line_of(("providers", 0, "name")) == 2


def test_error_names_file_line_and_the_path_where_the_value_was_written(tmp_path: pathlib.Path) -> None:
    cfg = load(tmp_path, TEXT)
    err = cfg.error(("providers", 1, "breaker", "storage"), "the redis package is not installed")
    assert isinstance(err, ConfigError)
    assert (err.source, err.path, err.line) == (cfg.source, "defaults.breaker.storage", 13)
    assert str(err) == f"{cfg.source}:13: defaults.breaker.storage: the redis package is not installed"
    own = cfg.error(("providers", 0, "retry", "max_attempts"), "too many")
    assert (own.path, own.line) == ("providers[0].retry.max_attempts", 7)


def test_without_a_file_there_are_no_lines() -> None:
    cfg = parse_config({"providers": [{"name": "a", "type": "openai", "model": "m", "api_key": "k"}]}, source="app")
    assert cfg.line_of(("providers", 0, "model")) is None
    err = cfg.error(("providers", 0, "model"), "unknown model")
    assert str(err) == "app: providers[0].model: unknown model" and err.line is None


def test_the_line_map_is_not_part_of_the_value(tmp_path: pathlib.Path) -> None:
    from_file = load(tmp_path, TEXT)
    shifted = load(tmp_path, "# a comment moves every line\n" + TEXT)
    assert shifted.line_of(("providers", 0, "name")) == 3
    assert from_file == shifted.model_copy(update={"source": from_file.source})
    assert "SourceMap" not in repr(from_file) and "source_map" not in str(from_file.model_dump())
    built = Config(source=from_file.source, providers=from_file.providers, chains=from_file.chains,
                   telemetry=from_file.telemetry)
    assert built == from_file and built.line_of(("providers", 0, "name")) is None
    assert pickle.loads(pickle.dumps(from_file)).line_of(("providers", 0, "name")) == 2
