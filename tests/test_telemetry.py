"""Spans and metrics (DESIGN §7), through the real OpenTelemetry SDK and the real provider SDKs against
the emulator; and over a real OTLP/gRPC receiver.

OpenTelemetry lets a process set its global tracer and meter providers once: the `otel` fixture does
it once for the session (or joins an SDK provider already installed), and each test starts from an
empty span exporter and a fresh metric delta.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics import Counter as CounterInstrument
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.conftest import FAST_DEFAULTS, MESSAGES, OTHER, provider_entry, run_async, run_sync

from failover import AllProvidersFailed, RequestRejected, Router
from failover.cli.trace import format_trace
from failover.config import TelemetrySettings
from failover.emulator import Emulator, steps
from failover.telemetry.sdk import setup_telemetry
from failover.telemetry.semconv import CONTENT_ATTRIBUTES

KEY = "sk-test-FAKE-7f3a9c1e5b2d4680-KEY"  # distinctive: searched for in everything exported


# ---------------------------------------------------------------- the session's SDK


class Ledger(SpanProcessor):
    """Counts starts and ends of failover's spans: every started span must end, exactly once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, str] = {}
        self.ends: Counter[int] = Counter()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.instrumentation_scope is not None and span.instrumentation_scope.name == "failover":
            with self.lock:
                self.open[span.context.span_id] = span.name

    def on_end(self, span: ReadableSpan) -> None:
        if span.instrumentation_scope is not None and span.instrumentation_scope.name == "failover":
            with self.lock:
                self.open.pop(span.context.span_id, None)
                self.ends[span.context.span_id] += 1


@dataclass
class Otel:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    ledger: Ledger


@pytest.fixture(scope="session")
def otel_session() -> Otel:
    exporter, ledger = InMemorySpanExporter(), Ledger()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    provider.add_span_processor(ledger)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader(preferred_temporality={CounterInstrument: AggregationTemporality.DELTA,
                                                         HistogramInstrument: AggregationTemporality.DELTA})
    assert not isinstance(metrics.get_meter_provider(), MeterProvider), \
        "a meter provider was installed before the telemetry tests: they need their own reader"
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return Otel(exporter, reader, ledger)


@pytest.fixture
def otel(otel_session: Otel, caplog: pytest.LogCaptureFixture) -> Iterator[Otel]:
    otel_session.spans.clear()
    otel_session.reader.get_metrics_data()  # start from a fresh delta
    with otel_session.ledger.lock:
        otel_session.ledger.open.clear()
        otel_session.ledger.ends.clear()
    caplog.set_level(logging.DEBUG)
    yield otel_session
    ledger = otel_session.ledger
    assert not ledger.open, f"spans never ended: {sorted(ledger.open.values())}"
    assert all(n == 1 for n in ledger.ends.values())
    twice = [r for r in caplog.records if "ended span" in r.getMessage()]
    assert not twice, "a span was ended twice"


# ---------------------------------------------------------------- helpers


def router(primary: Emulator, fallback: Emulator | None = None, *, telemetry: dict[str, Any] | None = None,
           key: str = "test-key", **defaults: Any) -> Router:
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in FAST_DEFAULTS.items()}
    for name, value in defaults.items():
        merged[name] = {**merged.get(name, {}), **value} if isinstance(value, dict) else value
    providers = [provider_entry("primary", primary, api_key=key)]
    if fallback is not None:
        providers.append(provider_entry("fallback", fallback, api_key=key))
    mapping: dict[str, Any] = {"providers": providers, "defaults": merged}
    if telemetry is not None:
        mapping["telemetry"] = telemetry
    return Router.from_dict(mapping, source="<test>")


@dataclass
class Call:
    """One `failover chat` span with its attempt spans, in start order."""

    span: ReadableSpan
    attempts: list[ReadableSpan] = field(default_factory=list)

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.span.attributes or {}


def calls(otel: Otel) -> list[Call]:
    spans = otel.spans.get_finished_spans()
    roots = sorted((s for s in spans if s.name == "failover chat"), key=lambda s: s.start_time or 0)
    out = []
    for root in roots:
        assert root.context is not None
        children = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
        out.append(Call(root, sorted(children, key=lambda s: s.start_time or 0)))
    ours = {id(s) for c in out for s in (c.span, *c.attempts)}
    strays = [s.name for s in spans if id(s) not in ours and s.instrumentation_scope is not None
              and s.instrumentation_scope.name == "failover"]
    assert not strays, f"failover spans outside a call: {strays}"
    return out


def one_call(otel: Otel) -> Call:
    found = calls(otel)
    assert len(found) == 1, [c.span.name for c in found]
    return found[0]


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def metric_points(otel: Otel) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """name -> [(attributes, point)] of what was recorded since the last collection."""
    data = otel.reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            if sm.scope.name != "failover":
                continue
            for m in sm.metrics:
                out.setdefault(m.name, []).extend((dict(p.attributes or {}), p) for p in m.data.data_points)
    return out


def check_attempt(span: ReadableSpan, emu: Emulator, *, provider: str, ordinal: int, number: int) -> None:
    a = attrs(span)
    assert span.kind is SpanKind.CLIENT
    assert span.name == f"chat {provider}-model"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == emu.kind
    assert a["gen_ai.request.model"] == f"{provider}-model"
    assert a["gen_ai.request.stream"] is True
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == emu.port
    assert a["failover.provider"] == provider
    assert a["failover.attempt"] == ordinal
    assert a["failover.attempt.provider_attempt"] == number


def check_ok(span: ReadableSpan) -> None:
    a = attrs(span)
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in a
    assert a["failover.outcome"] == "ok"
    assert a["gen_ai.response.model"] == a["gen_ai.request.model"]
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert 0 < a["gen_ai.response.time_to_first_chunk"] < 1


def check_failed(span: ReadableSpan, error_type: str, error_class: str) -> None:
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description
    assert a["error.type"] == error_type
    assert a["failover.error.class"] == error_class
    assert a["failover.outcome"] == "error"


# ---------------------------------------------------------------- span trees


def test_clean_call(otel, emu, kind, call):
    primary = emu[kind]
    # the installed Anthropic SDK's messages.create takes no temperature/top_p: sampling only for OpenAI
    sampling = {"temperature": 0.2, "top_p": 0.9} if kind == "openai" else {}
    with router(primary, emu[OTHER[kind]]) as r:
        out = call(r, max_tokens=64, **sampling)
    assert out.error is None and out.text == primary.answer
    c = one_call(otel)
    assert c.span.kind is SpanKind.INTERNAL and c.span.parent is None
    assert c.span.status.status_code is StatusCode.UNSET
    assert c.attrs["failover.attempts"] == 1
    assert c.attrs["failover.provider"] == "primary"
    assert c.attrs["failover.resumed"] is False
    assert c.attrs["failover.providers"] == ("primary", "fallback")
    assert "failover.providers.skipped" not in c.attrs and "error.type" not in c.attrs
    [attempt] = c.attempts
    check_attempt(attempt, primary, provider="primary", ordinal=1, number=1)
    check_ok(attempt)
    a = attrs(attempt)
    assert a["gen_ai.request.max_tokens"] == 64
    if sampling:
        assert a["gen_ai.request.temperature"] == pytest.approx(0.2)
        assert a["gen_ai.request.top_p"] == pytest.approx(0.9)
    else:
        assert "gen_ai.request.temperature" not in a and "gen_ai.request.top_p" not in a
    assert a["gen_ai.usage.output_tokens"] == out.result.usage.output_tokens
    assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(out.result.attempts[0].first_chunk_s)
    assert a["failover.backoff_s"] == 0.0 and a["failover.continuation"] is False
    assert a["failover.breaker.state"] == "closed"
    assert "failover.previous_failure" not in a
    # the attempt lies within the call
    assert c.span.start_time <= attempt.start_time <= attempt.end_time <= c.span.end_time

    points = metric_points(otel)
    base = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": kind, "gen_ai.request.model": "primary-model",
            "server.address": "127.0.0.1", "server.port": primary.port}
    [(duration_attrs, duration)] = points["gen_ai.client.operation.duration"]
    assert duration_attrs == base and duration.count == 1 and 0 < duration.sum < 5
    [(ttfc_attrs, ttfc)] = points["gen_ai.client.operation.time_to_first_chunk"]
    assert ttfc_attrs == base and ttfc.sum == pytest.approx(a["gen_ai.response.time_to_first_chunk"])
    tokens = {p[0]["gen_ai.token.type"]: p[1].sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": out.result.usage.input_tokens, "output": out.result.usage.output_tokens}
    [(counted, n)] = points["failover.attempts"]
    assert counted == {"failover.provider": "primary", "failover.outcome": "ok"} and n.value == 1


def test_retry_after_rate_limit(otel, emu, kind, call):
    primary = emu[kind]
    primary.script(steps.rate_limit(retry_after=0.05))
    with router(primary, emu[OTHER[kind]]) as r:
        out = call(r)
    assert out.result.provider == "primary"
    c = one_call(otel)
    assert c.attrs["failover.attempts"] == 2 and c.span.status.status_code is StatusCode.UNSET
    first, second = c.attempts
    check_attempt(first, primary, provider="primary", ordinal=1, number=1)
    check_failed(first, "rate_limit", "transient")
    assert attrs(first)["http.response.status_code"] == 429
    assert attrs(first)["failover.retry_after"] == pytest.approx(0.05)
    check_attempt(second, primary, provider="primary", ordinal=2, number=2)
    check_ok(second)
    assert attrs(second)["failover.previous_failure"] == "rate_limit"
    assert attrs(second)["failover.backoff_s"] >= 0.05
    assert attrs(second)["failover.backoff_s"] == pytest.approx(out.result.attempts[1].backoff_s)

    points = metric_points(otel)
    counted = sorted((tuple(sorted(a.items())), p.value) for a, p in points["failover.attempts"])
    assert counted == sorted([
        ((("error.type", "rate_limit"), ("failover.outcome", "error"), ("failover.provider", "primary")), 1),
        ((("failover.outcome", "ok"), ("failover.provider", "primary")), 1)])
    durations = {a.get("error.type"): p.count for a, p in points["gen_ai.client.operation.duration"]}
    assert durations == {"rate_limit": 1, None: 1}


def test_retry_refused_by_the_budget_is_on_the_span(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.server_error(500), steps.server_error(500))
    budget = {"ratio": 0.0, "min_retries": 0, "window": 10.0}
    with router(primary, emu[OTHER[kind]], retry={"budget": budget}) as r:
        out = run_sync(r)
    assert out.result.provider == "fallback"
    assert out.attempts[0].retry_refused == "budget"
    first = one_call(otel).attempts[0]
    assert attrs(first)["failover.retry.refused"] == "budget"
    assert len(primary.requests) == 1


def test_failover_to_the_next_provider(otel, emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.quota())
    with router(primary, fallback) as r:
        out = call(r)
    assert out.result.provider == "fallback"
    c = one_call(otel)
    assert c.attrs["failover.provider"] == "fallback" and c.attrs["failover.attempts"] == 2
    assert c.span.status.status_code is StatusCode.UNSET
    first, second = c.attempts
    check_attempt(first, primary, provider="primary", ordinal=1, number=1)
    check_failed(first, "quota", "unusable")
    check_attempt(second, fallback, provider="fallback", ordinal=2, number=1)
    check_ok(second)
    assert attrs(second)["failover.previous_failure"] == "quota"
    assert attrs(second)["gen_ai.provider.name"] == fallback.kind


def test_breaker_skip_and_probe(otel, emu, kind, caplog):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.quota())
    with router(primary, fallback, breaker={"fail_max": 1, "reset_timeout": 0.3, "probe": "request"}) as r:
        run_sync(r)  # the quota error opens primary's breaker
        opened = run_sync(r)  # primary skipped without a request
        assert opened.summary()[0] == ("primary", "skipped", "skipped")
        time.sleep(0.35)
        probe = run_sync(r)  # one probe goes through and closes it
        assert probe.result.provider == "primary"
    first, second, third = calls(otel)

    [cause, _] = first.attempts
    changes = [(e.name, dict(e.attributes or {})) for e in cause.events]
    assert changes == [("failover.breaker.state_change", {"failover.provider": "primary",
                                                          "failover.breaker.from": "closed",
                                                          "failover.breaker.to": "open"})]
    assert attrs(cause)["failover.breaker.state"] == "open"

    assert second.attrs["failover.providers.skipped"] == ("primary",)
    assert second.attrs["failover.attempts"] == 1
    [skip] = [e for e in second.span.events if e.name == "failover.provider.skipped"]
    assert skip.attributes["failover.provider"] == "primary"
    assert skip.attributes["failover.skip.code"] == "breaker_open"
    assert skip.attributes["failover.skip.reason"].startswith("breaker open, probe in")
    [served] = second.attempts
    assert attrs(served)["failover.provider"] == "fallback" and attrs(served)["failover.attempt"] == 1

    [probe_span] = third.attempts
    assert attrs(probe_span)["failover.breaker.probe"] is True
    transitions = [(e.attributes["failover.breaker.from"], e.attributes["failover.breaker.to"])
                   for e in probe_span.events if e.name == "failover.breaker.state_change"]
    assert transitions == [("open", "half-open"), ("half-open", "closed")]
    assert attrs(probe_span)["failover.breaker.state"] == "closed"
    # no breaker event landed on a span of another provider or outside its call
    for c in (first, second, third):
        for s in (c.span, *c.attempts):
            for e in s.events:
                if e.name == "failover.breaker.state_change":
                    assert attrs(s).get("failover.provider") == "primary"
    # and each change is a log record too
    logged = [r.getMessage() for r in caplog.records if r.name == "failover.breaker"]
    assert any(line.startswith("breaker primary: closed -> open") for line in logged)
    assert any(line.startswith("breaker primary: half-open -> closed") for line in logged)

    counted = {(a["failover.outcome"], a.get("error.type")): p.value
               for a, p in metric_points(otel)["failover.attempts"] if a["failover.provider"] == "primary"}
    assert counted == {("error", "quota"): 1, ("skipped", "breaker_open"): 1, ("ok", None): 1}


def test_breaker_events_stay_with_their_call_under_concurrency(otel, emu, kind):
    """Threads share the breaker; each state change lands on the attempt span whose verdict made it."""
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.server_error(503))
    with router(primary, fallback, breaker={"fail_max": 3, "reset_timeout": 30}, retry={"max_attempts": 1}) as r:
        barrier = threading.Barrier(6)

        def caller() -> None:
            barrier.wait()
            run_sync(r)

        threads = [threading.Thread(target=caller) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    events = [(s, e) for c in calls(otel) for s in (c.span, *c.attempts) for e in s.events
              if e.name == "failover.breaker.state_change"]
    assert len(events) == 1  # closed -> open, exactly once
    span, _ = events[0]
    assert attrs(span)["failover.provider"] == "primary" and attrs(span)["error.type"] == "unavailable"
    assert attrs(span)["failover.breaker.state"] == "open"


def test_resumed_stream(otel, emu, kind, call):
    primary = emu[kind]
    primary.script(steps.cut(after=3))
    with router(primary, emu[OTHER[kind]], midstream="resume") as r:
        out = call(r)
    assert out.text == primary.answer and out.result.resumed
    c = one_call(otel)
    assert c.attrs["failover.resumed"] is True and c.attrs["failover.attempts"] == 2
    assert c.span.status.status_code is StatusCode.UNSET
    cut, cont = c.attempts
    check_failed(cut, "cut", "transient")
    assert attrs(cut)["failover.continuation"] is False
    assert attrs(cut)["gen_ai.response.time_to_first_chunk"] > 0  # text was delivered before the cut
    check_ok(cont)
    assert attrs(cont)["failover.continuation"] is True
    assert attrs(cont)["failover.previous_failure"] == "cut"
    assert attrs(cont)["failover.attempt.provider_attempt"] == 2


def test_resumed_then_interrupted(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.cut(after=3), steps.cut(after=3))
    with router(primary, midstream="resume", retry={"max_attempts": 2}) as r:
        out = run_sync(r)
    assert out.error is not None and len(out.texts) == 6
    c = one_call(otel)
    assert c.attrs["error.type"] == "StreamInterrupted" and c.span.status.status_code is StatusCode.ERROR
    assert c.attrs["failover.resumed"] is True  # the continuation delivered text before it broke too
    assert [attrs(a)["failover.continuation"] for a in c.attempts] == [False, True]


def test_rejected_request(otel, emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.content_filter())
    with router(primary, fallback) as r:
        out = call(r)
    assert isinstance(out.error, RequestRejected)
    c = one_call(otel)
    assert c.span.status.status_code is StatusCode.ERROR
    assert c.attrs["error.type"] == "RequestRejected"
    assert c.span.status.description.startswith("primary rejected the request")
    [attempt] = c.attempts  # no other provider was tried
    check_failed(attempt, "content_filter", "rejected")
    assert len(fallback.requests) == 0


def test_all_providers_failing(otel, emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.quota())
    fallback.script(steps.auth())
    with router(primary, fallback) as r:
        out = call(r)
    assert isinstance(out.error, AllProvidersFailed)
    c = one_call(otel)
    assert c.span.status.status_code is StatusCode.ERROR
    assert c.attrs["error.type"] == "AllProvidersFailed"
    assert c.span.status.description == str(out.error).splitlines()[0]
    assert "failover.provider" not in c.attrs and c.attrs["failover.attempts"] == 2
    first, second = c.attempts
    check_failed(first, "quota", "unusable")
    check_failed(second, "auth", "unusable")
    assert attrs(second)["failover.previous_failure"] == "quota"
    assert attrs(second)["http.response.status_code"] == 401


def test_caller_span_is_the_parent(otel, emu, kind, call):
    tracer = trace.get_tracer("the-app")
    with router(emu[kind]) as r, tracer.start_as_current_span("handle request") as app:
        call(r)
    c = one_call(otel)
    app_ctx = app.get_span_context()
    assert c.span.parent is not None and c.span.parent.span_id == app_ctx.span_id
    assert c.span.context.trace_id == app_ctx.trace_id
    assert all(a.context.trace_id == app_ctx.trace_id for a in c.attempts)
    # the app's span is still the current one afterwards: nothing of ours was left attached
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_concurrent_async_calls_keep_their_parents(otel, emu, kind):
    tracer = trace.get_tracer("the-app")
    emu[kind].script(steps.ok(chunk_delay=0.005), steps.ok(chunk_delay=0.005), steps.ok(chunk_delay=0.005))

    async def one(r: Router, i: int) -> int:
        with tracer.start_as_current_span(f"request {i}") as span:
            await run_async(r)
            return span.get_span_context().span_id

    async def main() -> list[int]:
        async with router(emu[kind]) as r:
            return list(await asyncio.gather(*(one(r, i) for i in range(3))))

    parents = asyncio.run(main())
    found = calls(otel)
    assert sorted(c.span.parent.span_id for c in found) == sorted(parents)
    for c in found:
        [attempt] = c.attempts
        assert attempt.parent.span_id == c.span.context.span_id


def test_no_traceparent_is_sent_to_providers(otel, emu, kind):
    """Neither SDK injects our trace context into requests to the provider (anthropic: open_telemetry=False),
    and the Anthropic SDK makes no span of its own."""
    tracer = trace.get_tracer("the-app")
    with router(emu[kind]) as r, tracer.start_as_current_span("handle request"):
        run_sync(r)
    headers = {k.lower() for k in emu[kind].requests[-1].headers}
    assert "traceparent" not in headers and "tracestate" not in headers
    names = {s.instrumentation_scope.name for s in otel.spans.get_finished_spans() if s.instrumentation_scope}
    assert names == {"failover", "the-app"}


# ---------------------------------------------------------------- leaving early


def test_abandoned_stream_ends_spans_once(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.ok(chunk_delay=0.02))
    with router(primary) as r:
        with r.stream(MESSAGES) as stream:
            for _ in stream:
                break
        c = one_call(otel)  # both spans ended when the `with` closed the stream
    assert c.attrs["failover.cancelled"] is True
    assert c.span.status.status_code is StatusCode.UNSET and "error.type" not in c.attrs
    [attempt] = c.attempts
    assert attrs(attempt)["failover.cancelled"] is True
    assert attrs(attempt)["failover.outcome"] == "cancelled"
    assert attempt.status.status_code is StatusCode.UNSET and "error.type" not in attrs(attempt)
    [(counted, n)] = metric_points(otel)["failover.attempts"]
    assert counted == {"failover.provider": "primary", "failover.outcome": "cancelled"} and n.value == 1


def test_bare_for_break_ends_spans(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.ok(chunk_delay=0.02))
    with router(primary) as r:
        for _ in r.stream(MESSAGES):
            break
        c = one_call(otel)  # closed at once by reference counting, not left to the cyclic GC
    assert c.attrs["failover.cancelled"] is True


def test_async_abandon_and_cancel_end_spans(otel, emu, kind):
    primary = emu[kind]

    async def main() -> None:
        async with router(primary) as r:
            primary.script(steps.ok(chunk_delay=0.02))
            async with r.astream(MESSAGES) as stream:
                async for _ in stream:
                    break
            primary.script(steps.hang())
            task = asyncio.create_task(run_async(r))
            await asyncio.sleep(0.2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())
    found = calls(otel)
    assert len(found) == 2
    for c in found:
        assert c.attrs["failover.cancelled"] is True
        assert c.span.status.status_code is StatusCode.UNSET
        [attempt] = c.attempts
        assert attrs(attempt)["failover.cancelled"] is True
        assert attempt.status.status_code is StatusCode.UNSET
    assert "gen_ai.response.time_to_first_chunk" in attrs(found[0].attempts[0])
    assert "gen_ai.response.time_to_first_chunk" not in attrs(found[1].attempts[0])


# ---------------------------------------------------------------- secrets and content


def everything_exported(otel: Otel) -> str:
    """Every name, attribute, event, status and resource of the finished spans, as one text."""
    parts: list[str] = []
    for s in otel.spans.get_finished_spans():
        parts += [s.name, repr(dict(s.attributes or {})), repr(dict(s.resource.attributes)),
                  str(s.status.description)]
        parts += [f"{e.name} {dict(e.attributes or {})!r}" for e in s.events]
    data = otel.reader.get_metrics_data()
    if data is not None:
        parts.append(data.to_json())
    return "\n".join(parts)


@pytest.mark.parametrize("capture", [False, True])
def test_api_key_never_exported_nor_logged(otel, emu, kind, caplog, capture):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    # A provider (or a proxy in front of it) that quotes the key back in its error message.
    primary.script(steps.rate_limit(retry_after=0.01),
                   steps.status(401, message=f"Incorrect API key provided: {KEY}."))
    fallback.script(steps.status(401, message=f"invalid x-api-key {KEY}"))
    with router(primary, fallback, key=KEY, telemetry={"capture_content": capture},
                breaker={"fail_max": 2}) as r:
        out = run_sync(r)
        assert isinstance(out.error, AllProvidersFailed)
        run_sync(r)  # primary's breaker is open: skipped
    text = everything_exported(otel)
    assert "Incorrect API key provided" in text  # the message itself made it, the key did not
    assert KEY not in text
    assert KEY[8:20] not in text
    assert len(calls(otel)) == 2
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records
                       if r.name.startswith(("failover", "opentelemetry")))
    assert KEY not in logged


def test_no_content_unless_capture_content(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.cut(after=3))
    with router(primary, midstream="resume") as r:
        out = run_sync(r, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Zanzibar?"}])
    assert out.result.resumed
    for s in otel.spans.get_finished_spans():
        a = attrs(s)
        assert not set(CONTENT_ATTRIBUTES) & set(a)
        values = repr(list(a.values())) + repr([dict(e.attributes or {}) for e in s.events])
        assert "Zanzibar" not in values and "Be brief" not in values
        assert primary.answer[:30] not in values


def test_capture_content(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.cut(after=3))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Zanzibar?"}]
    with router(primary, midstream="resume", telemetry={"capture_content": True}) as r:
        out = run_sync(r, messages)
    c = one_call(otel)
    assert json.loads(c.attrs["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Zanzibar?"}]}]
    assert json.loads(c.attrs["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": out.text}], "finish_reason": "stop"}]
    first, cont = c.attempts
    sent = json.loads(attrs(cont)["gen_ai.input.messages"])
    if kind == "anthropic":  # the system prompt is Anthropic's top-level parameter
        assert json.loads(attrs(first)["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
        assert sent[0] == {"role": "user", "parts": [{"type": "text", "content": "Zanzibar?"}]}
    else:
        assert "gen_ai.system_instructions" not in attrs(first)
        assert sent[0]["role"] == "system"
    # the continuation request carries the delivered text as an assistant message
    assert any(m["role"] == "assistant" for m in sent)


def test_capture_content_keeps_partial_text_of_an_interrupted_answer(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.cut(after=3))
    with router(primary, midstream="raise", telemetry={"capture_content": True}) as r:
        out = run_sync(r)
    c = one_call(otel)
    assert c.attrs["error.type"] == "StreamInterrupted"
    [message] = json.loads(c.attrs["gen_ai.output.messages"])
    assert message["parts"][0]["content"] == out.text and message["finish_reason"] == "error"


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_tool_calls_and_request_parameters_on_the_attempt_span(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.tool_calls([("get_weather", {"city": "Zanzibar"})]))
    with router(primary) as r:
        run_sync(r, tools=[WEATHER_TOOL], seed=7)
    c = one_call(otel)
    [attempt] = c.attempts
    a = attrs(attempt)
    assert a["failover.tool_calls"] == 1 and a["failover.request.tools"] == 1
    assert a["gen_ai.output.type"] == "text" and a["gen_ai.response.finish_reasons"] == ("tool_calls",)
    if kind == "openai":
        assert a["gen_ai.request.seed"] == 7
    # names and arguments are content: not exported unless capture_content
    assert "Zanzibar" not in everything_exported(otel) and "get_weather" not in everything_exported(otel)


def test_captured_content_has_tool_calls_and_tool_definitions(otel, emu, kind):
    primary = emu[kind]
    primary.script(steps.tool_calls([("get_weather", {"city": "Zanzibar"})]))
    with router(primary, telemetry={"capture_content": True}) as r:
        out = run_sync(r, tools=[WEATHER_TOOL], response_format={"type": "json_object"})
    c = one_call(otel)
    [call] = out.result.tool_calls
    [message] = json.loads(c.attrs["gen_ai.output.messages"])
    assert message["parts"] == [{"type": "tool_call", "id": call.id, "name": "get_weather",
                                 "arguments": call.arguments}]
    a = attrs(c.attempts[0])
    assert json.loads(a["gen_ai.tool.definitions"])[0]["name"] == "get_weather"
    assert a["gen_ai.output.type"] == "json"


# ---------------------------------------------------------------- installing the SDK


def test_setup_leaves_an_installed_provider(otel, emu, caplog):
    installed = trace.get_tracer_provider()
    assert setup_telemetry(TelemetrySettings(exporter="console")) is False
    assert trace.get_tracer_provider() is installed
    assert any("already installed" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    # a config asking for an exporter does not take over either: spans still reach the app's exporters
    with router(emu["openai"], telemetry={"exporter": "otlp", "endpoint": "http://127.0.0.1:9"}) as r:
        run_sync(r)
    assert trace.get_tracer_provider() is installed
    assert len(calls(otel)) == 1


def test_format_trace(otel, emu):
    primary = emu["openai"]
    primary.script(steps.rate_limit(retry_after=0.01))
    with router(primary, emu["anthropic"], breaker={"fail_max": 1}) as r:
        run_sync(r)  # the rate limit opens the breaker: no retry there, it fails over at once
    lines = format_trace(otel.spans.get_finished_spans()).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("failover chat  trace ") and "provider=fallback" in lines[0]
    assert "attempts=2" in lines[0]
    assert lines[1].startswith("├─ chat primary-model  primary#1") and "ERROR" in lines[1]
    assert "error.type=rate_limit" in lines[1] and "breaker closed->open" in lines[1] and "breaker=open" in lines[1]
    assert lines[2].startswith("└─ chat fallback-model  fallback#1") and "UNSET" in lines[2]
    assert "after=rate_limit" in lines[2]


# ---------------------------------------------------------------- a real OTLP receiver


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """The OpenTelemetry Collector's OTLP/gRPC trace and metrics services, keeping what arrives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.traces.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()
            self.metrics.append(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) of everything received."""
        with self.lock:
            return [(values(rs.resource.attributes), span) for req in self.traces for rs in req.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]

    def metric_names(self) -> set[str]:
        with self.lock:
            return {m.name for req in self.metrics for rm in req.resource_metrics for sm in rm.scope_metrics
                    for m in sm.metrics}


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def Export(self, request: Any, context: Any) -> Any:
        return self.collector.Export(request, context)


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    coll = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(coll, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(coll), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield coll, f"http://127.0.0.1:{port}"
    server.stop(grace=None).wait(5)


def value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(value(x) for x in v.array_value.values)
    return getattr(v, kind) if kind else None


def values(kvs: Sequence[Any]) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


def otlp_tree(spans: list[Any]) -> list[tuple[str, int, list[tuple[str, int, int, dict[str, Any]]]]]:
    """[(call name, status code, [(attempt name, kind, status code, attributes)])] of decoded OTLP spans."""
    out = []
    for root in (s for s in spans if s.name == "failover chat"):
        children = sorted((s for s in spans if s.parent_span_id == root.span_id), key=lambda s: s.start_time_unix_nano)
        assert all(c.trace_id == root.trace_id for c in children)
        out.append((root.name, root.status.code,
                    [(c.name, c.kind, c.status.code, values(c.attributes)) for c in children]))
    return out


def test_otlp_export_over_grpc(otel, emu, kind, collector):
    coll, endpoint = collector
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.rate_limit(retry_after=0.01), steps.quota())
    with router(primary, fallback) as r:
        run_sync(r)
    finished = otel.spans.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=5)
    try:
        assert exporter.export(finished) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    [(name, status, attempts)] = otlp_tree([s for _, s in coll.spans()])
    assert name == "failover chat" and status == 0  # STATUS_CODE_UNSET
    client = 3  # SPAN_KIND_CLIENT
    assert [(n, k, st) for n, k, st, _ in attempts] == [
        ("chat primary-model", client, 2), ("chat primary-model", client, 2), ("chat fallback-model", client, 0)]
    assert [a["error.type"] for *_, a in attempts[:2]] == ["rate_limit", "quota"]
    served = attempts[2][3]
    assert served["gen_ai.provider.name"] == fallback.kind and served["failover.previous_failure"] == "quota"
    assert served["gen_ai.response.finish_reasons"] == ("stop",) and served["gen_ai.usage.output_tokens"] > 0
    assert served["failover.attempt"] == 3 and served["server.port"] == fallback.port


# ---------------------------------------------------------------- the command line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(args: list[str], env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "failover.cli", *args], capture_output=True, text=True,
                          env=clean, timeout=timeout, check=False)


def write_config(path: Any, primary: Emulator, fallback: Emulator, telemetry: str = "") -> str:
    path.write_text(f"""
providers:
  - {{name: primary, type: {primary.kind}, model: primary-model, api_key: {KEY}, base_url: "{primary.base_url}"}}
  - {{name: fallback, type: {fallback.kind}, model: fallback-model, api_key: {KEY}, base_url: "{fallback.base_url}"}}
defaults:
  retry: {{max_attempts: 2, initial_backoff: 0.01, max_backoff: 0.02}}
  timeouts: {{connect: 1.0, first_token: 1.0, idle: 1.0, total: 10.0}}
{telemetry}
""")
    return str(path)


def test_cli_stream_trace(emu, tmp_path):
    primary, fallback = emu["openai"], emu["anthropic"]
    primary.script(steps.rate_limit(retry_after=0.01), steps.server_error(503))
    config = write_config(tmp_path / "config.yaml", primary, fallback)
    done = run_cli(["stream", "Hello", "--config", config, "--trace"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == fallback.answer
    tree = done.stderr[done.stderr.index("failover chat"):].splitlines()
    assert "provider=fallback" in tree[0] and "attempts=3" in tree[0]
    assert tree[1].startswith("├─ chat primary-model  primary#1") and "error.type=rate_limit" in tree[1]
    assert tree[2].startswith("├─ chat primary-model  primary#2") and "error.type=unavailable" in tree[2]
    assert tree[3].startswith("└─ chat fallback-model  fallback#1") and "UNSET" in tree[3]
    assert KEY not in done.stderr + done.stdout


def test_cli_exports_over_otlp_with_env_overrides(emu, tmp_path, collector):
    coll, endpoint = collector
    primary, fallback = emu["anthropic"], emu["openai"]
    primary.script(steps.quota())
    dead = f"http://127.0.0.1:{free_port()}"  # the YAML's endpoint: the environment must win over it
    config = write_config(tmp_path / "config.yaml", primary, fallback,
                          f"telemetry: {{exporter: otlp, endpoint: \"{dead}\", service_name: from-yaml}}")
    done = run_cli(["stream", "Hello", "--config", config],
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "from-env"})
    assert done.returncode == 0, done.stderr
    received = coll.spans()
    assert {res["service.name"] for res, _ in received} == {"from-env"}
    [(_, status, attempts)] = otlp_tree([s for _, s in received])
    assert status == 0  # the call succeeded on the fallback: UNSET
    assert [(n, st) for n, _, st, _ in attempts] == [("chat primary-model", 2), ("chat fallback-model", 0)]
    assert attempts[0][3]["error.type"] == "quota" and attempts[0][3]["gen_ai.provider.name"] == "anthropic"
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage", "failover.attempts",
            "gen_ai.client.operation.time_to_first_chunk"} <= coll.metric_names()


def test_demo_exports_over_otlp(collector):
    coll, endpoint = collector
    done = run_cli(["demo", "--otlp", endpoint, "--chunk-delay", "0", "--reset-timeout", "0.5"])
    assert done.returncode == 0, done.stderr
    assert f"Traces exported over OTLP to {endpoint}" in done.stdout
    received = [s for _, s in coll.spans()]
    assert {res["service.name"] for res, _ in coll.spans()} == {"failover-demo"}
    roots = [s for s in received if s.name.startswith("demo ")]
    chats = [s for s in received if s.name == "failover chat"]
    calls = done.stdout.count("served by ")  # one call per "served by" line the demo printed
    assert calls >= 7 and len(roots) == len(chats) == calls
    assert any(values(c.attributes).get("failover.resumed") for c in chats)  # the mid-answer stall
    assert {c.parent_span_id for c in chats} == {r.span_id for r in roots}  # each call in its scene's trace
    skipped = [values(e.attributes) for c in chats for e in c.events if e.name == "failover.provider.skipped"]
    assert skipped and skipped[0]["failover.provider"] == "openai"


def test_demo_otlp_without_a_receiver_fails_fast(capsys):
    from failover.cli import main

    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["demo", "--otlp", dead]) == 2
    assert f"no OTLP receiver at {dead}" in capsys.readouterr().err
    import failover.telemetry.sdk

    assert failover.telemetry.sdk._installed_tracer_provider is None  # nothing installed on the way out
