"""YAML (or a mapping) → a validated, typed, frozen `Config`, or one ConfigError listing every problem.

The pipeline, in order:

1. `source`: the YAML text (or the caller's mapping) as plain data, and the line of every key path.
2. `checks.Checker`: unknown keys (with a suggestion), sections of the wrong shape, `${VAR}`.
3. pydantic validates `defaults`, `telemetry` and every provider with `defaults` merged in; error
   locations are mapped back to where the user wrote the value (a bad value inherited from
   `defaults` is reported once, at `defaults.…`, not once per provider). Then `chains`.
4. The Config keeps the map of lines (`Config.line_of`, `Config.error`) for checks after load.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from failover.config.chains import chain_problems
from failover.config.checks import NESTED, SECTIONS, Checker
from failover.config.fields import CROSS_FIELD
from failover.config.problems import KeyPath, Problems, SourceMap, kind_of, shown
from failover.config.schema import (
    SOURCE_MAP,
    Config,
    ProviderConfig,
    ProviderSettings,
    TelemetrySettings,
)
from failover.config.source import compose_yaml, plain_mapping
from failover.errors import ConfigError

log = logging.getLogger("failover.config")

MAX_FILE_BYTES = 1 << 20  # a configuration is a few kilobytes; a bigger file is the wrong file


def _merge(
    defaults: dict[str, Any], provider: dict[str, Any], path: KeyPath
) -> tuple[dict[str, Any], dict[KeyPath, KeyPath]]:
    """The provider's entry over `defaults`; the sections (and `retry.budget`) merge per key.

    Returns the merged data and where its locations came from in the file: location inside the
    merged data (or a prefix of one) → path in the file; the longest prefix wins.
    """
    merged: dict[str, Any] = {}
    origin: dict[KeyPath, KeyPath] = {}

    def record(key: str, value: Any, written: KeyPath) -> None:
        origin[(key,)] = written
        if key in SECTIONS and isinstance(value, dict):
            for sub in value:
                origin[(key, sub)] = (*written, sub)

    for key, value in defaults.items():
        merged[key] = value
        record(key, value, ("defaults", key))
    for key, value in provider.items():
        inherited = merged.get(key)
        if key in SECTIONS and isinstance(value, dict) and isinstance(inherited, dict):
            merged[key] = {**inherited, **value}
            for sub in NESTED.get(key, ()):
                below, mine = inherited.get(sub), value.get(sub)
                if isinstance(below, dict) and isinstance(mine, dict):
                    merged[key][sub] = {**below, **mine}
                    for name in below:
                        origin[(key, sub, name)] = ("defaults", key, sub, name)
                    for name in mine:
                        origin[(key, sub, name)] = (*path, key, sub, name)
        else:
            merged[key] = value
            for loc in [loc for loc in origin if loc[:1] == (key,)]:
                del origin[loc]
        record(key, value, (*path, key))
    return merged, origin


class _Validator:
    """Runs pydantic and turns each of its errors into a problem at the path the user wrote."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.problems = checker.problems
        self.origin: dict[KeyPath, KeyPath] = {}  # for the Config's SourceMap: what providers inherited

    def validate(self, model: type[BaseModel], data: dict[str, Any], base: KeyPath,
                 origin: Mapping[KeyPath, KeyPath] | None = None, context: Any = None) -> BaseModel | None:
        """`origin` maps a location inside `data` to its path in the file (see `_merge`)."""
        located = SourceMap(origin={(*base, *loc): path for loc, path in (origin or {}).items()})
        self.origin.update(located.origin)
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc: KeyPath = tuple(error["loc"])
                ctx = error.get("ctx") or {}
                fields = tuple(ctx.get("fields", ()))
                if error["type"] == CROSS_FIELD:
                    loc = (*loc, self._blame(loc, fields, data, base, located))
                written = located.written_at((*base, *loc))
                if not self.problems.reported(written):
                    from_env = [located.written_at((*base, *loc[:-1], f)) for f in fields]
                    self.problems.add(written, self._message(error, loc, written, from_env))
            return None

    def _blame(self, loc: KeyPath, fields: tuple[str, ...], data: dict[str, Any], base: KeyPath,
               located: SourceMap) -> str:
        # A rule between two fields is reported at the one the user set most specifically (on the
        # provider rather than in defaults, in defaults rather than left at the built-in value):
        # that is the value they just typed.
        def rank(name: str) -> int:
            node: Any = data
            for part in (*loc, name):
                if not isinstance(node, dict) or part not in node:
                    return 0
                node = node[part]
            return 2 if located.written_at((*base, *loc, name))[:1] == ("providers",) else 1

        return max(fields, key=rank) if fields else ""

    def _message(self, error: Any, loc: KeyPath, written: KeyPath, fields_written: list[KeyPath]) -> str:
        kind = error["type"]
        value = error.get("input")
        if kind == "missing":
            return f"required key '{loc[-1]}' is missing" if loc else "a required key is missing"
        if kind in ("dict_type", "model_type", "model_attributes_type"):
            return f"must be a mapping (got {kind_of(value)})"
        if kind == "extra_forbidden":
            return "unknown key"
        message: str = error["msg"]
        for boilerplate in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(boilerplate)
        if kind == CROSS_FIELD:
            # Its message quotes the values of the fields: not when one was read from ${VAR}.
            env = any(path in self.checker.from_env for path in fields_written)
            return str(error["ctx"]["plain"]) if env else message
        from_env = self.checker.from_env.get(written)
        if from_env:
            return f"{message} ({from_env})"
        if "api_key" in loc:
            return message
        if isinstance(value, datetime.date):
            return f"{message} (got a date: quote it to keep it as text)"
        quoted = shown(value)
        return f"{message} (got {quoted})" if quoted else message


def _build(data: Any, source: str, lines: dict[KeyPath, int], problems: Problems, env: Mapping[str, str]) -> Config:
    checker = Checker(problems, env)
    validator = _Validator(checker)
    shape = checker.check_shape(data)
    defaults = checker.interpolate(shape.defaults, ("defaults",))
    telemetry = checker.interpolate(shape.telemetry, ("telemetry",))
    chains = checker.interpolate(shape.chains, ("chains",))

    validator.validate(ProviderSettings, defaults, ("defaults",))
    telemetry_cfg = validator.validate(TelemetrySettings, telemetry, ("telemetry",))

    built: list[ProviderConfig] = []
    names: dict[str, int] = {}  # casefolded name → index of the first provider with it
    declared: dict[str, str] = {}  # every provider name written → how a message may show it
    for index, entry in enumerate(shape.providers):
        if entry is None:
            continue
        path: KeyPath = ("providers", index)
        # api_key is resolved on its own: an unset variable there is not an error.
        has_key = "api_key" in entry
        api_key = entry.pop("api_key", None)
        entry = checker.interpolate(entry, path)
        if has_key:
            entry["api_key"] = api_key
            checker.api_key(entry, path)
        merged, origin = _merge(defaults, entry, path)
        provider = validator.validate(ProviderConfig, merged, path, origin)
        name = entry.get("name")
        if isinstance(name, str):
            declared.setdefault(name, checker.show((*path, "name"), name))
            earlier = names.setdefault(name.casefold(), index)
            if earlier != index:
                earlier_line = problems.map.line_of(("providers", earlier, "name"))
                at = f" at line {earlier_line}" if earlier_line is not None and lines else ""
                problems.add((*path, "name"), f"duplicate provider name {checker.show((*path, 'name'), name)} "
                             f"(already used by providers[{earlier}]{at}); names must be unique (case-insensitive)")
        if isinstance(provider, ProviderConfig):
            built.append(provider)
    if declared:  # against the names written, so that a mistake inside a provider hides no chain's

        def show(where: KeyPath, value: Any) -> str:
            return checker.show(("chains", *where), value)

        for where, message in chain_problems(chains, declared, show):
            problems.add(("chains", *where), message)

    problems.raise_if_any()
    source_map = SourceMap(lines, validator.origin)
    document = {"source": source, "providers": tuple(built), "chains": chains, "telemetry": telemetry_cfg}
    config = validator.validate(Config, document, (), context={SOURCE_MAP: source_map})
    problems.raise_if_any()  # the loader's checks above cover Config's own; this keeps a slip a ConfigError
    assert isinstance(config, Config)
    for provider in config.providers:
        if provider.missing_env:
            variables = ", ".join(f"${name}" for name in provider.missing_env)
            log.warning("%s: provider %r has no API key: %s is not set; the provider will be skipped",
                        source, provider.name, variables)
    return config


def parse_config(mapping: Mapping[str, Any], source: str = "<dict>", *, env: Mapping[str, str] | None = None) -> Config:
    """Validate a mapping of the YAML schema. `source` names it in errors; `env` (default:
    `os.environ`) supplies `${VAR}` values. Raises ConfigError for every kind of problem."""
    lines: dict[KeyPath, int] = {}
    problems = Problems(source, lines)
    data = plain_mapping(mapping, problems)
    return _build(data, source, lines, problems, os.environ if env is None else env)


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate a YAML file. Raises ConfigError for every kind of problem."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"the file is larger than {MAX_FILE_BYTES // 1024} KiB: not a configuration", source=source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 text (byte {exc.start})", source=source) from None
    lines: dict[KeyPath, int] = {}
    problems = Problems(source, lines)
    data = compose_yaml(text, problems, lines)
    return _build(data, source, lines, problems, os.environ if env is None else env)
