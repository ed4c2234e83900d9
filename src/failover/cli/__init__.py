"""The `failover` command: stream, check, status, demo, try, emulate.

`failover --help` and `failover check` must answer in well under a second (benchmarks/startup.py
measures both), so this module imports nothing heavy: each command's module is imported when that
command runs, and imports the router, pydantic or the SDKs only if it needs them. A new command is
one `add_*` function (its options; here or in a module that imports nothing heavy) and one line in
`parser()` that calls it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from failover import __version__

# Exit statuses every command shares (docs/cli.md); each command returns its own 0 or 1.
USAGE, INTERRUPTED = 2, 130  # an invalid config or option; Ctrl-C

Command = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _lazy(module: str, function: str = "run") -> Command:
    """The command `function` of `failover.cli.<module>`, imported only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        command: Command = getattr(importlib.import_module(f"failover.cli.{module}"), function)
        return command(args)

    return run


def _fault_help(what: str) -> str:
    return (f"NAME=SPEC: the fault script of {what} NAME, e.g. openai=503x2 or \"openai=down:10s\" or "
            "anthropic=stall:after=5 (repeatable; the grammar is in docs/emulator.md, \"Fault specs\")")


def add_stream(sub: Subparsers) -> None:
    p = sub.add_parser("stream", help="stream one answer through the chain of a config file")
    p.add_argument("prompt")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--system", default=None, help="a system message")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--trace", action="store_true",
                   help="print the call's trace (call span, one line per attempt) to stderr after the answer")
    p.set_defaults(run=_lazy("stream"))


def add_check(sub: Subparsers) -> None:
    p = sub.add_parser("check", help="validate a config file and print the resolved chain (keys masked)")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 on warnings too: a provider without its API key, an unreachable Redis storage")
    p.set_defaults(run=_lazy("check"))


def add_status(sub: Subparsers) -> None:
    p = sub.add_parser("status", help="each provider's breaker: state, failures, next probe (from Redis)")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.set_defaults(run=_lazy("status"))


def add_demo(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="the failover story, live, against built-in emulated providers (no keys)")
    p.add_argument("--chunk-delay", type=float, default=0.03, help="seconds between emulated chunks")
    p.add_argument("--reset-timeout", type=float, default=3.0, help="breaker reset_timeout in the demo")
    p.add_argument("--otlp", nargs="?", const="", default=None, metavar="ENDPOINT",
                   help="export the demo's traces over OTLP/gRPC (default endpoint: $OTEL_EXPORTER_OTLP_ENDPOINT, "
                        "else http://localhost:4317; see docs/telemetry.md for Jaeger)")
    p.set_defaults(run=_lazy("demo", "main"))


def add_try(sub: Subparsers) -> None:
    p = sub.add_parser(
        "try", help="your config's chain against local emulated providers with the faults you choose (no keys)",
        description="Runs calls through the router with your config's settings, each provider replaced by a "
                    "local emulator of its type (base_url and api_key are the emulator's, breaker storage is "
                    "memory), and prints every attempt and breaker change as it happens.")
    p.add_argument("prompt", nargs="?", default="Why do circuit breakers help?")
    p.add_argument("--fault", action="append", default=[], metavar="NAME=SPEC", help=_fault_help("the provider"))
    p.add_argument("--config", default=None,
                   help="the config whose chain and settings to use (default: ./config.yaml if there is one, "
                        "else openai then anthropic with the built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a setting, e.g. defaults.timeouts.idle=2 or providers.openai.retry.max_attempts=1 "
                        "(VALUE is YAML; repeatable)")
    p.add_argument("--calls", type=int, default=1, help="how many calls to make, one after the other (default 1)")
    p.add_argument("--tools", action="store_true", help="offer a get_weather tool: the emulators answer with a call")
    p.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between emulated chunks")
    p.add_argument("--trace", action="store_true", help="print each call's trace tree at the end")
    p.set_defaults(run=_lazy("sandbox"))


def add_emulate(sub: Subparsers) -> None:
    p = sub.add_parser(
        "emulate", help="serve emulated OpenAI and Anthropic APIs with faults, and print a config for them",
        description="Starts a local OpenAI emulator and a local Anthropic emulator (any API key works), prints a "
                    "failover config pointing at both (stdout, or --config-out FILE), and serves until Ctrl-C. "
                    "Every option of `python -m failover.emulator` is accepted too: --config-out FILE, "
                    "--chunk-delay S, --answer TEXT, --chaos RATE, --chaos-faults SPEC, --seed N, --openai-port N, "
                    "--anthropic-port N, --continuation smart|naive, --reject-prefill (docs/emulator.md).")
    p.add_argument("--fault", action="append", default=[], metavar="NAME=SPEC", help=_fault_help("the emulator"))
    p.set_defaults(run=_lazy("emulate"), passthrough=True)


def parser() -> argparse.ArgumentParser:
    return _build()[0]


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser, by name (what `failover COMMAND --help` prints)."""
    return dict(_build()[1].choices)


def _build() -> tuple[argparse.ArgumentParser, Subparsers]:
    """The command line: one `add_*` line per command."""
    top = argparse.ArgumentParser(prog="failover", description=__doc__.split("\n")[0])
    top.add_argument("--version", action="version", version=f"failover {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_stream(sub)
    add_check(sub)
    add_status(sub)
    add_demo(sub)
    add_try(sub)
    add_emulate(sub)
    return top, sub


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    args, rest = top.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        top.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return _run(args.run, args)


def _run(command: Command, args: argparse.Namespace) -> int:
    """Every command: a config error names the file, key path and line (exit 2); Ctrl-C is one line (130)."""
    from failover.errors import ConfigError

    try:
        return command(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("failover: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
