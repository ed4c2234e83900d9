"""Key paths, lines and the one ConfigError: the pure logic of problems.py."""

from __future__ import annotations

import pytest

from failover.config.problems import KeyPath, Problems, SourceMap, format_path, shown, where
from failover.errors import ConfigError


@pytest.mark.parametrize(
    ("path", "text"),
    [((), None), (None, None), (("providers",), "providers"), (("providers", 1, "retry", "max_attempts"),
     "providers[1].retry.max_attempts"), (("chains", "cheap", 0), "chains.cheap[0]")],
)
def test_format_path(path: KeyPath | None, text: str | None) -> None:
    assert format_path(path) == text


def test_where_prefix() -> None:
    assert where("c.yaml", 3, ("a", 0)) == "c.yaml:3: a[0]: "
    assert where("app", None, None) == "app: "
    assert where(None, None, None) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [("x", "'x'"), (3, "3"), (2.5, "2.5"), (True, "True"), ("redis://:pw@h:1/0", "'redis://:****@h:1/0'"),
     ("x" * 100, None), (float("nan"), None), pytest.param(10**5000, None, id="5000-digits"), ([1], None),
     (None, None)],
)
def test_shown_never_raises_and_masks(value: object, text: str | None) -> None:
    assert shown(value) == text


def test_source_map_follows_origin_and_nearest_line() -> None:
    lines: dict[KeyPath, int] = {(): 1, ("providers",): 1, ("providers", 0): 2, ("defaults", "retry"): 9,
                                 ("defaults", "retry", "max_attempts"): 10}
    origin: dict[KeyPath, KeyPath] = {("providers", 0, "retry"): ("defaults", "retry")}
    source_map = SourceMap(lines, origin)
    assert source_map.written_at(("providers", 0, "retry", "max_attempts")) == ("defaults", "retry", "max_attempts")
    assert source_map.line_of(("providers", 0, "retry", "max_attempts")) == 10
    assert source_map.line_of(("providers", 0, "retry", "multiplier")) == 9
    assert source_map.line_of(("providers", 0, "model")) == 2
    assert source_map.line_of(None) == 1 and SourceMap().line_of(("x",)) is None


def test_problems_in_file_order_first_one_in_the_attributes() -> None:
    lines: dict[KeyPath, int] = {("b",): 7, ("a",): 3}
    problems = Problems("c.yaml", lines)
    problems.add(("b",), "second")
    problems.add(("a",), "first")
    problems.add(("a",), "first")  # the same problem twice is reported once
    problems.add(None, "no line")
    assert problems.reported(("a",)) and not problems.reported(("c",))
    with pytest.raises(ConfigError) as info:
        problems.raise_if_any()
    assert (info.value.path, info.value.line) == ("a", 3)
    assert str(info.value).splitlines() == ["c.yaml:3: a: first", "c.yaml:7: b: second", "c.yaml: no line"]
    Problems("c.yaml", {}).raise_if_any()  # nothing to report: no error
