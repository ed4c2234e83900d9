"""`python -m failover.emulator`: a local OpenAI emulator and a local Anthropic emulator, each with its own
fault script, plus a ready-to-use failover config pointing at both, served until Ctrl-C.

    python -m failover.emulator --openai-fault "503x2,cut:after=3" --config-out emulators.yaml
    failover --config emulators.yaml ...        # in another terminal

The config goes to stdout (or --config-out FILE); everything else goes to stderr. Fault specs: see
`failover.emulator.faults` (e.g. "503x2,ok", "rate_limit:retry_after=1", "down:10s", "stall:after=5,seconds=3").
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from failover.emulator.faults import Faults, parse_faults
from failover.emulator.server import Emulator
from failover.emulator.wire import Kind

DEFAULT_CHAOS = "rate_limit,503,overloaded,reset,cut:after=3,malformed:after=2"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5"}


def config_yaml(openai_url: str, anthropic_url: str) -> str:
    """A failover config with the two emulators as providers, OpenAI first."""
    return (
        "# failover config for the local emulators of `python -m failover.emulator` (they accept any key)\n"
        "providers:\n"
        "  - name: openai\n"
        "    type: openai\n"
        f"    model: {MODELS['openai']}\n"
        "    api_key: emulator\n"
        f"    base_url: {openai_url}\n"
        "  - name: anthropic\n"
        "    type: anthropic\n"
        f"    model: {MODELS['anthropic']}\n"
        "    api_key: emulator\n"
        f"    base_url: {anthropic_url}\n"
        "    max_tokens: 1024\n"
    )


def _spec(parser: argparse.ArgumentParser, option: str, spec: str, *, down: bool = True) -> Faults:
    try:
        faults = parse_faults(spec)
    except ValueError as e:
        parser.error(f"{option}: {e}")
    if faults.down is not None and not down:
        parser.error(f"{option}: a down window is not a chaos fault")
    return faults


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m failover.emulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--openai-fault", default="", metavar="SPEC", help="fault script of the OpenAI emulator")
    parser.add_argument("--anthropic-fault", default="", metavar="SPEC",
                        help="fault script of the Anthropic emulator")
    parser.add_argument("--openai-port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--anthropic-port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between content chunks")
    parser.add_argument("--answer", help="the text every healthy request gets")
    parser.add_argument("--chaos", type=float, default=0.0, metavar="RATE",
                        help="once a script is empty, fault this share of requests at random (0-1)")
    parser.add_argument("--chaos-faults", default=DEFAULT_CHAOS, metavar="SPEC",
                        help=f"the faults chaos picks from (default: {DEFAULT_CHAOS})")
    parser.add_argument("--seed", type=int, help="seed of the chaos draws, for a repeatable run")
    parser.add_argument("--continuation", choices=["smart", "naive"], default="smart")
    parser.add_argument("--reject-prefill", action="store_true")
    parser.add_argument("--config-out", type=Path, metavar="FILE", help="write the config here instead of stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.chaos <= 1:
        parser.error(f"--chaos: the rate must be between 0 and 1, not {args.chaos}")
    if args.chunk_delay < 0:
        parser.error(f"--chunk-delay: must be >= 0, not {args.chunk_delay}")
    faults = {"openai": _spec(parser, "--openai-fault", args.openai_fault),
              "anthropic": _spec(parser, "--anthropic-fault", args.anthropic_fault)}
    chaos = _spec(parser, "--chaos-faults", args.chaos_faults, down=False).steps if args.chaos else ()
    ports: dict[Kind, int] = {"openai": args.openai_port, "anthropic": args.anthropic_port}
    emus = [Emulator(kind, answer=args.answer, chunk_delay=args.chunk_delay, continuation=args.continuation,
                     reject_prefill=args.reject_prefill, port=port) for kind, port in ports.items()]
    try:
        for emu in emus:
            emu.start()
            faults[emu.kind].apply(emu)
            if chaos:
                emu.chaos(args.chaos, chaos, seed=args.seed)
            spec = getattr(args, f"{emu.kind}_fault") or "none"
            print(f"{emu.kind} emulator on {emu.base_url} (faults: {spec})", file=sys.stderr, flush=True)
        config = config_yaml(emus[0].base_url, emus[1].base_url)
        if args.config_out is not None:
            args.config_out.write_text(config)
            print(f"config written to {args.config_out}", file=sys.stderr, flush=True)
        else:
            sys.stdout.write(config)
            sys.stdout.flush()
        print("serving until Ctrl-C", file=sys.stderr, flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("emulators stopped", file=sys.stderr, flush=True)
        return 130
    except OSError as e:  # a port in use, an unwritable --config-out
        print(f"python -m failover.emulator: {e}", file=sys.stderr)
        return 1
    finally:
        for emu in emus:
            emu.stop()
    return 0  # pragma: no cover - the wait above only ends by an exception


if __name__ == "__main__":
    raise SystemExit(main())
