"""One call's spans and metrics, from the planner's events (failover.events).

    failover chat            INTERNAL, the caller's current span as parent
      chat {model}           CLIENT, one per attempt (request sent), parented explicitly on the call span

Spans are started with an explicit parent context and ended by the events; no context is ever
attached across the generator's yields, and nothing is done per chunk. Only the OpenTelemetry API
is used: without an SDK installed by the application every span is non-recording.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from failover.errors import StreamInterrupted
from failover.events import (
    AttemptEnded,
    AttemptStarted,
    BreakerChanged,
    CallEnded,
    CallStarted,
    Event,
    Observer,
    ProbeEnded,
    ProviderSkipped,
)
from failover.request import Text
from failover.telemetry import semconv as sc

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from failover.redact import Scrubber
    from failover.request import Message, Tool
    from failover.types import ToolCall


@dataclass(frozen=True, slots=True)
class Instruments:
    tracer: trace.Tracer
    duration: metrics.Histogram
    tokens: metrics.Histogram
    first_chunk: metrics.Histogram
    attempts: metrics.Counter


_instruments: Instruments | None = None
_instruments_lock = threading.Lock()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("failover")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0"


def instruments() -> Instruments:
    """The tracer and instruments, from the global providers. Proxies until an SDK is installed: they
    start recording as soon as the application (or `setup_telemetry`) installs one."""
    global _instruments
    if _instruments is None:
        with _instruments_lock:
            if _instruments is None:
                version = _version()
                meter = metrics.get_meter(sc.INSTRUMENTATION_NAME, version)
                _instruments = Instruments(
                    tracer=trace.get_tracer(sc.INSTRUMENTATION_NAME, version),
                    duration=meter.create_histogram(
                        sc.METRIC_OPERATION_DURATION, unit="s", description="GenAI operation duration, per attempt",
                        explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS),
                    tokens=meter.create_histogram(
                        sc.METRIC_TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used",
                        explicit_bucket_boundaries_advisory=sc.TOKEN_BUCKETS),
                    first_chunk=meter.create_histogram(
                        sc.METRIC_TIME_TO_FIRST_CHUNK, unit="s",
                        description="Time from sending the request to the first content chunk",
                        explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS),
                    attempts=meter.create_counter(
                        sc.METRIC_ATTEMPTS, unit="{attempt}",
                        description="Attempts by provider, outcome (ok, error, cancelled, skipped, hedged, probe) "
                                    "and error.type"),
                )
    return _instruments


# ---- content (opt-in: capture_content)


def _parts(m: Message) -> list[dict[str, Any]]:
    """One message's parts in the GenAI conventions' shape (text, uri/blob images, tool calls and
    their responses)."""
    if m.role == "tool":
        return [{"type": "tool_call_response", "id": m.tool_call_id, "response": m.text}]
    parts: list[dict[str, Any]] = []
    for part in m.parts:
        if isinstance(part, Text):
            parts.append({"type": "text", "content": part.text})
        elif part.inline is None:
            parts.append({"type": "uri", "modality": "image", "uri": part.url})
        else:
            media_type, data = part.inline
            parts.append({"type": "blob", "modality": "image", "mime_type": media_type, "content": data})
    parts += [_call(c) for c in m.tool_calls]
    return parts


def _call(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}


def messages_json(messages: Iterable[Message]) -> str:
    return json.dumps([{"role": m.role, "parts": _parts(m)} for m in messages], ensure_ascii=False)


def system_json(text: str) -> str:
    return json.dumps([{"type": "text", "content": text}], ensure_ascii=False)


def output_json(text: str, finish_reason: str, calls: Iterable[ToolCall] = ()) -> str:
    parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text else []
    parts += [_call(c) for c in calls]
    return json.dumps([{"role": "assistant", "parts": parts, "finish_reason": finish_reason}], ensure_ascii=False)


def tools_json(tools: Iterable[Tool]) -> str:
    return json.dumps([{"type": "function", "name": t.name, "description": t.description,
                        "parameters": dict(t.parameters)} for t in tools], ensure_ascii=False)


class TracingObserver(Observer):
    """The spans and metrics of one call."""

    __slots__ = ("_attempt_attrs", "_attempt_span", "_call", "_call_ctx", "_capture", "_continuing",
                 "_ins", "_made", "_parent", "_resumed", "_scrub", "_skipped")

    def __init__(self, ins: Instruments, parent: otel_context.Context, *, scrubber: Scrubber,
                 capture_content: bool) -> None:
        self._ins = ins
        self._parent = parent
        self._scrub = scrubber.scrub
        self._capture = capture_content
        self._call: Span | None = None
        self._call_ctx: otel_context.Context | None = None
        self._attempt_span: Span | None = None
        self._attempt_attrs: dict[str, AttributeValue] = {}  # the metric attributes of the live attempt
        self._made = 0
        self._skipped: list[str] = []
        self._continuing = False  # the live attempt continues delivered text
        self._resumed = False  # a continuation delivered text (what Result.resumed says, also for failed calls)

    def handle(self, event: Event) -> None:
        if isinstance(event, AttemptStarted):
            self._attempt_started(event)
        elif isinstance(event, AttemptEnded):
            self._attempt_ended(event)
        elif isinstance(event, BreakerChanged):
            self._breaker_changed(event)
        elif isinstance(event, ProviderSkipped):
            self._skipped_provider(event)
        elif isinstance(event, CallStarted):
            self._call_started(event)
        elif isinstance(event, CallEnded):
            self._call_ended(event)
        else:
            self._probe_ended(event)

    def _probe_ended(self, event: ProbeEnded) -> None:
        """A background probe, as a span of its own (it belongs to no caller's call), linked to the
        call whose admission started it."""
        route = event.route
        links = [trace.Link(self._call.get_span_context())] if self._call is not None else []
        end = time.time_ns()
        span = self._ins.tracer.start_span(sc.PROBE_SPAN, context=otel_context.Context(), kind=SpanKind.CLIENT,
                                           links=links, start_time=end - int(event.duration_s * 1e9))
        span.set_attributes({sc.FAILOVER_PROBE: True, sc.FAILOVER_PROVIDER: route.name,
                             sc.GEN_AI_PROVIDER_NAME: route.provider.kind,
                             sc.GEN_AI_REQUEST_MODEL: route.provider.model,
                             sc.FAILOVER_BREAKER_STATE: event.judgement.state,
                             sc.FAILOVER_OUTCOME: "ok" if event.error_type is None else "error"})
        if event.error_type is not None:
            span.set_attribute(sc.ERROR_TYPE, event.error_type)
            span.set_status(Status(StatusCode.ERROR, event.error_type))
        for change in event.judgement.changes:
            span.add_event(sc.EVENT_BREAKER, {sc.FAILOVER_PROVIDER: change.provider,
                                              sc.FAILOVER_BREAKER_FROM: change.old, sc.FAILOVER_BREAKER_TO: change.new})
        span.end(end)
        self._ins.attempts.add(1, {sc.FAILOVER_PROVIDER: route.name, sc.FAILOVER_OUTCOME: "probe",
                                   **({sc.ERROR_TYPE: event.error_type} if event.error_type else {})})

    # ---- the call

    def _call_started(self, event: CallStarted) -> None:
        span = self._ins.tracer.start_span(sc.CALL_SPAN, context=self._parent, kind=SpanKind.INTERNAL)
        self._call = span
        self._call_ctx = trace.set_span_in_context(span, self._parent)
        if span.is_recording():
            if event.chain:
                span.set_attribute(sc.FAILOVER_CHAIN, list(event.chain))
            if self._capture:
                span.set_attribute(sc.GEN_AI_INPUT_MESSAGES, self._scrub(messages_json(event.request.messages)))

    def _call_ended(self, event: CallEnded) -> None:
        if self._attempt_span is not None:  # defensive: the planner ends every attempt before the call
            self._attempt_span.set_attribute(sc.FAILOVER_CANCELLED, event.cancelled)
            self._attempt_span.end()
            self._attempt_span = None
        span, self._call = self._call, None
        if span is None:
            return
        result, error = event.result, event.error
        if span.is_recording():
            span.set_attribute(sc.FAILOVER_ATTEMPTS, self._made)
            if self._skipped:
                span.set_attribute(sc.FAILOVER_SKIPPED, list(self._skipped))
            if result is not None:
                span.set_attribute(sc.FAILOVER_PROVIDER, result.provider)
                span.set_attribute(sc.FAILOVER_RESUMED, result.resumed)
                if self._capture:
                    span.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, self._scrub(
                        output_json(result.text, result.finish_reason or "stop", result.tool_calls)))
            else:
                span.set_attribute(sc.FAILOVER_RESUMED, self._resumed)
            if event.cancelled:
                span.set_attribute(sc.FAILOVER_CANCELLED, True)
            elif error is not None:
                span.set_attribute(sc.ERROR_TYPE, type(error).__name__)
                text = str(error)
                span.set_status(Status(StatusCode.ERROR, self._scrub(text.splitlines()[0] if text else
                                                                     type(error).__name__)))
                if self._capture and isinstance(error, StreamInterrupted):
                    span.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, self._scrub(
                        output_json(error.partial_text, "error")))
        span.end()

    # ---- attempts

    def _attempt_started(self, event: AttemptStarted) -> None:
        if self._attempt_span is not None:  # defensive: never leave a span open
            self._attempt_span.end()
        self._made += 1
        self._continuing = event.continuing
        route, request = event.route, event.request
        provider = route.provider
        model = provider.model
        address, port = provider.server_address
        # the attributes the metrics share with the span
        base: dict[str, AttributeValue] = {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION,
            sc.GEN_AI_PROVIDER_NAME: provider.kind,
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.SERVER_ADDRESS: address,
        }
        if port is not None:
            base[sc.SERVER_PORT] = port
        self._attempt_attrs = base
        span = self._ins.tracer.start_span(f"{sc.OPERATION} {model}", context=self._call_ctx,
                                           kind=SpanKind.CLIENT, attributes=base)
        self._attempt_span = span
        if not span.is_recording():
            return
        attrs: dict[str, AttributeValue] = {
            sc.GEN_AI_REQUEST_STREAM: True,
            sc.FAILOVER_PROVIDER: route.name,
            sc.FAILOVER_ATTEMPT: self._made,
            sc.FAILOVER_PROVIDER_ATTEMPT: event.number,
            sc.FAILOVER_BACKOFF_S: event.backoff_s,
            sc.FAILOVER_CONTINUATION: event.continuing,
        }
        max_tokens = request.max_tokens or route.config.max_tokens
        if max_tokens is not None:
            attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if request.temperature is not None:
            attrs[sc.GEN_AI_REQUEST_TEMPERATURE] = float(request.temperature)
        if request.top_p is not None:
            attrs[sc.GEN_AI_REQUEST_TOP_P] = float(request.top_p)
        if request.stop:
            attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(request.stop)
        if request.seed is not None:
            attrs[sc.GEN_AI_REQUEST_SEED] = request.seed
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json" if request.response_format is not None else "text"
        if request.tools:
            attrs[sc.FAILOVER_TOOLS] = len(request.tools)
        if event.previous is not None:
            attrs[sc.FAILOVER_PREVIOUS_FAILURE] = event.previous.error_type
        if event.probe:
            attrs[sc.FAILOVER_BREAKER_PROBE] = True
        if event.hedge:
            attrs[sc.FAILOVER_HEDGE] = True
        if self._capture:
            scrub = self._scrub
            if provider.kind == "anthropic":  # the system prompt travels apart from the conversation
                if request.system is not None:
                    attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = scrub(system_json(request.system))
                attrs[sc.GEN_AI_INPUT_MESSAGES] = scrub(messages_json(request.conversation))
            else:
                attrs[sc.GEN_AI_INPUT_MESSAGES] = scrub(messages_json(request.messages))
            if request.tools:
                attrs[sc.GEN_AI_TOOL_DEFINITIONS] = scrub(tools_json(request.tools))
        span.set_attributes(attrs)

    def _attempt_ended(self, event: AttemptEnded) -> None:
        attempt, decoder = event.attempt, event.decoder
        span, self._attempt_span = self._attempt_span, None
        base = self._attempt_attrs
        cancelled = event.cancelled
        failed = attempt.outcome == "error" and not cancelled
        outcome = "cancelled" if cancelled else attempt.outcome
        if self._continuing and attempt.first_chunk_s is not None:
            self._resumed = True
        if span is not None:
            if span.is_recording():
                self._describe(span, event, outcome, failed)
            span.end()

        ins = self._ins
        if failed:
            ins.duration.record(attempt.duration_s, {**base, sc.ERROR_TYPE: attempt.error_type or "error"})
        elif not cancelled and outcome != "hedged":
            ins.duration.record(attempt.duration_s, base)
        if attempt.first_chunk_s is not None:
            ins.first_chunk.record(attempt.first_chunk_s, base)
        if decoder.input_tokens or decoder.output_tokens:
            usage = dict(base)
            if outcome == "hedged":  # the cost of hedging: tokens of an attempt that lost the race
                usage[sc.FAILOVER_OUTCOME] = "hedged"
            if decoder.model:
                usage[sc.GEN_AI_RESPONSE_MODEL] = decoder.model
            if decoder.input_tokens:
                ins.tokens.record(decoder.input_tokens, {**usage, sc.GEN_AI_TOKEN_TYPE: "input"})
            if decoder.output_tokens:
                ins.tokens.record(decoder.output_tokens, {**usage, sc.GEN_AI_TOKEN_TYPE: "output"})
        counted: dict[str, AttributeValue] = {sc.FAILOVER_PROVIDER: attempt.provider, sc.FAILOVER_OUTCOME: outcome}
        if failed:
            counted[sc.ERROR_TYPE] = attempt.error_type or "error"
        ins.attempts.add(1, counted)

    def _describe(self, span: Span, event: AttemptEnded, outcome: str, failed: bool) -> None:
        attempt, decoder = event.attempt, event.decoder
        attrs: dict[str, AttributeValue] = {sc.FAILOVER_OUTCOME: outcome}
        if decoder.model:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = decoder.model
        if decoder.finish_reason:
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [decoder.finish_reason]
        if attempt.outcome == "ok" or decoder.input_tokens:
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = decoder.input_tokens
        if attempt.outcome == "ok" or decoder.output_tokens:
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = decoder.output_tokens
        if attempt.first_chunk_s is not None:
            attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = attempt.first_chunk_s
        if attempt.breaker_state:
            attrs[sc.FAILOVER_BREAKER_STATE] = attempt.breaker_state
        if decoder.unrepresented:
            attrs[sc.FAILOVER_UNREPRESENTED] = [f"{k}={n}" for k, n in sorted(decoder.unrepresented.items())]
        calls = decoder.tool_calls()
        if calls:
            attrs[sc.FAILOVER_TOOL_CALLS] = len(calls)
        if outcome == "cancelled":
            attrs[sc.FAILOVER_CANCELLED] = True
        elif failed:
            attrs[sc.ERROR_TYPE] = attempt.error_type or "error"
            if attempt.error_class:
                attrs[sc.FAILOVER_ERROR_CLASS] = attempt.error_class
            if attempt.status_code is not None:
                attrs[sc.HTTP_RESPONSE_STATUS_CODE] = attempt.status_code
            if attempt.retry_after is not None:
                attrs[sc.FAILOVER_RETRY_AFTER] = attempt.retry_after
            if attempt.retry_refused is not None:
                attrs[sc.FAILOVER_RETRY_REFUSED] = attempt.retry_refused
        span.set_attributes(attrs)
        if failed:
            span.set_status(Status(StatusCode.ERROR, self._scrub(attempt.message or attempt.error_type or "error")))

    def _skipped_provider(self, event: ProviderSkipped) -> None:
        attempt = event.attempt
        self._skipped.append(attempt.provider)
        if self._call is not None:
            self._call.add_event(sc.EVENT_SKIPPED, {
                sc.FAILOVER_PROVIDER: attempt.provider,
                sc.FAILOVER_SKIP_REASON: self._scrub(attempt.message or ""),
                sc.FAILOVER_SKIP_CODE: event.code,
            })
        self._ins.attempts.add(1, {sc.FAILOVER_PROVIDER: attempt.provider, sc.FAILOVER_OUTCOME: "skipped",
                                   sc.ERROR_TYPE: event.code})

    def _breaker_changed(self, event: BreakerChanged) -> None:
        span = self._attempt_span or self._call
        if span is not None:
            change = event.change
            span.add_event(sc.EVENT_BREAKER, {sc.FAILOVER_PROVIDER: change.provider,
                                              sc.FAILOVER_BREAKER_FROM: change.old, sc.FAILOVER_BREAKER_TO: change.new})
