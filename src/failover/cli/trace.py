"""The compact trace tree `failover stream --trace` and `failover try --trace` print: each call span,
then one line per attempt (and skipped provider) with its key attributes and status, in start order;
and `capture`, the in-memory exporter that collects the spans for it."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import StatusCode

from failover.errors import ConfigError
from failover.telemetry.semconv import (
    CALL_SPAN,
    ERROR_TYPE,
    EVENT_BREAKER,
    EVENT_SKIPPED,
    FAILOVER_ATTEMPTS,
    FAILOVER_BACKOFF_S,
    FAILOVER_BREAKER_FROM,
    FAILOVER_BREAKER_STATE,
    FAILOVER_BREAKER_TO,
    FAILOVER_CANCELLED,
    FAILOVER_CONTINUATION,
    FAILOVER_PREVIOUS_FAILURE,
    FAILOVER_PROVIDER,
    FAILOVER_PROVIDER_ATTEMPT,
    FAILOVER_RESUMED,
    FAILOVER_SKIP_REASON,
    FAILOVER_SKIPPED,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from failover.config import TelemetrySettings

def _fmt_attr(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def format_trace(spans: Iterable[ReadableSpan]) -> str:
    """A compact tree of the calls in `spans`: each `failover chat` span, then one line per attempt
    with its key attributes and status, in start order."""
    spans = list(spans)
    lines: list[str] = []
    roots = sorted((s for s in spans if s.name == CALL_SPAN), key=lambda s: s.start_time or 0)
    for root in roots:
        ctx = root.context
        children = sorted((s for s in spans if s.parent is not None and ctx is not None
                           and s.parent.span_id == ctx.span_id), key=lambda s: s.start_time or 0)
        attrs: Mapping[str, Any] = root.attributes or {}
        trace_id = f"{ctx.trace_id:032x}" if ctx is not None else "?"
        head = [f"{CALL_SPAN}  trace {trace_id}", _duration(root), _status(root)]
        head += [f"{k.removeprefix('failover.')}={_fmt_attr(attrs[k])}"
                 for k in (FAILOVER_PROVIDER, FAILOVER_ATTEMPTS, FAILOVER_RESUMED, FAILOVER_SKIPPED, ERROR_TYPE,
                           FAILOVER_CANCELLED) if k in attrs]
        head.append(_why(root))
        lines.append("  ".join(p for p in head if p))
        items: list[tuple[int, str]] = []
        for event in root.events:
            if event.name == EVENT_SKIPPED:
                ea: Mapping[str, Any] = event.attributes or {}
                items.append((event.timestamp, f"skipped {ea.get(FAILOVER_PROVIDER)}: {ea.get(FAILOVER_SKIP_REASON)}"))
        for child in children:
            items.append((child.start_time or 0, _attempt_line(child)))
        items.sort(key=lambda item: item[0])
        for i, (_, text) in enumerate(items):
            lines.append(("└─ " if i == len(items) - 1 else "├─ ") + text)
    return "\n".join(lines)


def _duration(span: ReadableSpan) -> str:
    if span.start_time is None or span.end_time is None:
        return "open"
    return f"{(span.end_time - span.start_time) / 1e9:.3f}s"


def _status(span: ReadableSpan) -> str:
    code = span.status.status_code
    if code is StatusCode.ERROR:
        return "ERROR"
    return "OK" if code is StatusCode.OK else "UNSET"


def _why(span: ReadableSpan, limit: int = 100) -> str:
    """The ERROR status description, shortened, for the end of a line."""
    text = span.status.description if span.status.status_code is StatusCode.ERROR else None
    if not text:
        return ""
    return "- " + (text if len(text) <= limit else text[: limit - 1] + "…")


def _attempt_line(span: ReadableSpan) -> str:
    a: Mapping[str, Any] = span.attributes or {}
    where = f"{a.get(FAILOVER_PROVIDER)}#{a.get(FAILOVER_PROVIDER_ATTEMPT)}"
    parts = [span.name, where, _duration(span), _status(span)]
    keys: list[tuple[str, str]] = [
        (ERROR_TYPE, "error.type"), (FAILOVER_PREVIOUS_FAILURE, "after"), (FAILOVER_BACKOFF_S, "backoff_s"),
        (GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, "first_chunk_s"), (GEN_AI_USAGE_INPUT_TOKENS, "in"),
        (GEN_AI_USAGE_OUTPUT_TOKENS, "out"), (GEN_AI_RESPONSE_FINISH_REASONS, "finish"),
        (FAILOVER_CONTINUATION, "continuation"), (FAILOVER_BREAKER_STATE, "breaker"),
        (FAILOVER_CANCELLED, "cancelled"),
    ]
    for key, label in keys:
        value = a.get(key)
        if value is None or value is False or (key == FAILOVER_BACKOFF_S and not value):
            continue
        parts.append(f"{label}={_fmt_attr(value)}")
    for event in span.events:
        if event.name == EVENT_BREAKER:
            ea: Mapping[str, Any] = event.attributes or {}
            parts.append(f"breaker {ea.get(FAILOVER_BREAKER_FROM)}->{ea.get(FAILOVER_BREAKER_TO)}")
    parts.append(_why(span))
    return "  ".join(p for p in parts if p)



def capture(settings: TelemetrySettings) -> InMemorySpanExporter | None:
    """`--trace`: an in-memory span exporter on the SDK tracer provider (installed here if needed)."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        print("warning: --trace needs the OpenTelemetry SDK: pip install 'failover[telemetry]'", file=sys.stderr)
        return None
    from failover.telemetry.sdk import setup_telemetry

    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    try:
        installed = setup_telemetry(settings, processors=[processor])
    except RuntimeError as e:  # the config's exporter is not installed
        raise ConfigError(str(e), path="telemetry.exporter") from e
    if not installed:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            print("warning: --trace: another tracer provider is installed; no trace to show", file=sys.stderr)
            return None
        provider.add_span_processor(processor)
    return memory
