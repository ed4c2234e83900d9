"""Where a problem is (key paths, lines) and the one `ConfigError` that lists every problem.

A key path is a tuple of mapping keys and list indexes, `("providers", 1, "retry", "max_attempts")`,
shown as `providers[1].retry.max_attempts`. Lines are 1-based and known only for files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from failover.errors import ConfigError
from failover.redact import mask_url

KeyPath: TypeAlias = tuple[str | int, ...]

# Longer shown values are cut: a message names the problem, it does not reprint the file.
_MAX_SHOWN = 60


def format_path(path: KeyPath | None) -> str | None:
    if not path:
        return None
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def where(source: str | None, line: int | None, path: KeyPath | None) -> str:
    """The `file:line: path: ` prefix, built exactly as ConfigError builds its own."""
    loc = ":".join(str(p) for p in (source, line) if p is not None)
    text = format_path(path)
    return (f"{loc}: " if loc else "") + (f"{text}: " if text else "")


def kind_of(value: Any) -> str:
    """What a value is, in the words of the YAML it came from (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def shown(value: Any) -> str | None:
    """A short scalar as a message may quote it (URL passwords masked), or None when it is not one.

    Never raises: an int past Python's digit limit has no repr, a caller's object may have a broken one.
    """
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return None
    if not isinstance(value, str | int | float | bool):
        return None
    text = repr(mask_url(value)) if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_SHOWN else None


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Where the values of a loaded `Config` were written.

    `lines`: the line of every key path of the file. `origin`: a path inside the Config (or a prefix
    of one) → the path in the file its value came from, for what a provider inherited from
    `defaults`. Both are empty for a mapping given in code.
    """

    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    origin: Mapping[KeyPath, KeyPath] = field(default_factory=dict)

    def written_at(self, path: KeyPath) -> KeyPath:
        for end in range(len(path), 0, -1):
            mapped = self.origin.get(path[:end])
            if mapped is not None:
                return (*mapped, *path[end:])
        return path

    def line_of(self, path: KeyPath | None) -> int | None:
        # A key the file does not contain (a missing required key, a built-in default) is reported at
        # the nearest enclosing key it does contain.
        if path is None:
            return self.lines.get(())
        path = self.written_at(path)
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def error(self, source: str, path: KeyPath, message: str) -> ConfigError:
        """A ConfigError naming the file, the line and the key path where the value was written."""
        written = self.written_at(path)
        return ConfigError(message, source=source, path=format_path(written), line=self.line_of(written))


@dataclass(frozen=True, slots=True)
class Problem:
    path: KeyPath | None
    message: str
    line: int | None


class Problems:
    """Collects every problem of one configuration so one ConfigError can list them all."""

    def __init__(self, source: str, lines: Mapping[KeyPath, int]) -> None:
        self.source = source
        self.map = SourceMap(lines)
        self.items: list[Problem] = []
        self._seen: set[tuple[KeyPath | None, str]] = set()
        self._paths: set[KeyPath | None] = set()

    def add(self, path: KeyPath | None, message: str, line: int | None = None) -> None:
        key = (path, message)
        if key in self._seen:  # the same inherited mistake seen through several providers
            return
        self._seen.add(key)
        self._paths.add(path)
        self.items.append(Problem(path, message, line if line is not None else self.map.line_of(path)))

    def reported(self, path: KeyPath) -> bool:
        """True when a problem was already added at this path (a later, derived one would be noise)."""
        return path in self._paths

    def fail(self, message: str, path: KeyPath | None = None, line: int | None = None) -> ConfigError:
        """A problem that stops the reading at once (an unreadable file): the error to raise."""
        return ConfigError(message, source=self.source, path=format_path(path),
                           line=line if line is not None else self.map.line_of(path))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        # File order reads best; problems without a line keep the order they were found in.
        ordered = sorted(self.items, key=lambda p: (p.line is None, p.line or 0))
        first, rest = ordered[0], ordered[1:]
        message = "\n".join([first.message] + [where(self.source, p.line, p.path) + p.message for p in rest])
        raise ConfigError(message, source=self.source, path=format_path(first.path), line=first.line)
