"""YAML (or a mapping) → a validated, typed, frozen `Config`.

Everything that can be wrong with a configuration is found here, at load, and reported in one
`ConfigError` that names the file, the key path and the line of every problem. Afterwards the
router and the policies only read plain typed data and never validate again.

The pipeline, in order:

1. `_compose_yaml`: the SafeLoader composes a node tree (safe tags only: nothing in the file can
   run code); our own walk builds plain dicts and lists from it and records the line of every key
   path, and rejects duplicated keys (PyYAML would silently keep the last one).
2. `_Checker.check_shape`: unknown keys (with a difflib suggestion), sections of the wrong shape.
3. `_Checker.interpolate`: `${VAR}` / `${VAR:-default}` in every string value; `api_key` is special
   (an unset variable makes the provider unusable instead of failing the whole file).
4. pydantic validates `defaults`, `telemetry` and every provider with `defaults` merged in; the
   error locations are mapped back to where the user wrote the value (a bad value inherited from
   `defaults` is reported once, at `defaults.…`, not once per provider).
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from failover.errors import ConfigError
from failover.redact import mask_secret, mask_url

__all__ = [
    "BreakerSettings",
    "Config",
    "ProviderConfig",
    "RetryBudgetSettings",
    "RetrySettings",
    "TelemetrySettings",
    "TimeoutSettings",
    "describe",
    "load_config",
    "mask_secret",
    "parse_config",
]

log = logging.getLogger("failover.config")

DEFAULT_CONTINUE_PROMPT = (
    "Continue exactly where your previous message stopped. Do not repeat any text you already wrote "
    "and do not comment; output only the continuation."
)
# Anthropic rejects a request without max_tokens; 1024 is the value DESIGN's example uses.
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024

# The custom pydantic error type of a rule between two fields; its ctx names the fields so the
# loader can point at the one the user actually wrote (see `_Checker._blame`).
_CROSS_FIELD = "failover_cross_field"


# --------------------------------------------------------------------------- field types


def _not_bool(value: Any) -> Any:
    # YAML turns `yes`/`on`/`true` into bools and pydantic's lax mode would read them as 1:
    # `max_attempts: yes` must be an error, not one attempt.
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "Input should be a number, not a boolean")
    return value


def _bool_only(value: Any) -> Any:
    # Bools, or strings (a `${VAR}` always yields one); never numbers, where 2 would silently be True.
    if isinstance(value, bool | str):
        return value
    raise PydanticCustomError("bool_type", "Input should be true or false")


_Int = Annotated[int, BeforeValidator(_not_bool)]
# allow_inf_nan=False: YAML's `.inf` as a timeout would be a hang, `.nan` compares false to everything.
_Seconds = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
_Bool = Annotated[bool, BeforeValidator(_bool_only)]
_Number = _Seconds  # a finite float that is not a boolean
Midstream: TypeAlias = Literal["resume", "restart", "raise"]
ProviderType: TypeAlias = Literal["openai", "anthropic"]
Exporter: TypeAlias = Literal["none", "console", "otlp"]

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_SETTINGS = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _cross_field(message: str, *fields: str) -> PydanticCustomError:
    return PydanticCustomError(_CROSS_FIELD, message, {"fields": fields})


def _check_http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PydanticCustomError(
            "url",
            "{what} must be an http:// or https:// URL (got '{got}')",
            {"what": what, "got": mask_url(value)},
        )
    return value


def _non_empty(value: str, what: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "{what} must not be empty", {"what": what})
    return value


# --------------------------------------------------------------------------- models


class RetryBudgetSettings(BaseModel):
    """The retry budget of one provider (Envoy, the SRE book): a retry is allowed only while the
    retries sent in the last `window` seconds stay under `ratio` × the first attempts sent in it, or
    under `min_retries`, whichever is larger. See docs/fleet.md."""

    model_config = _SETTINGS

    ratio: Annotated[_Number, Field(ge=0)] = 0.2  # retries per first attempt (0.2: at most 20 % extra load)
    min_retries: Annotated[_Int, Field(ge=0)] = 3  # retries always allowed per window (a lone caller can retry)
    window: Annotated[_Seconds, Field(gt=0, le=3600)] = 10.0  # seconds of history the budget looks at


def _budget(value: Any) -> Any:
    # `budget: false` (or `off`) switches the budget off; `true` means the built-in budget.
    if value is False:
        return None
    if value is True:
        return {}
    return value


class RetrySettings(BaseModel):
    """Retries on one provider, before failing over to the next one."""

    model_config = _SETTINGS

    # Counts the attempts on one provider, the first included: 1 means "never retry".
    max_attempts: Annotated[_Int, Field(ge=1)] = 3
    initial_backoff: Annotated[_Seconds, Field(ge=0)] = 0.5
    max_backoff: Annotated[_Seconds, Field(ge=0)] = 8.0
    multiplier: Annotated[_Seconds, Field(ge=1)] = 2.0
    # A Retry-After longer than this fails over at once: sleeping that long beats no other provider.
    max_retry_after: Annotated[_Seconds, Field(ge=0)] = 10.0
    # None: no budget (`budget: false`); retries are then bounded by max_attempts only.
    budget: Annotated[RetryBudgetSettings | None, BeforeValidator(_budget)] = Field(
        default_factory=RetryBudgetSettings)

    @model_validator(mode="after")
    def _backoff_order(self) -> RetrySettings:
        if self.max_backoff < self.initial_backoff:
            raise _cross_field(
                f"max_backoff ({self.max_backoff:g}) must not be below initial_backoff "
                f"({self.initial_backoff:g})",
                "max_backoff",
                "initial_backoff",
            )
        return self


class BreakerSettings(BaseModel):
    """One circuit breaker per provider."""

    model_config = _SETTINGS

    # It opens when the last `fail_max` verdicts were failures and at least `failure_rate` of the
    # verdicts in the last `window` seconds were failures: a provider that is down trips after
    # `fail_max` failures, one that merely fails now and then (a brownout) stays closed.
    fail_max: Annotated[_Int, Field(ge=1)] = 5
    failure_rate: Annotated[_Number, Field(ge=0, le=1)] = 0.5  # 0: consecutive failures alone decide
    window: Annotated[_Seconds, Field(gt=0, le=3600)] = 10.0
    reset_timeout: Annotated[_Seconds, Field(gt=0)] = 15.0
    storage: str = "memory"  # "memory" or a redis:// / rediss:// URL (state shared across processes)
    # The Redis key namespace (failover:<namespace>:<provider>:…); None: derived from the config, see
    # failover.policies.redis_breaker.namespace_for and docs/fleet.md.
    namespace: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.fullmatch(value):
            raise PydanticCustomError(
                "name", "namespace may only contain letters, digits, '_', '.' and '-' (got '{got}')", {"got": value})
        return value

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        if value == "memory":
            return value
        problem = "storage must be 'memory' or a redis://host:port/db URL (got '{got}')"
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - evaluated for its ValueError on a bad port
        except ValueError:
            problem = "storage URL has an invalid port (got '{got}')"
            raise PydanticCustomError("storage", problem, {"got": mask_url(value)}) from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise PydanticCustomError("storage", problem, {"got": mask_url(value)})
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise PydanticCustomError(
                "storage",
                "storage URL's database must be a number, as in redis://host:6379/0 (got '{got}')",
                {"got": mask_url(value)},
            )
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # A Redis URL may carry a password; repr must not show it.
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "storage" and isinstance(value, str) else value)


class TimeoutSettings(BaseModel):
    """Seconds. `total` bounds the whole call, backoff included."""

    model_config = _SETTINGS

    connect: Annotated[_Seconds, Field(gt=0)] = 5.0
    first_token: Annotated[_Seconds, Field(gt=0)] = 10.0
    idle: Annotated[_Seconds, Field(gt=0)] = 30.0
    total: Annotated[_Seconds, Field(gt=0)] = 120.0

    @model_validator(mode="after")
    def _within_total(self) -> TimeoutSettings:
        # A part longer than the whole could never fire: almost certainly a typo (ms for s?).
        over = [name for name in ("connect", "first_token", "idle") if getattr(self, name) > self.total]
        if over:
            parts = ", ".join(f"{name} ({getattr(self, name):g})" for name in over)
            raise _cross_field(f"{parts} must not exceed total ({self.total:g})", *over, "total")
        return self


class TelemetrySettings(BaseModel):
    model_config = _SETTINGS

    exporter: Exporter = "none"  # the library alone never installs an SDK; the CLI does for these
    endpoint: str = "http://localhost:4317"
    service_name: str = "failover"
    capture_content: _Bool = False  # prompts and completions stay out of telemetry unless true

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _check_http_url(value, "endpoint")

    @field_validator("service_name")
    @classmethod
    def _service_name(cls, value: str) -> str:
        return _non_empty(value, "service_name")


# `params` are passed to the SDK call as keyword arguments; these are set by failover itself (a
# value here would be silently overwritten or clash), so they are errors with a pointer instead.
_RESERVED_PARAMS: dict[str, str] = {
    "model": "use the provider's `model` key",
    "messages": "messages come from the call",
    "system": "system messages come from the call",
    "stream": "failover always streams",
    "stream_options": "failover sets it to collect usage",
    "max_tokens": "use the provider's `max_tokens` key",
    "timeout": "use `timeouts`",
    "api_key": "use the provider's `api_key` key",
    "base_url": "use the provider's `base_url` key",
}


class ProviderConfig(BaseModel):
    """One entry of the failover chain, with `defaults` already merged in and env resolved."""

    model_config = _SETTINGS

    name: str
    type: ProviderType
    model: str
    # None when the referenced variable is unset: the router skips the provider and says why.
    api_key: SecretStr | None = None
    api_key_env: str | None = None  # the variable `api_key` referenced, e.g. "OPENAI_API_KEY"
    missing_env: tuple[str, ...] = ()  # variables `api_key` needs that are unset
    base_url: str | None = None
    max_tokens: Annotated[_Int, Field(ge=1)] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    supports_prefill: _Bool = False
    failover_on_reject: _Bool = False
    continue_prompt: str = DEFAULT_CONTINUE_PROMPT
    midstream: Midstream = "resume"
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)

    @model_validator(mode="before")
    @classmethod
    def _anthropic_max_tokens(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("type") == "anthropic" and data.get("max_tokens") is None:
            return {**data, "max_tokens": ANTHROPIC_DEFAULT_MAX_TOKENS}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The name appears in metrics, span attributes and log lines: keep it a plain token.
        if not _NAME_RE.fullmatch(value):
            raise PydanticCustomError(
                "name",
                "name may only contain letters, digits, '_', '.' and '-' (got '{got}')",
                {"got": value},
            )
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _non_empty(value, "model")

    @field_validator("continue_prompt")
    @classmethod
    def _continue_prompt(cls, value: str) -> str:
        return _non_empty(value, "continue_prompt")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "base_url")

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        clashes = [f"'{key}' ({_RESERVED_PARAMS[key]})" for key in value if key in _RESERVED_PARAMS]
        if clashes:
            raise PydanticCustomError(
                "params",
                "params may not set {keys}: failover sets these itself",
                {"keys": ", ".join(clashes)},
            )
        return value

    @model_validator(mode="after")
    def _sdk_params(self) -> ProviderConfig:
        # What the installed SDK's create() does not accept would fail every call with a TypeError:
        # say so now, at load, not at request time.
        from failover.providers import unknown_params  # the providers import this module

        unknown = unknown_params(self.type, self.params)
        if unknown:
            raise _cross_field(
                f"{', '.join(repr(k) for k in unknown)} not accepted by the installed {self.type} SDK's create() "
                "(put raw request fields under params.extra_body)", "params")
        return self

    @property
    def usable(self) -> bool:
        """True when the provider has a key to send."""
        return self.api_key is not None and self.api_key.get_secret_value() != ""


class Config(BaseModel):
    """The whole validated configuration."""

    model_config = _SETTINGS

    source: str = "<dict>"  # the file path, or the `source=` given to parse_config; named in errors
    providers: tuple[ProviderConfig, ...]  # failover order: first is tried first
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @field_validator("providers")
    @classmethod
    def _providers(cls, value: tuple[ProviderConfig, ...]) -> tuple[ProviderConfig, ...]:
        # Repeated here (the loader reports it with lines first) so a Config built in code holds too.
        if not value:
            raise PydanticCustomError("empty", "providers must list at least one provider")
        seen: set[str] = set()
        for provider in value:
            if provider.name.casefold() in seen:
                raise PydanticCustomError(
                    "duplicate", "duplicate provider name '{name}'", {"name": provider.name}
                )
            seen.add(provider.name.casefold())
        return value


class _Defaults(BaseModel):
    """The `defaults:` section on its own, so its mistakes are reported once, at `defaults.…`."""

    model_config = _SETTINGS

    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    midstream: Midstream = "resume"
    supports_prefill: _Bool = False
    failover_on_reject: _Bool = False
    continue_prompt: str = DEFAULT_CONTINUE_PROMPT

    @field_validator("continue_prompt")
    @classmethod
    def _continue_prompt(cls, value: str) -> str:
        return _non_empty(value, "continue_prompt")


# --------------------------------------------------------------------------- the schema of keys

_TOP_KEYS = ("providers", "defaults", "telemetry")
_SECTIONS: dict[str, type[BaseModel]] = {
    "retry": RetrySettings,
    "breaker": BreakerSettings,
    "timeouts": TimeoutSettings,
}
_DEFAULT_KEYS = tuple(_Defaults.model_fields)
# api_key_env and missing_env are computed by the loader, never written by the user.
_COMPUTED_KEYS = ("api_key_env", "missing_env")
_PROVIDER_KEYS = tuple(k for k in ProviderConfig.model_fields if k not in _COMPUTED_KEYS)

Path: TypeAlias = tuple[str | int, ...]


def _format_path(path: Path | None) -> str | None:
    if not path:
        return None
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _where(source: str | None, line: int | None, path: Path | None) -> str:
    """The `file:line: path: ` prefix, built exactly as ConfigError builds its own."""
    loc = ":".join(str(p) for p in (source, line) if p is not None)
    text = _format_path(path)
    return (f"{loc}: " if loc else "") + (f"{text}: " if text else "")


def _kind(value: Any) -> str:
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


@dataclass(frozen=True, slots=True)
class _Problem:
    path: Path | None
    message: str
    line: int | None


class _Problems:
    """Collects every problem so one ConfigError can list them all."""

    def __init__(self, source: str, lines: Mapping[Path, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[_Problem] = []
        self._seen: set[tuple[Path | None, str]] = set()

    def line_of(self, path: Path | None) -> int | None:
        # A key that is not in the file (a missing required key, a built-in default) is reported at
        # the nearest enclosing key that is.
        if path is None:
            return self.lines.get(())
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def add(self, path: Path | None, message: str, line: int | None = None) -> None:
        key = (path, message)
        if key in self._seen:  # the same inherited mistake seen through several providers
            return
        self._seen.add(key)
        self.items.append(_Problem(path, message, line if line is not None else self.line_of(path)))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        # File order reads best; problems without a line keep the order they were found in.
        ordered = sorted(self.items, key=lambda p: (p.line is None, p.line or 0))
        first, rest = ordered[0], ordered[1:]
        message = "\n".join([first.message] + [_where(self.source, p.line, p.path) + p.message for p in rest])
        raise ConfigError(message, source=self.source, path=_format_path(first.path), line=first.line)


# --------------------------------------------------------------------------- YAML → data + lines

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAX_VALUES = 100_000  # a real configuration has a few hundred


class _YamlWalker:
    """Builds plain data from a composed node tree, recording the line of every key path.

    Values are built by SafeLoader's own constructors (so `safe_load` semantics hold exactly); we
    walk the mappings ourselves because only the node tree still knows lines and duplicate keys.
    """

    def __init__(self, loader: yaml.SafeLoader, problems: _Problems, lines: dict[Path, int]) -> None:
        self.loader = loader
        self.problems = problems
        self.lines = lines
        self._active: set[int] = set()  # nodes being built: a recursive alias would never end
        self._budget = _MAX_VALUES
        self._entries: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}

    def build(self, node: yaml.Node, path: Path) -> Any:
        # Each alias is expanded into its own copy (each copy has its own key paths), so nested
        # aliases could grow exponentially ("billion laughs"); safe_load shares them instead.
        self._budget -= 1
        if self._budget < 0:
            raise ConfigError(
                f"the file expands to more than {_MAX_VALUES} values (nested aliases?)",
                source=self.problems.source,
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in self._active:
            self.problems.add(path, "recursive alias: this value contains itself")
            return None
        if isinstance(node, yaml.CollectionNode) and node.tag not in (_MAP_TAG, _SEQ_TAG):
            # An explicit tag (`!!set`, `!!omap`, `!!python/…`): SafeLoader's constructors decide,
            # exactly as in safe_load, and refuse every tag that could run code.
            return self.loader.construct_object(node, deep=True)
        if isinstance(node, yaml.MappingNode):
            self._active.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self._active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self._active.add(id(node))
            try:
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self._active.discard(id(node))
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        entries = self._entries.get(id(node))
        if entries is None:
            self._check_duplicates(node, path)
            # flatten_mapping resolves `<<:` merge keys in place; entries are cached because an
            # alias visits the same node again, already flattened.
            self.loader.flatten_mapping(node)
            entries = self._entries[id(node)] = list(node.value)
        out: dict[str, Any] = {}
        for key_node, value_node in entries:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                self.problems.add(
                    path,
                    f"keys must be strings (got {_kind(key)} {key!r}; quote it)",
                    key_node.start_mark.line + 1,
                )
                continue
            child = (*path, key)
            self.lines[child] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, child)
        return out

    def _check_duplicates(self, node: yaml.MappingNode, path: Path) -> None:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first_line.get(key)
            except TypeError:  # an unhashable key is reported as a non-string key later
                continue
            if earlier is None:
                first_line[key] = line
            else:
                self.problems.add(
                    (*path, str(key)),
                    f"duplicate key {key!r} (first at line {earlier}, again at line {line}); "
                    "YAML would silently keep only the last one",
                    line,
                )


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    # Built from the problem text only: str(exc) quotes the offending line, which may hold a key.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        text = "; ".join(p for p in (exc.context, exc.problem) if p)
        return ConfigError(f"invalid YAML: {text}", source=source, line=mark.line + 1 if mark else None)
    return ConfigError("invalid YAML: the file could not be read as YAML text", source=source)


def _compose_yaml(text: str, source: str, problems: _Problems, lines: dict[Path, int]) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
            if root is None:
                raise ConfigError(
                    "the file is empty (expected a mapping with a 'providers' list)", source=source
                )
            return _YamlWalker(loader, problems, lines).build(root, ())
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, source) from None
    finally:
        loader.dispose()


def _plain(value: Any, path: Path, problems: _Problems) -> Any:
    """A caller's mapping as plain dicts and lists, checked as strictly as YAML keys are."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.add(path, f"keys must be strings (got {_kind(key)} {key!r})")
                continue
            out[key] = _plain(item, (*path, key), problems)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, (*path, i), problems) for i, item in enumerate(value)]
    return value


# --------------------------------------------------------------------------- ${VAR} interpolation

_VAR_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?")


class _InterpolationError(Exception):
    pass


@dataclass(slots=True)
class _Resolved:
    text: str
    refs: list[str] = field(default_factory=list)  # every variable referenced, in order
    unset: list[str] = field(default_factory=list)  # referenced without default and not set
    empty: list[str] = field(default_factory=list)  # set to "" or unset-with-default


def _interpolate(text: str, env: Mapping[str, str], *, secret: bool = False) -> _Resolved:
    """Replace `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`; any other `$` is literal.

    `:-` follows the shell: the default applies when the variable is unset *or empty*. A malformed
    reference is an error rather than literal text, because it is almost always a typo that would
    otherwise reach a provider as a model name or a URL. With `secret`, messages never quote the text.
    """
    out: list[str] = []
    result = _Resolved("")
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        if text.startswith("$${", j):
            out.append("${")
            i = j + 3
            continue
        if not text.startswith("${", j):
            out.append("$")
            i = j + 1
            continue
        end = text.find("}", j + 2)
        body = text[j + 2 : end] if end >= 0 else text[j + 2 :]
        match = _VAR_BODY.fullmatch(body) if end >= 0 else None
        if match is None or "${" in (match.group(2) or ""):
            shown = "" if secret else f" '{text[j : end + 1] if end >= 0 else text[j:]}'"
            raise _InterpolationError(
                f"invalid variable reference{shown}: write ${{NAME}} or ${{NAME:-default}} (and $${{ for a "
                "literal ${)"
            )
        name, default = match.group(1), match.group(2)
        result.refs.append(name)
        value = env.get(name)
        if default is not None:
            if not value:
                result.empty.append(name)
            out.append(value if value else default)
        elif value is None:
            result.unset.append(name)
        else:
            if value == "":
                result.empty.append(name)
            out.append(value)
        i = end + 1
    result.text = "".join(out)
    return result


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


# --------------------------------------------------------------------------- checking and validation


def _suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Checker:
    """Runs the pipeline over one configuration, collecting problems instead of stopping at the first."""

    def __init__(self, data: Any, problems: _Problems, env: Mapping[str, str]) -> None:
        self.data = data
        self.problems = problems
        self.env = env
        self.unresolved: set[Path] = set()  # values whose ${VAR} is unset, already reported

    # --- shape and keys

    def check_shape(self) -> tuple[dict[str, Any], list[dict[str, Any] | None], dict[str, Any]]:
        """The defaults, the providers (None for an entry that is not a mapping) and telemetry,
        with unknown keys reported and dropped so pydantic checks what is left."""
        root = self.data
        if not isinstance(root, dict):
            self.problems.add(
                None, f"the top level must be a mapping with a 'providers' list (got {_kind(root)})"
            )
            return {}, [], {}
        self._known(root, _TOP_KEYS, ())
        defaults = self._section(root, "defaults", _DEFAULT_KEYS, ())
        for key in _SECTIONS:
            self._subsection(defaults, key, ("defaults",))
        telemetry = self._section(root, "telemetry", tuple(TelemetrySettings.model_fields), ())

        providers: list[dict[str, Any] | None] = []
        raw = root.get("providers")
        if "providers" not in root:
            self.problems.add(("providers",), "required key 'providers' is missing (the failover chain)")
        elif not isinstance(raw, list):
            self.problems.add(
                ("providers",), f"providers must be a list of provider mappings (got {_kind(raw)})"
            )
        elif not raw:
            self.problems.add(("providers",), "providers must list at least one provider")
        else:
            for index, item in enumerate(raw):
                path: Path = ("providers", index)
                if not isinstance(item, dict):
                    self.problems.add(path, f"each provider must be a mapping (got {_kind(item)})")
                    providers.append(None)
                    continue
                entry = self._known(item, _PROVIDER_KEYS, path)
                for key in _SECTIONS:
                    self._subsection(entry, key, path)
                if entry.get("params") is None:
                    entry.pop("params", None)
                if "api_key" not in entry:
                    self.problems.add(
                        (*path, "api_key"),
                        "required key 'api_key' is missing (write ${VAR} to read it from the environment, "
                        "or any placeholder for a server that needs no key)",
                    )
                providers.append(entry)
        return defaults, providers, telemetry

    def _known(self, mapping: dict[str, Any], valid: tuple[str, ...], path: Path) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, value in mapping.items():
            if key in valid:
                kept[key] = value
            elif key in _COMPUTED_KEYS and valid is _PROVIDER_KEYS:
                self.problems.add((*path, key), f"'{key}' is computed from api_key and cannot be set")
            elif valid is _DEFAULT_KEYS and key in _PROVIDER_KEYS:
                self.problems.add((*path, key), f"'{key}' cannot be set in defaults, only on each provider")
            else:
                self.problems.add((*path, key), f"unknown key '{key}'{_suggest(key, valid)}")
        return kept

    def _section(
        self, parent: dict[str, Any], key: str, valid: tuple[str, ...], path: Path
    ) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:  # absent, or every key commented out
            return {}
        if not isinstance(value, dict):
            self.problems.add((*path, key), f"{key} must be a mapping (got {_kind(value)})")
            return {}
        return self._known(value, valid, (*path, key))

    def _subsection(self, parent: dict[str, Any], key: str, path: Path) -> None:
        value = parent.get(key)
        if value is None:
            parent.pop(key, None)
        elif isinstance(value, dict):
            parent[key] = kept = self._known(value, tuple(_SECTIONS[key].model_fields), (*path, key))
            for sub in _NESTED.get(key, ()):
                if sub in kept and kept[sub] is None:  # every key commented out: inherit, as for sections
                    del kept[sub]
        # anything else is left for pydantic, which reports the wrong type at this path

    # --- environment

    def interpolate(self, value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {k: self.interpolate(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.interpolate(v, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        try:
            resolved = _interpolate(value, self.env)
        except _InterpolationError as exc:
            self.problems.add(path, str(exc))
            return value
        if resolved.unset:
            # Whatever pydantic would say about the half-resolved value is a consequence, not news.
            self.unresolved.add(path)
        for name in _unique(resolved.unset):
            self.problems.add(
                path,
                f"environment variable ${name} is not set (write ${{{name}:-default}} to give a default)",
            )
        return resolved.text

    def api_key(self, entry: dict[str, Any], path: Path) -> None:
        """Resolve `api_key` in place and add `api_key_env` / `missing_env`."""
        raw = entry.get("api_key")
        if isinstance(raw, SecretStr):  # a mapping built in code may already hold one
            return
        if raw is None:
            self.problems.add(
                (*path, "api_key"),
                "api_key is null (write ${VAR}, or any placeholder for a server that needs no key)",
            )
            return
        if not isinstance(raw, str):
            return  # a wrong type: pydantic reports it (without the value)
        key_path = (*path, "api_key")
        try:
            resolved = _interpolate(raw, self.env, secret=True)
        except _InterpolationError as exc:
            self.problems.add(key_path, str(exc))
            return
        # Surrounding whitespace (a trailing newline from a secrets file) would make an invalid
        # HTTP header deep inside the SDK; no real key has any.
        text = resolved.text.strip()
        missing = _unique(resolved.unset)
        if not missing and not text and resolved.refs:
            # Set but empty (`export KEY=`, `${KEY:-}`) is as unusable as unset, and reported the same.
            missing = _unique(resolved.empty) or _unique(resolved.refs)
        if not resolved.refs and not text:
            self.problems.add(key_path, "api_key is empty")
            return
        entry["api_key"] = None if missing else text
        entry["api_key_env"] = resolved.refs[0] if resolved.refs else None
        entry["missing_env"] = missing

    # --- pydantic

    def validate(
        self,
        model: type[BaseModel],
        data: dict[str, Any],
        base: Path,
        origin: Mapping[Path, Path] | None = None,
    ) -> BaseModel | None:
        """Validate `data`; map each error's location back to where the user wrote it.

        `origin` maps a location inside `data` (or a prefix of one) to its path in the file; a
        location with no entry is `base` + location.
        """
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc: Path = tuple(error["loc"])
                ctx = error.get("ctx") or {}
                if error["type"] == _CROSS_FIELD:
                    loc = (*loc, self._blame(loc, tuple(ctx.get("fields", ())), data, base, origin))
                where = self._source_path(loc, base, origin)
                if where not in self.unresolved:
                    self.problems.add(where, self._message(error, loc))
            return None

    @staticmethod
    def _source_path(loc: Path, base: Path, origin: Mapping[Path, Path] | None) -> Path:
        if origin:
            for end in range(len(loc), 0, -1):
                mapped = origin.get(loc[:end])
                if mapped is not None:
                    return (*mapped, *loc[end:])
        return (*base, *loc)

    def _blame(
        self,
        loc: Path,
        fields: tuple[str, ...],
        data: dict[str, Any],
        base: Path,
        origin: Mapping[Path, Path] | None,
    ) -> str:
        # A rule between two fields is reported at the one the user set most specifically (on the
        # provider rather than in defaults, in defaults rather than left at the built-in value):
        # that is the value they just typed.
        def rank(name: str) -> int:
            node: Any = data
            for part in (*loc, name):
                if not isinstance(node, dict) or part not in node:
                    return 0
                node = node[part]
            source = self._source_path((*loc, name), base, origin)
            return 2 if source[:1] == ("providers",) else 1

        return max(fields, key=rank) if fields else ""

    @staticmethod
    def _message(error: Any, loc: Path) -> str:
        kind = error["type"]
        if kind == "missing":
            return f"required key '{loc[-1]}' is missing" if loc else "a required key is missing"
        if kind in ("dict_type", "model_type", "model_attributes_type"):
            return f"must be a mapping (got {_kind(error.get('input'))})"
        if kind == "extra_forbidden":
            return "unknown key"
        message: str = error["msg"]
        for boilerplate in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(boilerplate)
        value = error.get("input")
        # Echo the offending value when it is a short scalar, never for api_key.
        if (
            "api_key" not in loc
            and kind not in ("url", "storage", "name", _CROSS_FIELD)
            and isinstance(value, str | int | float | bool)
            and not (isinstance(value, float) and math.isnan(value))
            and len(repr(value)) <= 60
        ):
            message += f" (got {mask_url(value) if isinstance(value, str) else value!r})"
        return message


def _merge(
    defaults: dict[str, Any], provider: dict[str, Any], path: Path
) -> tuple[dict[str, Any], dict[Path, Path]]:
    """The provider's entry over `defaults`; retry/breaker/timeouts merge per key.

    Returns the merged data and where each of its locations came from in the file.
    """
    merged: dict[str, Any] = {}
    origin: dict[Path, Path] = {}
    for key, value in defaults.items():
        merged[key] = value
        origin[(key,)] = ("defaults", key)
        if key in _SECTIONS and isinstance(value, dict):
            for sub in value:
                origin[(key, sub)] = ("defaults", key, sub)
    for key, value in provider.items():
        inherited = merged.get(key)
        if key in _SECTIONS and isinstance(value, dict) and isinstance(inherited, dict):
            merged[key] = {**inherited, **value}
            _merge_nested(merged[key], inherited, value, key, path, origin)
        else:
            merged[key] = value
            for loc in [loc for loc in origin if loc[:1] == (key,)]:
                del origin[loc]
        origin[(key,)] = (*path, key)
        if key in _SECTIONS and isinstance(value, dict):
            for sub in value:
                origin[(key, sub)] = (*path, key, sub)
    return merged, origin


# Mappings inside a section that also merge per key (`retry.budget`), like the sections themselves.
_NESTED: dict[str, tuple[str, ...]] = {"retry": ("budget",)}


def _merge_nested(
    merged: dict[str, Any], inherited: dict[str, Any], own: dict[str, Any], section: str, path: Path,
    origin: dict[Path, Path],
) -> None:
    for sub in _NESTED.get(section, ()):
        below, mine = inherited.get(sub), own.get(sub)
        if not (isinstance(below, dict) and isinstance(mine, dict)):
            continue
        merged[sub] = {**below, **mine}
        del origin[(section, sub)]  # each key now says where it came from
        for name in below:
            origin[(section, sub, name)] = ("defaults", section, sub, name)
        for name in mine:
            origin[(section, sub, name)] = (*path, section, sub, name)


def _build(
    data: Any, source: str, lines: dict[Path, int], problems: _Problems, env: Mapping[str, str]
) -> Config:
    checker = _Checker(data, problems, env)
    defaults, providers, telemetry = checker.check_shape()
    defaults = checker.interpolate(defaults, ("defaults",))
    telemetry = checker.interpolate(telemetry, ("telemetry",))

    checker.validate(_Defaults, defaults, ("defaults",))
    telemetry_cfg = checker.validate(TelemetrySettings, telemetry, ("telemetry",))

    built: list[ProviderConfig] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(providers):
        if entry is None:
            continue
        path: Path = ("providers", index)
        # api_key is resolved on its own: an unset variable there is not an error.
        has_key = "api_key" in entry
        api_key = entry.pop("api_key", None)
        entry = checker.interpolate(entry, path)
        if has_key:
            entry["api_key"] = api_key
            checker.api_key(entry, path)
        merged, origin = _merge(defaults, entry, path)
        provider = checker.validate(ProviderConfig, merged, path, origin)
        name = entry.get("name")
        if isinstance(name, str):
            earlier = names.get(name.casefold())
            if earlier is None:
                names[name.casefold()] = index
            else:
                earlier_line = problems.line_of(("providers", earlier, "name"))
                at = f" at line {earlier_line}" if earlier_line is not None and lines else ""
                problems.add(
                    (*path, "name"),
                    f"duplicate provider name {name!r} (already used by providers[{earlier}]{at}); "
                    "names must be unique (case-insensitive)",
                )
        if isinstance(provider, ProviderConfig):
            built.append(provider)

    problems.raise_if_any()
    assert isinstance(telemetry_cfg, TelemetrySettings)  # no problems means every part validated
    config = Config(source=source, providers=tuple(built), telemetry=telemetry_cfg)
    for provider in config.providers:
        if provider.missing_env:
            variables = ", ".join(f"${name}" for name in provider.missing_env)
            log.warning(
                "%s: provider %r has no API key: %s is not set; the provider will be skipped",
                source,
                provider.name,
                variables,
            )
    return config


# --------------------------------------------------------------------------- public functions


def parse_config(
    mapping: Mapping[str, Any], source: str = "<dict>", *, env: Mapping[str, str] | None = None
) -> Config:
    """Validate a mapping of the YAML schema. `source` names it in errors; `env` (default:
    `os.environ`) supplies `${VAR}` values."""
    lines: dict[Path, int] = {}
    problems = _Problems(source, lines)
    data = _plain(mapping, (), problems)
    return _build(data, source, lines, problems, os.environ if env is None else env)


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate a YAML file. Raises ConfigError for every kind of problem."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 text (byte {exc.start})", source=source) from None
    lines: dict[Path, int] = {}
    problems = _Problems(source, lines)
    data = _compose_yaml(text, source, problems, lines)
    return _build(data, source, lines, problems, os.environ if env is None else env)


# --------------------------------------------------------------------------- describe


_SECRET_PARAM = re.compile(r"key|token|secret|password|passwd|authorization|auth|cookie", re.IGNORECASE)


def _show_params(value: Any, name: str = "") -> str:
    # Headers in params (extra_headers: {x-api-key: ...}) may carry credentials.
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {_show_params(v, str(k))}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show_params(v, name) for v in value) + "]"
    if name and _SECRET_PARAM.search(name):
        return mask_secret(str(value))
    return repr(value) if isinstance(value, str) else str(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"  # as it is written in the YAML


def _fields(model: BaseModel) -> str:
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            shown = "{" + _fields(value) + "}"
        elif value is None and name == "budget":
            shown = "off"
        elif isinstance(value, str):
            shown = mask_url(value)
        elif isinstance(value, float):
            shown = f"{value:g}" if name in ("multiplier", "ratio") else f"{value:g}s"
        elif value is None and name == "namespace":
            shown = "(derived)"
        else:
            shown = str(value)
        out.append(f"{name}={shown}")
    return " ".join(out)


def _key_line(provider: ProviderConfig) -> str:
    if provider.api_key is not None and provider.usable:
        origin = f" (from ${provider.api_key_env})" if provider.api_key_env else " (literal in config)"
        return mask_secret(provider.api_key.get_secret_value()) + origin
    if provider.missing_env:
        names = ", ".join(f"${n}" for n in provider.missing_env)
        return f"MISSING: {names} {'is' if len(provider.missing_env) == 1 else 'are'} not set"
    return "MISSING: no api_key"


def describe(cfg: Config) -> str:
    """The resolved chain as `failover check` prints it. Never shows a key, only a masked form."""
    out = [f"config: {cfg.source}", "providers, in failover order:"]
    for number, p in enumerate(cfg.providers, 1):
        out.append(f"  {number}. {p.name}  (type {p.type}, model {p.model})")
        rows: list[tuple[str, str]] = [
            ("base_url", mask_url(p.base_url) if p.base_url else "(the provider's default)"),
            ("api_key", _key_line(p)),
            ("max_tokens", str(p.max_tokens) if p.max_tokens is not None else "(none: the call's, if given)"),
            ("retry", _fields(p.retry)),
            ("breaker", _fields(p.breaker)),
            ("timeouts", _fields(p.timeouts)),
            (
                "midstream",
                f"{p.midstream} supports_prefill={_flag(p.supports_prefill)} "
                f"failover_on_reject={_flag(p.failover_on_reject)}",
            ),
        ]
        if p.continue_prompt != DEFAULT_CONTINUE_PROMPT:
            rows.append(("continue_prompt", repr(p.continue_prompt)))
        if p.params:
            rows.append(("params", _show_params(p.params)))
        out.extend(f"       {label + ':':<12} {text}" for label, text in rows)
    t = cfg.telemetry
    out.append(
        f"telemetry: exporter={t.exporter} endpoint={mask_url(t.endpoint)} service_name={t.service_name} "
        f"capture_content={_flag(t.capture_content)}"
    )
    unusable = [p.name for p in cfg.providers if not p.usable]
    if unusable:
        usable = len(cfg.providers) - len(unusable)
        out.append(f"{usable} of {len(cfg.providers)} providers usable; skipped: {', '.join(unusable)}")
    else:
        out.append(f"all {len(cfg.providers)} providers usable")
    return "\n".join(out)
