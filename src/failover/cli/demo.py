"""`failover demo`: a live failover through the real router against the built-in emulated providers.

The story, told by the real router over real sockets (no API keys): the emulated OpenAI (gpt-4o)
answers; it rate-limits with Retry-After and the router waits as told; it goes down, retries run
out and Anthropic serves; the breaker trips and OpenAI is skipped without a request; OpenAI
recovers, one probe goes through after reset_timeout, and traffic returns to it. Last, OpenAI stalls
in the middle of an answer: after `idle` the answer continues on Anthropic, which starts its answer
over, and the repeated part is dropped, so the caller gets exactly one whole answer.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from opentelemetry import trace

from failover.emulator import Emulator, steps
from failover.errors import Attempt, FailoverError
from failover.events import BreakerChanged, Event
from failover.router import Router

_TRACER = trace.get_tracer("failover.demo")
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why do circuit breakers help?"}]
ANSWER = ("A breaker stops sending traffic to a provider that keeps failing, so callers fail over "
          "at once instead of waiting on timeouts, and it probes once before trusting it again.")


def demo_config(openai_url: str, anthropic_url: str, *, reset_timeout: float) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "openai", "type": "openai", "model": "gpt-4o", "api_key": "demo-key", "base_url": openai_url},
            {"name": "anthropic", "type": "anthropic", "model": "claude-sonnet-4-5", "api_key": "demo-key",
             "base_url": anthropic_url, "max_tokens": 1024},
        ],
        "defaults": {
            "retry": {"max_attempts": 2, "initial_backoff": 0.2, "max_backoff": 1.0, "max_retry_after": 3.0},
            "breaker": {"fail_max": 3, "reset_timeout": reset_timeout},
            "timeouts": {"connect": 2.0, "first_token": 2.0, "idle": 2.0, "total": 20.0},
        },
    }


class _Printer:
    def __init__(self, out: TextIO, color: bool) -> None:
        self.out = out
        self.color = color
        self.midline = False  # streamed text is on the current line

    def line(self, text: str) -> None:
        if self.midline:
            self.out.write("\n")
            self.midline = False
        self.out.write(text + "\n")
        self.scene = ""

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def heading(self, text: str) -> None:
        self.scene = text
        self.line("\n" + self.paint(f"== {text}", "1"))

    def attempt(self, a: Attempt) -> None:
        code = {"ok": "32", "error": "31", "skipped": "33"}[a.outcome]
        self.line("   " + self.paint(a.line(), code))

    def text(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self.midline = True


def _call(router: Router, p: _Printer) -> None:
    # One trace per call, rooted in the demo's own span: the router's spans join the caller's trace.
    with _TRACER.start_as_current_span(f"demo {p.scene}"):
        _stream(router, p)


def _stream(router: Router, p: _Printer) -> None:
    shown = 0
    current = ""
    t0 = time.monotonic()
    try:
        with router.stream(PROMPT) as stream:
            for chunk in stream:
                while shown < len(stream.attempts):
                    p.attempt(stream.attempts[shown])
                    shown += 1
                if chunk.provider != current or not p.midline:
                    current = chunk.provider
                    p.text(f"   [{chunk.provider}] ")
                p.text(chunk.text)
            result = stream.result
            for a in result.attempts[shown:]:
                p.attempt(a)
            p.line(p.paint(f"   served by {result.provider} in {time.monotonic() - t0:.2f}s", "2"))
            if result.resumed:
                whole = "yes" if result.text == ANSWER else "NO"
                p.line(p.paint(f"   resumed: one answer from {len({c.provider for c in result.attempts})} "
                               f"providers; exactly the whole answer, nothing repeated or lost: {whole}", "2"))
    except FailoverError as e:
        for a in e.attempts[shown:]:
            p.attempt(a)
        p.line(p.paint(f"   {type(e).__name__}: {str(e).splitlines()[0]}", "31"))


def _otlp(endpoint: str) -> str:
    """Install the SDK with the OTLP exporter; "" means the default endpoint (env, else localhost:4317).
    Fails at once when nothing listens there (the exporter would retry for many seconds instead)."""
    import os
    import socket
    from urllib.parse import urlsplit

    from failover.config import TelemetrySettings
    from failover.telemetry.sdk import setup_telemetry

    settings = TelemetrySettings(exporter="otlp", service_name="failover-demo")
    if endpoint:
        settings = TelemetrySettings(exporter="otlp", service_name="failover-demo", endpoint=endpoint)
    target = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or settings.endpoint
    parts = urlsplit(target if "://" in target else f"http://{target}")
    try:
        socket.create_connection((parts.hostname or "localhost", parts.port or 4317), timeout=2).close()
    except OSError as e:
        raise RuntimeError(f"no OTLP receiver at {target} ({e.strerror or e}); start Jaeger with\n"
                           "  docker run --rm -p 16686:16686 -p 4317:4317 jaegertracing/jaeger:latest") from None
    setup_telemetry(settings, endpoint=endpoint or None)
    return target


def run_demo(out: TextIO = sys.stdout, *, color: bool | None = None, chunk_delay: float = 0.03,
             reset_timeout: float = 3.0, otlp: str | None = None) -> None:
    """`otlp`: export the traces over OTLP/gRPC to this endpoint ("" for the default one)."""
    p = _Printer(out, out.isatty() if color is None else color)
    target = _otlp(otlp) if otlp is not None else None
    try:
        _story(p, chunk_delay=chunk_delay, reset_timeout=reset_timeout)
    finally:
        if target is not None:
            from failover.telemetry.sdk import flush_telemetry

            if flush_telemetry():
                p.out.write(f"\nTraces exported over OTLP to {target} (service failover-demo); in Jaeger: "
                            "http://localhost:16686\n")
            else:
                p.out.write(f"\nCould not export all traces to {target}.\n")


def _story(p: _Printer, *, chunk_delay: float, reset_timeout: float) -> None:
    with Emulator("openai", answer=ANSWER, chunk_delay=chunk_delay) as oai, \
            Emulator("anthropic", answer=ANSWER, chunk_delay=chunk_delay) as ant, \
            Router.from_dict(demo_config(oai.base_url, ant.base_url, reset_timeout=reset_timeout),
                             source="<demo>") as router:
        p.out.write(f"failover demo: {router!r}\n(emulated providers on 127.0.0.1; no API keys needed)\n")
        def breaker_changes(event: Event) -> None:
            if isinstance(event, BreakerChanged):
                c = event.change
                p.line(p.paint(f"   breaker {c.provider}: {c.old} -> {c.new}", "35"))

        router.listeners.append(breaker_changes)

        p.heading("1. OpenAI healthy")
        _call(router, p)

        p.heading("2. OpenAI rate-limits with Retry-After: 1s -> the router waits as told, then retries")
        oai.script(steps.rate_limit(retry_after=1))
        _call(router, p)

        p.heading("3. OpenAI goes down (503) -> retries run out, Anthropic serves")
        oai.down_for(3600, steps.server_error(503))
        _call(router, p)
        _call(router, p)

        p.heading("4. The breaker is open: OpenAI is skipped without a request")
        _call(router, p)

        p.heading(f"5. OpenAI recovers; after reset_timeout ({reset_timeout:g}s) exactly one probe goes through")
        outage_hits = len(oai.requests)
        oai.reset()
        wait = router.breaker("openai").probe_in(time.monotonic())
        p.line(p.paint(f"   (waiting {wait:.1f}s for the probe)", "2"))
        time.sleep(wait + 0.05)
        _call(router, p)

        p.heading("6. Traffic is back on OpenAI")
        _call(router, p)
        p.out.write(f"\nOpenAI received {outage_hits + len(oai.requests)} requests in scenes 1-6, "
                    f"{outage_hits} of them before it recovered; the breaker kept the rest away.\n")

        p.heading("7. OpenAI stalls mid-answer: the answer continues on Anthropic, which starts over; "
                  "the repeat is dropped")
        oai.script(steps.stall(after=12))
        ant.continuation = "naive"  # a model that restarts its answer from the beginning
        _call(router, p)
