"""The two sources of a configuration, YAML text or a caller's mapping, as plain dicts and lists.

For YAML, also the line of every key path. The SafeLoader composes a node tree (safe tags only:
nothing in the file can run code); our own walk builds the values from it with SafeLoader's
constructors (so `safe_load` semantics hold) because only the node tree still knows lines and
duplicated keys. Everything hostile becomes a problem with a line, never another exception: a
control character, a value its tag cannot construct (`2024-02-30`, `!!int x`, a 5,000-digit
integer), nesting that would exhaust Python's stack, aliases that expand without end.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from failover.config.problems import KeyPath, Problems, kind_of, shown

MAX_DEPTH = 64  # a real configuration nests about 6 levels; PyYAML's composer recurses per level
MAX_VALUES = 100_000  # a real configuration has a few hundred

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"

# PyYAML's wording → ours, where its own is cryptic. Matched on the start of its problem text.
_REWORDED = {
    "found character '\\t' that cannot start any token": "a tab character: YAML indents with spaces only",
    "mapping values are not allowed here": "mapping values are not allowed here (quote a value that contains ': ')",
    "expected a single document in the stream": "the file holds several YAML documents (a '---' line?); "
    "a configuration is one document",
}


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses a document nested deeper than MAX_DEPTH, before the
    recursion of `compose_node` could exhaust the stack."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, _TOO_DEEP, event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _reworded(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """Our `invalid YAML: …` text and its line, from PyYAML's parts only: its str() quotes the
    offending line of the file, which may hold a key. Names it quotes from the file (an alias, a
    tag) are dropped for the same reason; the line tells where."""
    mark = exc.problem_mark or exc.context_mark
    problem, context = _unquoted(exc.problem), _unquoted(exc.context)
    for start, ours in _REWORDED.items():
        if problem.startswith(start) or context.startswith(start):
            problem, context = ours, ""
    if context and problem:
        started = exc.context_mark.line + 1 if exc.context_mark else None
        at = f" that starts at line {started}" if started is not None and mark and started != mark.line + 1 else ""
        problem = f"{problem} ({context}{at})"
    text = problem or context or "the file could not be read as YAML"
    return (mark.line + 1 if mark else None), f"invalid YAML: {text}"


# A quoted name from the file, as PyYAML's %r shows it; not a one-character token or a '<token>' kind.
_QUOTED_NAME = re.compile(r"""\s*(?:'[^'<][^']{2,}'|"[^"<][^"]{2,}")""")


def _unquoted(text: str | None) -> str:
    return _QUOTED_NAME.sub("", text or "").strip()


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why a scalar's constructor failed, without quoting the value (it may be a key)."""
    tag = str(node.tag).removeprefix("tag:yaml.org,2002:")
    if tag == "timestamp":
        return "invalid YAML: not a valid date or time (quote the value to keep it as text)"
    if tag == "int" and "digits" in str(exc):
        return f"invalid YAML: an integer with more than {sys.get_int_max_str_digits()} digits"
    return f"invalid YAML: the value cannot be read as !!{tag}"


class _Walker:
    """Builds plain data from a composed node tree, recording the line of every key path."""

    def __init__(self, loader: _Loader, problems: Problems, lines: dict[KeyPath, int]) -> None:
        self.loader = loader
        self.problems = problems
        self.lines = lines
        self._active: set[int] = set()  # nodes being built: a recursive alias would never end
        self._depth = 0
        self._budget = MAX_VALUES

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        # Each alias is expanded into its own copy (each copy has its own key paths), so nested
        # aliases could grow exponentially ("billion laughs"); safe_load shares them instead.
        self._budget -= 1
        if self._budget < 0:
            raise self.problems.fail(f"the file expands to more than {MAX_VALUES} values (nested aliases?)")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in self._active:
            self.problems.add(path, "recursive alias: this value contains itself")
            return None
        if self._depth >= MAX_DEPTH:  # aliases nest without nesting the text
            self.problems.add(path, f"{_TOO_DEEP} (through aliases)")
            return None
        if not isinstance(node, yaml.CollectionNode) or node.tag not in (_MAP_TAG, _SEQ_TAG):
            # A scalar, or an explicit tag (`!!set`, `!!python/…`): SafeLoader's constructors decide,
            # exactly as in safe_load, and refuse every tag that could run code.
            return self._construct(node, path)
        self._active.add(id(node))
        self._depth += 1
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._depth -= 1
            self._active.discard(id(node))

    def _construct(self, node: yaml.Node, path: KeyPath) -> Any:
        line = node.start_mark.line + 1
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            mark_line, text = _reworded(exc)
            self.problems.add(path, text, mark_line or line)
        except Exception as exc:  # PyYAML's constructors raise anything (ValueError, KeyError, …) on a bad scalar
            self.problems.add(path, _unreadable(node, exc), line)
        # A failed construction leaves the constructor's bookkeeping half done.
        self.loader.recursive_objects.clear()
        self.loader.state_generators.clear()
        self.loader.deep_construct = False
        return None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        own: list[tuple[str, int, yaml.Node]] = []
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            line = key_node.start_mark.line + 1
            key = self._construct(key_node, path)
            if not isinstance(key, str):
                if key is not None or key_node.tag == "tag:yaml.org,2002:null":
                    self.problems.add(path, f"keys must be strings (got {_key_kind(key)}; quote it)", line)
                continue
            if key in first_line:  # PyYAML would silently keep the last one
                self.problems.add(
                    (*path, key),
                    f"duplicate key {key!r} (first at line {first_line[key]}, again at line {line}); "
                    "YAML would silently keep only the last one", line)
                continue
            first_line[key] = line
            own.append((key, line, value_node))
        # `<<:` as in safe_load: the mapping's own keys win, then the first merged mapping, and so on.
        for source in reversed(self._merge_sources(merges, path)):
            merged = self.build(source, path)
            if isinstance(merged, dict):
                out.update(merged)
            elif merged is not None:
                self.problems.add(path, f"'<<' merges mappings only (got {kind_of(merged)})")
        for key, line, value_node in own:
            child = (*path, key)
            self.lines[child] = line
            out[key] = self.build(value_node, child)
        return out

    def _merge_sources(self, values: list[yaml.Node], path: KeyPath) -> list[yaml.Node]:
        sources: list[yaml.Node] = []
        for value in values:
            items = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for item in items:
                if isinstance(item, yaml.MappingNode):
                    sources.append(item)
                else:
                    self.problems.add(path, "'<<' takes a mapping or a list of mappings", item.start_mark.line + 1)
        return sources


def _key_kind(key: Any) -> str:
    quoted = shown(key)
    return f"{kind_of(key)} {quoted}" if quoted else kind_of(key)


def compose_yaml(text: str, problems: Problems, lines: dict[KeyPath, int]) -> Any:
    """The document as plain data; `lines` receives the line of every key path. A file that cannot
    be read at all raises ConfigError; anything else becomes a problem."""
    try:
        loader = _Loader(text)  # checks every character at once
    except yaml.reader.ReaderError as exc:
        code = exc.character if isinstance(exc.character, int) else 0
        line = text.count("\n", 0, max(exc.position or 0, 0)) + 1
        raise problems.fail(
            f"invalid YAML: the control character U+{code:04X} is not allowed in a YAML file (inside double "
            f"quotes, write it as the escape \\x{code:02X})" if code < 0x100 else
            f"invalid YAML: the character U+{code:04X} is not allowed in a YAML file", line=line) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark_line, message = _reworded(exc)
            raise problems.fail(message, line=mark_line) from None
        except yaml.YAMLError:
            raise problems.fail("invalid YAML: the file could not be read as YAML text") from None
        if root is None:
            raise problems.fail("the file is empty (expected a mapping with a 'providers' list)")
        return _Walker(loader, problems, lines).build(root, ())
    finally:
        loader.dispose()


def plain_mapping(value: Any, problems: Problems) -> Any:
    """A caller's mapping as plain dicts and lists, checked as strictly as YAML keys are."""
    return _plain(value, (), problems, set())


def _plain(value: Any, path: KeyPath, problems: Problems, active: set[int]) -> Any:
    is_mapping = isinstance(value, Mapping)
    if not is_mapping and not isinstance(value, list | tuple):
        return value
    if id(value) in active:
        problems.add(path, "recursive value: this value contains itself")
        return None
    if len(path) >= MAX_DEPTH:
        problems.add(path, _TOO_DEEP)
        return None
    active.add(id(value))
    try:
        if not is_mapping:
            return [_plain(item, (*path, i), problems, active) for i, item in enumerate(value)]
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.add(path, f"keys must be strings (got {_key_kind(key)})")
                continue
            out[key] = _plain(item, (*path, key), problems, active)
        return out
    finally:
        active.discard(id(value))
