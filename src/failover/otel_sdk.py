"""Installing the OpenTelemetry SDK, for the CLI and a config whose `telemetry.exporter` is `console`
or `otlp`; and the CLI's compact trace tree. The library's own instrumentation (telemetry.py) uses
only the API: importing failover never imports this module's SDK parts.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import StatusCode

from failover.telemetry import (
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
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    from failover.config import TelemetrySettings

log = logging.getLogger("failover.telemetry")

# ---------------------------------------------------------------- SDK installation (CLI, telemetry: section)

_setup_lock = threading.Lock()
_installed_tracer_provider: Any = None  # the SDK TracerProvider setup_telemetry installed, if any
_installed_meter_provider: Any = None


def _sdk_missing(settings: TelemetrySettings) -> RuntimeError:
    return RuntimeError(
        f"telemetry.exporter is {settings.exporter!r} but the OpenTelemetry SDK is not installed: "
        "pip install 'failover[telemetry]'")


def _is_proxy_meter_provider(provider: object) -> bool:
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # pragma: no cover - a future API without the private class
        return type(provider).__name__ == "_ProxyMeterProvider"
    return isinstance(provider, _ProxyMeterProvider)


def _exporters(settings: TelemetrySettings, endpoint: str | None) -> tuple[Any, Any]:
    """(span exporter, metric exporter) for the settings, or (None, None) for `none`."""
    if settings.exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr: stdout carries the answer in `failover stream`
        return ConsoleSpanExporter(out=sys.stderr), ConsoleMetricExporter(out=sys.stderr)
    if settings.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as e:
            raise RuntimeError("telemetry.exporter is 'otlp' but the OTLP exporter is not installed: "
                               "pip install 'failover[telemetry]'") from e
        # The standard environment variables win over the YAML; an explicit argument wins over both.
        env = os.environ
        traces_url = endpoint or (None if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                                  or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else settings.endpoint)
        metrics_url = endpoint or (None if env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
                                   or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else settings.endpoint)
        return OTLPSpanExporter(endpoint=traces_url), OTLPMetricExporter(endpoint=metrics_url)
    return None, None


def setup_telemetry(settings: TelemetrySettings, *, processors: Sequence[SpanProcessor] = (),
                    endpoint: str | None = None) -> bool:
    """Install the OpenTelemetry SDK with the exporter of `settings` (console or OTLP over gRPC).

    `OTEL_SERVICE_NAME` and `OTEL_EXPORTER_OTLP_ENDPOINT` (or the per-signal variables) win over the
    YAML; `endpoint`, when given, wins over both. `processors` are added to the tracer provider (the
    CLI's in-memory exporter for `--trace`). Idempotent: a second call only adds its processors. A
    provider the application installed is never replaced: it is left as it is (logged at info), and
    its own exporters receive failover's spans.

    Returns True when failover's SDK tracer provider is installed (by this call or an earlier one).
    """
    global _installed_tracer_provider, _installed_meter_provider
    if settings.exporter == "none" and not processors:
        return _installed_tracer_provider is not None
    with _setup_lock:
        if _installed_tracer_provider is not None:
            for processor in processors:
                _installed_tracer_provider.add_span_processor(processor)
            return True
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as e:
            raise _sdk_missing(settings) from e

        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider):
            log.info("an OpenTelemetry tracer provider is already installed (%s); failover leaves it as it is "
                     "and its spans go to that provider's exporters", type(current).__name__)
            return False
        service = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
        resource = Resource.create({SERVICE_NAME: service})
        span_exporter, metric_exporter = _exporters(settings, endpoint)
        provider = TracerProvider(resource=resource)
        if span_exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(span_exporter))
        for processor in processors:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _installed_tracer_provider = provider

        if metric_exporter is not None:
            if _is_proxy_meter_provider(metrics.get_meter_provider()):
                meter_provider = MeterProvider(resource=resource,
                                               metric_readers=[PeriodicExportingMetricReader(metric_exporter)])
                metrics.set_meter_provider(meter_provider)
                _installed_meter_provider = meter_provider
            else:
                log.info("an OpenTelemetry meter provider is already installed; failover leaves it as it is")
        target = f" to {endpoint or settings.endpoint}" if settings.exporter == "otlp" else ""
        log.info("failover installed the OpenTelemetry SDK (exporter %s%s, service %s)", settings.exporter, target,
                 service)
        return True


def flush_telemetry(timeout_s: float = 5.0) -> bool:
    """Export what the SDK providers installed by `setup_telemetry` still hold (CLI, demo). False when
    an export failed or timed out."""
    millis = int(timeout_s * 1000)
    ok = True
    if _installed_tracer_provider is not None:
        ok = bool(_installed_tracer_provider.force_flush(millis)) and ok
    if _installed_meter_provider is not None:
        ok = bool(_installed_meter_provider.force_flush(millis)) and ok
    return ok


# ---------------------------------------------------------------- the CLI's trace tree


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

