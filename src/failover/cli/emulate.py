"""`failover emulate`: `python -m failover.emulator` under the `failover` command, with faults given
as `--fault openai=SPEC` / `--fault anthropic=SPEC` (the same specs as `failover try`)."""

from __future__ import annotations

import argparse
import sys

from failover.emulator import parse_faults
from failover.emulator.__main__ import main as emulator_main

KINDS = ("openai", "anthropic")


def run(args: argparse.Namespace) -> int:
    specs: dict[str, list[str]] = {}
    for option in args.fault:
        name, eq, spec = option.partition("=")
        if not eq or name not in KINDS:
            return _usage(f"--fault {option!r}: write openai=SPEC or anthropic=SPEC (e.g. openai=503x2, "
                          "\"openai=down:10s\")")
        specs.setdefault(name, []).append(spec)
    argv: list[str] = []
    for name, parts in specs.items():  # several --fault for one emulator: one script, in order
        spec = ",".join(parts)
        try:
            parse_faults(spec)
        except ValueError as e:
            return _usage(f"--fault {name}={spec}: {e}")
        argv += [f"--{name}-fault", spec]
    try:
        return emulator_main([*argv, *args.rest])
    except SystemExit as e:  # the emulator's own usage errors (exit 2)
        return e.code if isinstance(e.code, int) else 2


def _usage(message: str) -> int:
    print(f"failover emulate: error: {message}", file=sys.stderr)
    return 2
