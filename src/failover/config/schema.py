"""The typed, frozen configuration: pydantic models with every rule and a description per field.

The descriptions and rules here are the reference of docs/configuration.md (see `reference.py`).
Models built in code follow the same rules as a loaded file; the loader adds file, line and key path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from failover.config.chains import chain_problems
from failover.config.fields import (
    MAX_COUNT,
    MAX_SECONDS,
    Count,
    Flag,
    HeaderSecret,
    HttpUrl,
    Name,
    Number,
    OneLine,
    Rule,
    Seconds,
    Text,
    check_url,
    cross_field,
    json_problem,
)
from failover.config.problems import KeyPath, SourceMap, format_path
from failover.errors import ConfigError
from failover.redact import mask_url

DEFAULT_CONTINUE_PROMPT = (
    "Continue exactly where your previous message stopped. Do not repeat any text you already wrote "
    "and do not comment; output only the continuation."
)
# Anthropic rejects a request without max_tokens; 1024 is the value DESIGN's example uses.
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024
# The validation context key through which the loader hands a Config its SourceMap.
SOURCE_MAP = "failover_source_map"

Midstream: TypeAlias = Literal["resume", "restart", "raise"]
ProviderType: TypeAlias = Literal["openai", "anthropic"]
Exporter: TypeAlias = Literal["none", "console", "otlp"]
ProbeMode: TypeAlias = Literal["background", "request"]

SETTINGS = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class RetryBudgetSettings(BaseModel):
    """The retry budget of one provider (Envoy, the SRE book): a retry is allowed only while the
    retries sent in the last `window` seconds stay under `ratio` × the first attempts sent in it, or
    under `min_retries`, whichever is larger; otherwise the call fails over. See docs/fleet.md."""

    model_config = SETTINGS

    ratio: Annotated[Number, Field(ge=0)] = Field(
        default=0.2, description="retries allowed per first attempt (0.2: at most 20 % extra load from retries)")
    min_retries: Annotated[Count, Field(ge=0, le=MAX_COUNT)] = Field(
        default=3, description="retries always allowed per window, so that a lone caller can still retry")
    window: Annotated[Seconds, Field(gt=0, le=3600)] = Field(
        default=10.0, description="seconds of history the budget looks at")


def _budget(value: Any) -> Any:
    # `budget: false` (or `off`) switches the budget off; `true` means the built-in budget.
    if value is False:
        return None
    if value is True:
        return {}
    return value


class RetrySettings(BaseModel):
    """Retries on one provider, before failing over to the next one. The backoff is full jitter:
    `uniform(0, min(max_backoff, initial_backoff * multiplier**(n-1)))`."""

    model_config = SETTINGS

    # At most 100: `multiplier ** (attempt - 1)` must stay a finite float.
    max_attempts: Annotated[Count, Field(ge=1, le=100)] = Field(
        default=3, description="attempts on one provider, **the first included** (1 = never retry)")
    initial_backoff: Annotated[Seconds, Field(ge=0)] = Field(default=0.5, description="the first backoff's cap")
    max_backoff: Annotated[Seconds, Field(ge=0)] = Field(
        default=8.0, description="cap of one backoff; not below `initial_backoff`")
    multiplier: Annotated[Number, Field(ge=1, le=100)] = Field(
        default=2.0, description="growth of the backoff per retry")
    max_retry_after: Annotated[Seconds, Field(ge=0)] = Field(
        default=10.0, description="a `Retry-After` longer than this fails over at once: sleeping that long beats "
        "no other provider")
    budget: Annotated[RetryBudgetSettings | None, BeforeValidator(_budget), Rule("mapping, or `false`")] = Field(
        default_factory=RetryBudgetSettings,
        description="the retry budget (see `retry.budget`), or `false` to switch it off; merges per key "
        "like the sections")

    @model_validator(mode="after")
    def _backoff_order(self) -> RetrySettings:
        if self.max_backoff < self.initial_backoff:
            raise cross_field(
                f"max_backoff ({self.max_backoff:g}) must not be below initial_backoff ({self.initial_backoff:g})",
                "max_backoff must not be below initial_backoff", "max_backoff", "initial_backoff")
        return self


class BreakerSettings(BaseModel):
    """One circuit breaker per provider. It opens when the last `fail_max` verdicts were failures,
    and those failures are at least `failure_rate` of the attempts the provider was given since that
    run of failures began (counting those still waiting for their first content then): a provider
    that is down trips after `fail_max` failures, one that merely fails now and then under load (a
    brownout) stays closed."""

    model_config = SETTINGS

    fail_max: Annotated[Count, Field(ge=1, le=MAX_COUNT)] = Field(
        default=5, description="consecutive failures that open the breaker")
    failure_rate: Annotated[Number, Field(ge=0, le=1)] = Field(
        default=0.9, description="share of the attempts given since a run of failures began that must have failed "
        "to open it (0: consecutive failures alone decide)")
    reset_timeout: Annotated[Seconds, Field(gt=0)] = Field(
        default=15.0, description="how long an open breaker waits before letting one probe through")
    probe: ProbeMode = Field(
        default="background", description="who probes an open breaker after `reset_timeout`: `background`, a tiny "
        "request of the router's own while callers keep skipping the provider (no caller pays for a failed "
        "probe), or `request`, the next caller's own request (see hedging.md)")
    storage: Annotated[str, Rule("`memory`, or a redis URL")] = Field(
        default="memory", description="`memory`, or `redis://host[:port][/db]` (`rediss://` for TLS) to share breaker "
        "state across processes (needs `pip install 'failover[redis]'`, see fleet.md); a password in "
        "the URL is masked everywhere")
    namespace: Name | None = Field(
        default=None, description="the Redis keys are `failover:<namespace>:<provider>:…`; by default 12 hex digits "
        "derived from `telemetry.service_name` and the provider's `type`, `base_url` and `model`. Give "
        "several apps the same namespace to make them share breakers")

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        if value == "memory":
            return value
        parts = check_url(value, "storage", ("redis", "rediss"), kind="storage",
                          shape="storage must be 'memory' or a redis://host:port/db URL")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise PydanticCustomError(
                "storage", "storage URL's database must be a number, as in redis://host:6379/0")
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # A Redis URL may carry a password; repr must not show it.
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "storage" and isinstance(value, str) else value)


def _hedge(value: Any) -> Any:
    # `hedge: false` (or null) switches hedging off; `true` means `{after: auto}`.
    if value is False:
        return None
    if value is True:
        return {}
    return value


def _hedge_after(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_SECONDS:
        raise PydanticCustomError("hedge_after", "after must be a number of seconds above 0 (at most a day), or 'auto'")
    return float(value)


class HedgeSettings(BaseModel):
    """Hedged first chunk (see [hedging.md](hedging.md)): when an attempt has sent no content `after` seconds after it
    was sent, the next eligible provider is started too; the first to send content wins and the other
    is cancelled. Only before the first content of an answer, never for a continuation."""

    model_config = SETTINGS

    after: Annotated[float | Literal["auto"], BeforeValidator(_hedge_after), Rule("seconds > 0, or `auto`")] = Field(
        default="auto", description="seconds, or `auto`: from the provider's last 100 first chunks, their p95 but at "
        "most 3 medians, at least 0.05 s, at most half of `first_token` (`first_token / 2` until 20 were seen)")
    max: Annotated[Count, Field(ge=1, le=3)] = Field(default=1, description="extra attempts a call may start")


class TimeoutSettings(BaseModel):
    """Seconds, each > 0. `total` bounds the whole call, backoff included; the others must not exceed it."""

    model_config = SETTINGS

    connect: Annotated[Seconds, Field(gt=0)] = Field(default=5.0, description="opening the TCP/TLS connection")
    first_token: Annotated[Seconds, Field(gt=0)] = Field(
        default=10.0, description="from sending the request to the first content chunk")
    idle: Annotated[Seconds, Field(gt=0)] = Field(default=30.0, description="the longest gap between two chunks")
    total: Annotated[Seconds, Field(gt=0)] = Field(
        default=120.0, description="the whole call, every attempt and backoff included")

    @model_validator(mode="after")
    def _within_total(self) -> TimeoutSettings:
        # A part longer than the whole could never fire: almost certainly a typo (ms for s?).
        over = [name for name in ("connect", "first_token", "idle") if getattr(self, name) > self.total]
        if over:
            parts = ", ".join(f"{name} ({getattr(self, name):g})" for name in over)
            raise cross_field(f"{parts} must not exceed total ({self.total:g})",
                              f"{', '.join(over)} must not exceed total", *over, "total")
        return self


class Capabilities(BaseModel):
    """What a provider can take. Unset (null): what its `type` supports; the router resolves it.
    A request that needs a capability a provider lacks skips that provider, with the reason recorded."""

    model_config = SETTINGS

    tools: Flag | None = Field(default=None, description="function tools (`tools`, `tool_choice`); none: the type's")
    images: Flag | None = Field(default=None, description="image parts in messages; none: the type's")
    json_schema: Flag | None = Field(
        default=None, description="`response_format` of type `json_schema`; none: the type's")


class TelemetrySettings(BaseModel):
    """OpenTelemetry spans and metrics; see telemetry.md for the `OTEL_*` variables that override these."""

    model_config = SETTINGS

    exporter: Exporter = Field(
        default="none", description="what the CLI installs; the library alone never installs an SDK")
    endpoint: HttpUrl = Field(
        default="http://localhost:4317", description="the OTLP collector, used by `exporter: otlp`")
    service_name: OneLine = Field(default="failover", description="`service.name` of the spans")
    capture_content: Flag = Field(
        default=False, description="prompts and completions stay out of telemetry unless true")


class ProviderSettings(BaseModel):
    """What `defaults:` may set and every provider inherits; a provider may override each key, and
    `retry`, `breaker`, `timeouts` and `capabilities` merge per key."""

    model_config = SETTINGS

    retry: RetrySettings = Field(default_factory=RetrySettings, description="retries on one provider")
    breaker: BreakerSettings = Field(default_factory=BreakerSettings, description="the provider's circuit breaker")
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings, description="the deadlines of a call")
    capabilities: Capabilities = Field(
        default_factory=Capabilities, description="what the provider can take: tools, images, JSON schema output")
    hedge: Annotated[HedgeSettings | None, BeforeValidator(_hedge), Rule("mapping, or `false`")] = Field(
        default=None, description="hedged first chunk, off by default; `{after: 1.0}` or `{after: auto}` (see "
        "hedging.md)")
    midstream: Midstream = Field(
        default="resume", description="what to do when a stream breaks after text was delivered (see behaviour.md)")
    supports_prefill: Flag = Field(
        default=False, description="the provider accepts an assistant message as the last message")
    failover_on_reject: Flag = Field(
        default=False, description="a rejected request (other 400, 422, content filter) may be tried on the next "
        "provider")
    continue_prompt: Text = Field(
        default=DEFAULT_CONTINUE_PROMPT, description="the instruction sent when resuming a cut answer on a provider "
        "without prefill")


# `params` are passed to the SDK call as keyword arguments; these are set by failover itself (a
# value here would be silently overwritten or clash), so they are errors with a pointer instead.
RESERVED_PARAMS: dict[str, str] = {
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


class ProviderConfig(ProviderSettings):
    """One entry of the failover chain, with `defaults` already merged in and env resolved."""

    name: Name = Field(description="unique (case-insensitive); used in logs, spans, metrics, errors and `chains`")
    type: ProviderType = Field(
        description="the SDK to use; `openai` also covers OpenAI-compatible servers (set `base_url`)")
    model: OneLine = Field(description="the model name sent to the provider")
    api_key: HeaderSecret | None = Field(
        default=None, description="**required**; usually `${OPENAI_API_KEY}`. An unset variable makes the provider "
        "unusable (reported and skipped), not the file invalid; see Environment variables")
    api_key_env: str | None = Field(default=None, description="computed: the variable `api_key` referenced")
    missing_env: tuple[str, ...] = Field(
        default=(), description="computed: the variables `api_key` needs that are unset")
    base_url: HttpUrl | None = Field(default=None, description="default: the provider's official endpoint")
    max_tokens: Annotated[Count, Field(ge=1, le=MAX_COUNT)] | None = Field(
        default=None, description="used when the call gives none; default: none, but **1024 for `anthropic`**, "
        "which requires one")
    params: Annotated[dict[str, Any], Rule("mapping")] = Field(
        default_factory=dict, description="extra request parameters passed as they are to the SDK call "
        "(`seed`, `extra_headers`, `extra_body`, …): JSON values, checked against the installed SDK")

    @model_validator(mode="before")
    @classmethod
    def _anthropic_max_tokens(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("type") == "anthropic" and data.get("max_tokens") is None:
            return {**data, "max_tokens": ANTHROPIC_DEFAULT_MAX_TOKENS}
        return data

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        clashes = [f"'{key}' ({RESERVED_PARAMS[key]})" for key in value if key in RESERVED_PARAMS]
        if clashes:
            raise PydanticCustomError(
                "params", "params may not set {keys}: failover sets these itself", {"keys": ", ".join(clashes)})
        problem = json_problem(value)
        if problem:
            raise PydanticCustomError("params", "params are sent as JSON: {problem}", {"problem": problem})
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # Its own fields first: `ProviderConfig(name='openai', type='openai', …)` reads best.
        args = list(super().__repr_args__())
        return sorted(args, key=lambda arg: arg[0] in ProviderSettings.model_fields)

    @property
    def usable(self) -> bool:
        """True when the provider has a key to send."""
        return self.api_key is not None and self.api_key.get_secret_value() != ""


def _quote(path: KeyPath, value: Any) -> str:
    return repr(value)


class Config(BaseModel):
    """The whole validated configuration."""

    model_config = SETTINGS

    source: str = Field(
        default="<dict>", description="the file path, or the `source=` given to parse_config; named in errors")
    providers: tuple[ProviderConfig, ...] = Field(description="the failover chain, in order: the first is tried first")
    chains: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="named chains over the providers: `{name: [provider names]}`. A call "
        "without `chain=` uses the chain named `default`, or the providers' order when there is none")
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings, description="OpenTelemetry settings")

    # Where each value was written; not part of the configuration's value (equality, repr, dumps).
    _source_map: SourceMap = PrivateAttr(default_factory=SourceMap)

    def model_post_init(self, context: Any, /) -> None:
        found = context.get(SOURCE_MAP) if isinstance(context, Mapping) else None
        if isinstance(found, SourceMap):
            self._source_map = found

    @field_validator("providers")
    @classmethod
    def _providers(cls, value: tuple[ProviderConfig, ...]) -> tuple[ProviderConfig, ...]:
        # Repeated here (the loader reports it with lines first) so a Config built in code holds too.
        if not value:
            raise PydanticCustomError("empty", "providers must list at least one provider")
        seen: set[str] = set()
        for provider in value:
            if provider.name.casefold() in seen:
                raise PydanticCustomError("duplicate", "duplicate provider name '{name}'", {"name": provider.name})
            seen.add(provider.name.casefold())
        return value

    @model_validator(mode="after")
    def _chains(self) -> Config:
        found = chain_problems(self.chains, {p.name: repr(p.name) for p in self.providers}, _quote)
        if found:
            path, message = found[0]
            raise PydanticCustomError("chain", "{path}: {message}",
                                      {"path": format_path(("chains", *path)), "message": message})
        return self

    def chain(self, name: str | None = None) -> tuple[ProviderConfig, ...]:
        """The providers of a named chain, in order (DESIGN §2). No name: the chain named `default`,
        or the providers' order when there is none. An unknown name: KeyError naming the known ones."""
        key = "default" if name is None else name
        members = self.chains.get(key)
        if members is None:
            if key == "default":
                return self.providers
            known = ", ".join(dict.fromkeys(["default", *self.chains]))
            raise KeyError(f"no chain named {name!r}; chains: {known}")
        by_name = {p.name: p for p in self.providers}
        return tuple(by_name[member] for member in members)

    def line_of(self, path: KeyPath) -> int | None:
        """The line where the value at `path` (e.g. `("providers", 0, "breaker", "storage")`) was
        written, following what a provider inherited from `defaults`; for a key the file does not
        contain, the line of the nearest enclosing one. None for a Config not loaded from a file."""
        return self._source_map.line_of(path)

    def error(self, path: KeyPath, message: str) -> ConfigError:
        """A ConfigError for a check done after load, naming the file, the line and the key path
        where the value at `path` was written (`defaults.…` for an inherited value)."""
        return self._source_map.error(self.source, path, message)

    def __eq__(self, other: object) -> bool:
        # Two configs with the same values are equal wherever the values were written.
        if not isinstance(other, Config):
            return NotImplemented
        return self.__dict__ == other.__dict__
