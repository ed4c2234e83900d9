"""docs/configuration.md's reference is generated from the schema: the committed text is exactly it."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from pydantic import BaseModel
from tests.test_config_support import ROOT

from failover.config.reference import BEGIN, END, SECTIONS, committed_section, main, reference, replace_section
from failover.config.schema import Config, ProviderConfig, ProviderSettings

DOC = ROOT / "docs" / "configuration.md"


def test_committed_reference_is_exactly_the_generated_one() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert document.count(BEGIN) == 1 and document.count(END) == 1
    assert committed_section(document) == reference(), (
        "docs/configuration.md is out of date: run python -m failover.config.reference --write docs/configuration.md")
    # The hand-written parts around it stay.
    assert document.startswith("# Configuration\n") and "## Environment variables" in document


def test_module_prints_the_reference() -> None:
    out = subprocess.run([sys.executable, "-m", "failover.config.reference"], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=60)
    assert out.stdout == reference()


def test_write_replaces_only_the_section(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(f"intro\n{BEGIN}\nstale\n{END}\noutro\n", encoding="utf-8")
    assert main(["--write", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == f"intro\n{BEGIN}\n{reference()}{END}\noutro\n"
    assert replace_section(path.read_text(encoding="utf-8"), reference()) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("model", [Config, ProviderConfig, ProviderSettings, *SECTIONS])
def test_every_field_is_described_and_documented(model: type[BaseModel]) -> None:
    text = reference()
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} has no description"
        if name not in ("source", "api_key_env", "missing_env"):  # not written in a file
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} is not in the reference"


def test_rules_come_from_the_schema() -> None:
    text = reference()
    assert "| `max_attempts` | integer, ≥ 1, ≤ 100 | `3` |" in text
    assert "| `window` | seconds, > 0, ≤ 3600 | `10` |" in text
    assert "| `midstream` | `resume`, `restart` or `raise` | `resume` |" in text
    assert "| `api_key` | string, printable ASCII | required |" in text
    assert "at most 86400 (one day)" in text
