"""OpenTelemetry spans and metrics: every semantic-convention name failover uses is in this module.

The library path uses only `opentelemetry-api` (the global tracer and meter providers): without an
SDK installed by the application, every span is non-recording and every instrument a no-op.
`failover.otel_sdk.setup_telemetry` installs the SDK with the console or OTLP exporter; the CLI and
a config whose `telemetry.exporter` is `console` or `otlp` call it, a plain import never does.

One `TracingObserver` per call turns the planner's hooks (`failover.observe.Observer`) into:

    failover chat            INTERNAL, the caller's current span as parent
      chat {model}           CLIENT, one per attempt (request sent), parented explicitly on the call span

Spans are started with an explicit parent context and ended by the hooks; no context is ever
attached across the generator's yields, and nothing is done per chunk.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from failover.errors import ConfigError, StreamInterrupted
from failover.observe import Observer
from failover.policies.breaker import HALF_OPEN

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from failover.config import Config, TelemetrySettings
    from failover.errors import Attempt
    from failover.planner import Route
    from failover.policies.breaker import Breaker
    from failover.policies.classify import Failure
    from failover.providers.base import Decoder
    from failover.request import Message, Request
    from failover.types import Result

log = logging.getLogger("failover.telemetry")

INSTRUMENTATION_NAME = "failover"

# ---------------------------------------------------------------- span names

CALL_SPAN = "failover chat"
OPERATION = "chat"  # gen_ai.operation.name, and the attempt span's name prefix

# ---------------------------------------------------------------- GenAI semantic conventions

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
# opt-in content (capture_content: true)
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
CONTENT_ATTRIBUTES = (GEN_AI_INPUT_MESSAGES, GEN_AI_OUTPUT_MESSAGES, GEN_AI_SYSTEM_INSTRUCTIONS)

SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"

# metrics
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
METRIC_ATTEMPTS = "failover.attempts"
# the bucket boundaries the GenAI conventions advise
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

# ---------------------------------------------------------------- failover's own

FAILOVER_PROVIDER = "failover.provider"  # the YAML name (gen_ai.provider.name is the well-known one)
FAILOVER_ATTEMPT = "failover.attempt"  # ordinal of the attempt within the call, 1-based
FAILOVER_PROVIDER_ATTEMPT = "failover.attempt.provider_attempt"  # number within its provider, 1-based
FAILOVER_OUTCOME = "failover.outcome"  # ok | error | cancelled | skipped
FAILOVER_BACKOFF_S = "failover.backoff_s"  # slept before this attempt
FAILOVER_BREAKER_STATE = "failover.breaker.state"  # right after this attempt's verdict
FAILOVER_RETRY_REFUSED = "failover.retry.refused"  # why a retry the policy allowed was refused ("budget")
FAILOVER_BREAKER_PROBE = "failover.breaker.probe"  # this attempt is the half-open breaker's probe
FAILOVER_PREVIOUS_FAILURE = "failover.previous_failure"  # error.type of the attempt before this one
FAILOVER_ERROR_CLASS = "failover.error.class"  # taxonomy class: transient, silent, unusable, ...
FAILOVER_RETRY_AFTER = "failover.retry_after"  # seconds the provider asked us to wait
FAILOVER_CONTINUATION = "failover.continuation"  # this attempt continues text already delivered
FAILOVER_RESUMED = "failover.resumed"  # the call's answer was stitched from more than one attempt
FAILOVER_CANCELLED = "failover.cancelled"  # the caller closed or cancelled the stream
FAILOVER_CHAIN = "failover.providers"  # the configured chain, in order
FAILOVER_SKIPPED = "failover.providers.skipped"  # providers skipped without a request
FAILOVER_ATTEMPTS = "failover.attempts"  # requests sent in the call (skips not counted)
FAILOVER_SKIP_REASON = "failover.skip.reason"  # the human reason a provider was skipped
FAILOVER_SKIP_CODE = "failover.skip.code"  # breaker_open | breaker_half_open | missing_api_key | deadline
FAILOVER_BREAKER_FROM = "failover.breaker.from"
FAILOVER_BREAKER_TO = "failover.breaker.to"

EVENT_SKIPPED = "failover.provider.skipped"
EVENT_BREAKER = "failover.breaker.state_change"

__all__ = [
    "Telemetry",
    "TracingObserver",
]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("failover")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0"


# ---------------------------------------------------------------- instruments (global API)


@dataclass(frozen=True, slots=True)
class _Instruments:
    tracer: trace.Tracer
    duration: metrics.Histogram
    tokens: metrics.Histogram
    first_chunk: metrics.Histogram
    attempts: metrics.Counter


_instruments: _Instruments | None = None
_instruments_lock = threading.Lock()


def _get_instruments() -> _Instruments:
    """The tracer and instruments, from the global providers. Proxies until an SDK is installed: they
    start recording as soon as the application (or `setup_telemetry`) installs one."""
    global _instruments
    if _instruments is None:
        with _instruments_lock:
            if _instruments is None:
                version = _version()
                meter = metrics.get_meter(INSTRUMENTATION_NAME, version)
                _instruments = _Instruments(
                    tracer=trace.get_tracer(INSTRUMENTATION_NAME, version),
                    duration=meter.create_histogram(
                        METRIC_OPERATION_DURATION, unit="s", description="GenAI operation duration, per attempt",
                        explicit_bucket_boundaries_advisory=_DURATION_BUCKETS),
                    tokens=meter.create_histogram(
                        METRIC_TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used",
                        explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS),
                    first_chunk=meter.create_histogram(
                        METRIC_TIME_TO_FIRST_CHUNK, unit="s",
                        description="Time from sending the request to the first content chunk",
                        explicit_bucket_boundaries_advisory=_DURATION_BUCKETS),
                    attempts=meter.create_counter(
                        METRIC_ATTEMPTS, unit="{attempt}",
                        description="Attempts by provider, outcome (ok, error, cancelled, skipped) and error.type"),
                )
    return _instruments


# ---------------------------------------------------------------- breaker state changes

class _PendingChanges(threading.local):
    """Breaker state changes not yet put on a span, per thread.

    A breaker changes state only inside the planner's synchronous code (admission in `decide`, a
    verdict in `finished`/`failed`/`cancelled`), and the planner calls an observer hook right after,
    on the same thread, with no yield or await in between. So the next hook on this thread belongs
    to the call that caused the change; anything else found here is stale and dropped.
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []


_pending = _PendingChanges()


def _on_breaker_change(provider: str, old: str, new: str) -> None:
    _pending.items.append((provider, old, new))


def _take_changes(provider: str) -> list[tuple[str, str, str]]:
    items = _pending.items
    if not items:
        return []
    _pending.items = []
    return [c for c in items if c[0] == provider]


def _add_breaker_events(span: Span, changes: list[tuple[str, str, str]]) -> None:
    for provider, old, new in changes:
        span.add_event(EVENT_BREAKER, {FAILOVER_PROVIDER: provider, FAILOVER_BREAKER_FROM: old,
                                       FAILOVER_BREAKER_TO: new})


# ---------------------------------------------------------------- content (opt-in)


def _messages_json(messages: Iterable[Message]) -> str:
    return json.dumps([{"role": m.role, "parts": [{"type": "text", "content": m.content}]} for m in messages],
                      ensure_ascii=False)


def _system_json(text: str) -> str:
    return json.dumps([{"type": "text", "content": text}], ensure_ascii=False)


def _output_json(text: str, finish_reason: str) -> str:
    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text}],
                        "finish_reason": finish_reason}], ensure_ascii=False)


# ---------------------------------------------------------------- per router


class Telemetry:
    """A router's telemetry: creates one `TracingObserver` per call.

    It always emits through the global OpenTelemetry API (non-recording unless an SDK is installed);
    with `exporter: console | otlp` it first installs the SDK via `setup_telemetry` (which never
    replaces a provider the application installed).
    """

    def __init__(self, settings: TelemetrySettings, *, secrets: Iterable[str] = (),
                 chain: Sequence[str] = ()) -> None:
        self.settings = settings
        self.capture_content = settings.capture_content
        # Every configured API key, to scrub from any text that reaches telemetry (provider error
        # messages are echoed into status descriptions; a provider may quote the key back).
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))
        self._chain = tuple(chain)
        if settings.exporter != "none":
            from failover.otel_sdk import setup_telemetry  # the SDK side imports our names

            setup_telemetry(settings)
        self._instruments = _get_instruments()

    @classmethod
    def for_config(cls, config: Config) -> Telemetry:
        secrets = [p.api_key.get_secret_value() for p in config.providers if p.api_key is not None]
        try:
            return cls(config.telemetry, secrets=secrets, chain=[p.name for p in config.providers])
        except RuntimeError as e:  # the SDK or the exporter package is not installed
            raise ConfigError(str(e), source=config.source, path="telemetry.exporter") from e

    def watch(self, breaker: Breaker) -> None:
        """Report this breaker's state changes as span events of the call that caused them."""
        if _on_breaker_change not in breaker.listeners:
            breaker.listeners.append(_on_breaker_change)

    def observer(self) -> TracingObserver:
        """A fresh observer for one call; the caller's current context becomes the call span's parent."""
        return TracingObserver(self, otel_context.get_current())

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "****")
        return text


def _skip_code(attempt: Attempt) -> str:
    """A low-cardinality code for a skip, from the planner's reasons (`Admission.reason`,
    `Planner._skip_reason`): fit for a metric attribute, unlike the message with its seconds."""
    message = attempt.message or ""
    if message.startswith("breaker half-open"):
        return "breaker_half_open"
    if message.startswith("breaker open"):
        return "breaker_open"
    if message.endswith("is not set"):
        return "missing_api_key"
    if "deadline" in message:
        return "deadline"
    return "skipped"


class TracingObserver(Observer):
    """The spans and metrics of one call. Every hook runs at most once per attempt; nothing per chunk."""

    __slots__ = ("_attempt_attrs", "_attempt_span", "_call", "_call_ctx", "_continuing", "_ended", "_ins", "_made",
                 "_parent", "_resumed", "_skipped", "_telemetry")

    def __init__(self, telemetry: Telemetry, parent: otel_context.Context) -> None:
        self._telemetry = telemetry
        self._ins = telemetry._instruments
        self._parent = parent
        self._call: Span | None = None
        self._call_ctx: otel_context.Context | None = None
        self._attempt_span: Span | None = None
        self._attempt_attrs: dict[str, AttributeValue] = {}  # the metric attributes of the live attempt
        self._made = 0
        self._skipped: list[str] = []
        self._continuing = False  # the live attempt continues delivered text
        self._resumed = False  # a continuation delivered text (what Result.resumed says, also for failed calls)
        self._ended = False

    # ---- the call

    def call_started(self, request: Request) -> None:
        _pending.items = []  # nothing from before this call belongs to it
        span = self._ins.tracer.start_span(CALL_SPAN, context=self._parent, kind=SpanKind.INTERNAL)
        self._call = span
        self._call_ctx = trace.set_span_in_context(span, self._parent)
        if span.is_recording():
            if self._telemetry._chain:
                span.set_attribute(FAILOVER_CHAIN, list(self._telemetry._chain))
            if self._telemetry.capture_content:
                span.set_attribute(GEN_AI_INPUT_MESSAGES, self._telemetry.scrub(_messages_json(request.messages)))

    def call_ended(self, result: Result | None, error: BaseException | None, *, cancelled: bool = False) -> None:
        if self._ended:
            return
        self._ended = True
        if self._attempt_span is not None:  # defensive: the planner ends every attempt before the call
            self._attempt_span.set_attribute(FAILOVER_CANCELLED, cancelled)
            self._attempt_span.end()
            self._attempt_span = None
        span = self._call
        if span is None:
            return
        _pending.items = []  # a change is always put on its attempt's span before this
        if span.is_recording():
            span.set_attribute(FAILOVER_ATTEMPTS, self._made)
            if self._skipped:
                span.set_attribute(FAILOVER_SKIPPED, list(self._skipped))
            capture = self._telemetry.capture_content
            if result is not None:
                span.set_attribute(FAILOVER_PROVIDER, result.provider)
                span.set_attribute(FAILOVER_RESUMED, result.resumed)
                if capture:
                    span.set_attribute(GEN_AI_OUTPUT_MESSAGES, self._telemetry.scrub(
                        _output_json(result.text, result.finish_reason or "stop")))
            else:
                span.set_attribute(FAILOVER_RESUMED, self._resumed)
            if cancelled:
                span.set_attribute(FAILOVER_CANCELLED, True)
            elif error is not None:
                span.set_attribute(ERROR_TYPE, type(error).__name__)
                first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
                span.set_status(Status(StatusCode.ERROR, self._telemetry.scrub(first_line)))
                if capture and isinstance(error, StreamInterrupted):
                    span.set_attribute(GEN_AI_OUTPUT_MESSAGES, self._telemetry.scrub(
                        _output_json(error.partial_text, "error")))
        span.end()

    # ---- attempts

    def attempt_started(self, route: Route, number: int, request: Request, *, continuing: bool,
                        backoff_s: float, previous: Failure | None) -> None:
        if self._attempt_span is not None:  # defensive: never leave a span open
            self._attempt_span.end()
        self._made += 1
        self._continuing = continuing
        provider = route.provider
        model = provider.model
        address, port = provider.server_address
        # the attributes the metrics share with the span
        base: dict[str, AttributeValue] = {
            GEN_AI_OPERATION_NAME: OPERATION,
            GEN_AI_PROVIDER_NAME: provider.kind,
            GEN_AI_REQUEST_MODEL: model,
            SERVER_ADDRESS: address,
        }
        if port is not None:
            base[SERVER_PORT] = port
        self._attempt_attrs = base
        span = self._ins.tracer.start_span(f"{OPERATION} {model}", context=self._call_ctx, kind=SpanKind.CLIENT,
                                           attributes=base)
        self._attempt_span = span
        _add_breaker_events(span, _take_changes(route.name))
        if not span.is_recording():
            return
        attrs: dict[str, AttributeValue] = {
            GEN_AI_REQUEST_STREAM: True,
            FAILOVER_PROVIDER: route.name,
            FAILOVER_ATTEMPT: self._made,
            FAILOVER_PROVIDER_ATTEMPT: number,
            FAILOVER_BACKOFF_S: backoff_s,
            FAILOVER_CONTINUATION: continuing,
        }
        max_tokens = request.max_tokens or route.config.max_tokens
        if max_tokens is not None:
            attrs[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if request.temperature is not None:
            attrs[GEN_AI_REQUEST_TEMPERATURE] = float(request.temperature)
        if request.top_p is not None:
            attrs[GEN_AI_REQUEST_TOP_P] = float(request.top_p)
        if request.stop:
            attrs[GEN_AI_REQUEST_STOP_SEQUENCES] = list(request.stop)
        if previous is not None:
            attrs[FAILOVER_PREVIOUS_FAILURE] = previous.error_type
        if route.breaker.state == HALF_OPEN:
            attrs[FAILOVER_BREAKER_PROBE] = True
        if self._telemetry.capture_content:
            scrub = self._telemetry.scrub
            if provider.kind == "anthropic":  # the system prompt travels apart from the conversation
                if request.system is not None:
                    attrs[GEN_AI_SYSTEM_INSTRUCTIONS] = scrub(_system_json(request.system))
                attrs[GEN_AI_INPUT_MESSAGES] = scrub(_messages_json(request.conversation))
            else:
                attrs[GEN_AI_INPUT_MESSAGES] = scrub(_messages_json(request.messages))
        span.set_attributes(attrs)

    def attempt_ended(self, attempt: Attempt, decoder: Decoder, failure: Failure | None) -> None:
        span = self._attempt_span
        self._attempt_span = None
        base = self._attempt_attrs
        cancelled = attempt.error_type == "cancelled" and attempt.error_class == "caller"
        failed = attempt.outcome != "ok" and not cancelled
        outcome = "cancelled" if cancelled else attempt.outcome
        if self._continuing and attempt.first_chunk_s is not None:
            self._resumed = True
        if span is not None:
            _add_breaker_events(span, _take_changes(attempt.provider))
            if span.is_recording():
                self._describe(span, attempt, decoder, cancelled=cancelled, failed=failed)
            span.end()

        ins = self._ins
        if failed:
            ins.duration.record(attempt.duration_s, {**base, ERROR_TYPE: attempt.error_type or "error"})
        elif not cancelled:
            ins.duration.record(attempt.duration_s, base)
        if attempt.first_chunk_s is not None:
            ins.first_chunk.record(attempt.first_chunk_s, base)
        if decoder.input_tokens or decoder.output_tokens:
            usage = dict(base)
            if decoder.model:
                usage[GEN_AI_RESPONSE_MODEL] = decoder.model
            if decoder.input_tokens:
                ins.tokens.record(decoder.input_tokens, {**usage, GEN_AI_TOKEN_TYPE: "input"})
            if decoder.output_tokens:
                ins.tokens.record(decoder.output_tokens, {**usage, GEN_AI_TOKEN_TYPE: "output"})
        counted: dict[str, AttributeValue] = {FAILOVER_PROVIDER: attempt.provider, FAILOVER_OUTCOME: outcome}
        if failed:
            counted[ERROR_TYPE] = attempt.error_type or "error"
        ins.attempts.add(1, counted)

    def _describe(self, span: Span, attempt: Attempt, decoder: Decoder, *, cancelled: bool, failed: bool) -> None:
        attrs: dict[str, AttributeValue] = {
            FAILOVER_OUTCOME: "cancelled" if cancelled else attempt.outcome,
        }
        if decoder.model:
            attrs[GEN_AI_RESPONSE_MODEL] = decoder.model
        if decoder.finish_reason:
            attrs[GEN_AI_RESPONSE_FINISH_REASONS] = [decoder.finish_reason]
        if attempt.outcome == "ok" or decoder.input_tokens:
            attrs[GEN_AI_USAGE_INPUT_TOKENS] = decoder.input_tokens
        if attempt.outcome == "ok" or decoder.output_tokens:
            attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = decoder.output_tokens
        if attempt.first_chunk_s is not None:
            attrs[GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = attempt.first_chunk_s
        if attempt.breaker_state:
            attrs[FAILOVER_BREAKER_STATE] = attempt.breaker_state
        if cancelled:
            attrs[FAILOVER_CANCELLED] = True
        elif failed:
            attrs[ERROR_TYPE] = attempt.error_type or "error"
            if attempt.error_class:
                attrs[FAILOVER_ERROR_CLASS] = attempt.error_class
            if attempt.status_code is not None:
                attrs[HTTP_RESPONSE_STATUS_CODE] = attempt.status_code
            if attempt.retry_after is not None:
                attrs[FAILOVER_RETRY_AFTER] = attempt.retry_after
            if attempt.retry_refused is not None:
                attrs[FAILOVER_RETRY_REFUSED] = attempt.retry_refused
        span.set_attributes(attrs)
        if failed:
            message = self._telemetry.scrub(attempt.message or attempt.error_type or "error")
            span.set_status(Status(StatusCode.ERROR, message))

    def attempt_skipped(self, attempt: Attempt) -> None:
        self._skipped.append(attempt.provider)
        code = _skip_code(attempt)
        span = self._call
        if span is not None:
            _add_breaker_events(span, _take_changes(attempt.provider))
            span.add_event(EVENT_SKIPPED, {
                FAILOVER_PROVIDER: attempt.provider,
                FAILOVER_SKIP_REASON: self._telemetry.scrub(attempt.message or ""),
                FAILOVER_SKIP_CODE: code,
            })
        self._ins.attempts.add(1, {FAILOVER_PROVIDER: attempt.provider, FAILOVER_OUTCOME: "skipped",
                                   ERROR_TYPE: code})
