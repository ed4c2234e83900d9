"""The `failover` command: demo, check, stream, status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from failover.errors import ConfigError, FailoverError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from failover.config import TelemetrySettings


def _check(args: argparse.Namespace) -> int:
    from failover.config import describe, load_config
    from failover.providers import check_params

    config = load_config(args.config)
    check_params(config)
    print(describe(config))
    from failover.cli.status import storage_problems

    for problem in storage_problems(config):  # breaker.storage: redis://… without the redis extra
        print(f"error: {problem}", file=sys.stderr)
        return 1
    unusable = [p.name for p in config.providers if not p.usable]
    if len(unusable) == len(config.providers):
        print("error: no provider has an API key: every call would fail", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from failover.cli.status import status_report
    from failover.config import load_config

    text, code = status_report(load_config(args.config))
    print(text)
    return code


def _trace_capture(settings: TelemetrySettings) -> InMemorySpanExporter | None:
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


def _stream(args: argparse.Namespace) -> int:
    from failover.config import load_config
    from failover.router import Router

    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    memory: InMemorySpanExporter | None = None
    try:
        config = load_config(args.config)
        if args.trace:
            memory = _trace_capture(config.telemetry)
        with Router(config) as router, router.stream(messages, max_tokens=args.max_tokens) as s:
            for chunk in s:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            sys.stdout.write("\n")
            for a in s.result.attempts:
                print(a.line(), file=sys.stderr)
    except ConfigError:
        raise
    except FailoverError as e:
        print(f"\n{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if memory is not None:
            from failover.cli.trace import format_trace
            from failover.telemetry.sdk import flush_telemetry

            flush_telemetry()
            print(format_trace(memory.get_finished_spans()), file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from failover.cli.demo import run_demo

    try:
        run_demo(chunk_delay=args.chunk_delay, reset_timeout=args.reset_timeout, otlp=args.otlp)
    except (ValueError, RuntimeError) as e:  # a bad --otlp endpoint, or the exporter not installed
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="failover", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="a live failover against built-in emulated providers (no keys)")
    demo.add_argument("--chunk-delay", type=float, default=0.03, help="seconds between emulated chunks")
    demo.add_argument("--reset-timeout", type=float, default=3.0, help="breaker reset_timeout in the demo")
    demo.add_argument("--otlp", nargs="?", const="", default=None, metavar="ENDPOINT",
                      help="export the demo's traces over OTLP/gRPC (default endpoint: $OTEL_EXPORTER_OTLP_ENDPOINT, "
                           "else http://localhost:4317; see docs/telemetry.md for Jaeger)")
    demo.set_defaults(run=_demo)

    check = sub.add_parser("check", help="validate a config file and print the resolved chain")
    check.add_argument("config", nargs="?", default="config.yaml")
    check.set_defaults(run=_check)

    status = sub.add_parser("status", help="each provider's breaker: state, failures, next probe (from Redis)")
    status.add_argument("config", nargs="?", default="config.yaml")
    status.set_defaults(run=_status)

    stream = sub.add_parser("stream", help="stream one answer through the chain of a config file")
    stream.add_argument("prompt")
    stream.add_argument("--config", default="config.yaml")
    stream.add_argument("--system", default=None, help="a system message")
    stream.add_argument("--max-tokens", type=int, default=None)
    stream.add_argument("--trace", action="store_true",
                        help="print the call's trace (call span, one line per attempt) to stderr after the answer")
    stream.set_defaults(run=_stream)

    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as e:  # every command: the file, key path and line, and exit status 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
