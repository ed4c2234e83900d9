"""Installing the OpenTelemetry SDK, for the CLI and a config whose `telemetry.exporter` is `console`
or `otlp`. The library's own instrumentation (telemetry/observer.py) uses only the API: importing
failover never imports the SDK.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

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
