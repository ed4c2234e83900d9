"""`failover stream`: one answer through the chain of a config file; the attempts go to stderr."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from failover.config import load_config
from failover.errors import ConfigError, FailoverError
from failover.router import Router

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def run(args: argparse.Namespace) -> int:
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    memory: InMemorySpanExporter | None = None
    midline = False  # the answer's last line is not finished on stdout
    try:
        config = load_config(args.config)
        if args.trace:
            from failover.cli.trace import capture

            memory = capture(config.telemetry)
        with Router(config) as router, router.stream(messages, max_tokens=args.max_tokens) as s:
            for chunk in s:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
                midline = True
            sys.stdout.write("\n")
            midline = False
            for a in s.result.attempts:
                print(a.line(), file=sys.stderr)
    except ConfigError:
        raise  # the command line's own report: file, key path, line; exit 2
    except FailoverError as e:
        print(f"\n{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if midline:  # the caller's prompt must not start after the half-written answer
            sys.stdout.write("\n")
            sys.stdout.flush()
        raise
    finally:
        if memory is not None:
            from failover.cli.trace import format_trace
            from failover.telemetry.sdk import flush_telemetry

            flush_telemetry()
            print(format_trace(memory.get_finished_spans()), file=sys.stderr)
    return 0
