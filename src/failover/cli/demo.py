"""`failover demo`: the failover story, live, through the real router against the built-in emulated
providers (real sockets, no API keys).

The emulated OpenAI (gpt-4o) answers; it rate-limits with Retry-After: 1 and the router waits the
second it was told; it goes down, retries run out and Anthropic serves, and the breaker opens at the
`fail_max`-th consecutive failure; while it is open OpenAI gets no request at all; it recovers, the
router's own probe (in the background, while callers go on to Anthropic) finds it back after
`reset_timeout`, and traffic returns. Then a tool call cut in the middle of
its arguments is started over on Anthropic (never stitched), and the conversation goes on on OpenAI
with Anthropic's tool-call id; last, OpenAI stalls in the middle of an answer and the answer
continues on Anthropic without the repeated part. Every number the story claims is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from opentelemetry import trace

from failover.cli.printer import WEATHER, Printer, settings_line, tool_call_text
from failover.emulator import Emulator, steps
from failover.router import Router
from failover.types import Result

_TRACER = trace.get_tracer("failover.demo")
PROMPT: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Why do circuit breakers help?"}]
ANSWER = ("A breaker stops sending traffic to a provider that keeps failing, so callers fail over "
          "at once instead of waiting on timeouts, and it probes once before trusting it again.")
OUTAGE_CALLS = 2  # scene 3
SKIPPED_CALLS = 3  # scene 4


def demo_config(openai_url: str, anthropic_url: str, *, reset_timeout: float) -> dict[str, Any]:
    """The demo's settings: config.yaml's, shortened so that the story takes seconds (printed first)."""
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


def main(args: argparse.Namespace) -> int:
    """The `failover demo` command."""
    try:
        run_demo(chunk_delay=args.chunk_delay, reset_timeout=args.reset_timeout, otlp=args.otlp)
    except (ValueError, RuntimeError) as e:  # a bad --otlp endpoint, or the exporter not installed
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


class Scenes:
    """The demo's router and emulators, and one traced call at a time."""

    def __init__(self, p: Printer, router: Router) -> None:
        self.p = p
        self.router = router
        self.scene = ""

    def heading(self, text: str) -> None:
        self.scene = text
        self.p.heading(text)

    def call(self, messages: list[dict[str, Any]] = PROMPT, **params: Any) -> Result | None:
        # One trace per call, rooted in the demo's own span: the router's spans join the caller's trace.
        with _TRACER.start_as_current_span(f"demo {self.scene}"):
            return self.p.call(self.router, messages, **params)


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


def run_demo(out: TextIO | None = None, *, color: bool | None = None, chunk_delay: float = 0.03,
             reset_timeout: float = 3.0, otlp: str | None = None) -> None:
    """`out`: sys.stdout when the demo runs (not when this module was imported). `otlp`: export the
    traces over OTLP/gRPC to this endpoint ("" for the default one)."""
    out = sys.stdout if out is None else out
    p = Printer(out, out.isatty() if color is None else color)
    target = _otlp(otlp) if otlp is not None else None
    try:
        _story(p, chunk_delay=chunk_delay, reset_timeout=reset_timeout)
    finally:
        if target is not None:
            from failover.telemetry.sdk import flush_telemetry

            if flush_telemetry():
                p.line(f"\nTraces exported over OTLP to {target} (service failover-demo). In Jaeger "
                       "(http://localhost:16686): Search, Service failover-demo, Find Traces; one trace per call, "
                       "named after its scene (docs/telemetry.md, \"Seeing it in Jaeger\").")
            else:
                p.line(f"\nCould not export all traces to {target}.")
    p.line("\nNext: `failover try --fault openai=503x3` runs your own config.yaml against emulated providers with "
           "the faults you choose; config.yaml and docs/configuration.md hold every setting; "
           "`failover demo --otlp` shows these calls as traces in Jaeger (docs/telemetry.md).")


def _story(p: Printer, *, chunk_delay: float, reset_timeout: float) -> None:
    with Emulator("openai", answer=ANSWER, chunk_delay=chunk_delay) as oai, \
            Emulator("anthropic", answer=ANSWER, chunk_delay=chunk_delay) as ant, \
            Router.from_dict(demo_config(oai.base_url, ant.base_url, reset_timeout=reset_timeout),
                             source="<demo>") as router:
        p.line(f"failover demo: {router!r}\n(emulated providers on 127.0.0.1; no API keys needed)")
        p.line("Settings, shortened from config.yaml's defaults so that the story takes seconds:")
        for provider in router.config.providers:
            p.line(f"  {settings_line(provider)}")
        router.listeners.append(p.on_event)
        s = Scenes(p, router)
        openai = router.config.providers[0]
        fail_max, max_attempts = openai.breaker.fail_max, openai.retry.max_attempts

        s.heading("1. OpenAI healthy")
        s.call()

        s.heading("2. OpenAI rate-limits with Retry-After: 1 -> the router waits the 1 s it was told, then retries")
        oai.script(steps.status(429, message="Rate limit reached for gpt-4o. Please try again in 1s.",
                                code_field="rate_limit_exceeded", retry_after=1))
        s.call()

        s.heading(f"3. OpenAI goes down (503): {OUTAGE_CALLS} calls. Each retries up to max_attempts={max_attempts}, "
                  f"then Anthropic serves; the breaker opens after fail_max={fail_max} consecutive failures")
        before = len(oai.requests)
        oai.down_for(3600, steps.server_error(503))
        for n in range(1, OUTAGE_CALLS + 1):
            p.note(f"call {n} of {OUTAGE_CALLS}")
            s.call()

        s.heading(f"4. The breaker is open: {SKIPPED_CALLS} calls, OpenAI is skipped without a request")
        for _ in range(SKIPPED_CALLS):
            s.call()
        during = len(oai.requests) - before
        calls = OUTAGE_CALLS + SKIPPED_CALLS
        p.line(f"\nDuring the outage {calls} calls were made and OpenAI received {during} requests. Without the "
               f"breaker each call would have sent it max_attempts={max_attempts}, {calls * max_attempts} requests: "
               f"the breaker kept {calls * max_attempts - during} of them away.")

        s.heading(f"5. OpenAI recovers; after reset_timeout ({reset_timeout:g}s) the router probes it with a tiny "
                  "request of its own (breaker.probe: background) while this call goes to Anthropic")
        oai.reset()
        breaker = router.breaker("openai")
        wait = breaker.probe_in(time.monotonic())
        p.note(f"(waiting {wait:.1f}s for the probe)")
        time.sleep(wait + 0.05)
        s.call()
        give_up = time.monotonic() + 5.0
        while breaker.state != "closed" and time.monotonic() < give_up:  # the probe answers in the background
            time.sleep(0.01)
        p.background()

        s.heading("6. Traffic is back on OpenAI")
        s.call()

        _tool_scene(s, oai)

        s.heading("8. OpenAI stalls mid-answer: after idle (2s) the answer continues on Anthropic, which starts "
                  "over; the repeated part is dropped")
        oai.script(steps.stall(after=12))
        ant.continuation = "naive"  # a model that restarts its answer from the beginning
        result = s.call()
        if result is not None:
            p.whole(result, ANSWER)


def _tool_scene(s: Scenes, oai: Emulator) -> None:
    p = s.p
    s.heading("7. A tool call: OpenAI's stream breaks in the middle of the call's arguments, its retry gets a 503; "
              "Anthropic starts the call over (a tool call is never stitched)")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    oai.script(steps.tool_calls(after=2), steps.server_error(503))
    first = s.call(messages, tools=[WEATHER])
    if first is None or not first.tool_calls:
        return
    call = first.tool_calls[0]
    p.note(f"the caller runs {tool_call_text(call)} and sends the result back; OpenAI serves the next turn "
           "with Anthropic's tool-call id in the history")
    messages += [first.message(), {"role": "tool", "tool_call_id": call.id, "content": "21 °C, sunny"}]
    s.call(messages, tools=[WEATHER])
