"""`failover emulate`: `python -m failover.emulator` under the `failover` command, with faults given
as `--fault openai=SPEC` / `--fault anthropic=SPEC` (the same specs as `failover try`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from failover.emulator import parse_faults
from failover.emulator.__main__ import main as emulator_main

KINDS = ("openai", "anthropic")


def fault_specs(options: list[str], names: Sequence[str]) -> dict[str, str]:
    """`--fault NAME=SPEC` options as one checked spec per name (several options for one name are one
    script, in order). ValueError naming the bad option otherwise."""
    specs: dict[str, str] = {}
    for option in options:
        name, eq, spec = option.partition("=")
        if not eq or ":" in name or not name:
            raise ValueError(f"--fault {option!r}: write NAME=SPEC, e.g. {names[0]}=503x2 or \"{names[0]}=down:10s\"")
        if name not in names:
            raise ValueError(f"--fault {option!r}: no provider named {name!r}; providers: {', '.join(names)}")
        specs[name] = f"{specs[name]},{spec}" if name in specs else spec
    for name, spec in specs.items():
        try:
            parse_faults(spec)
        except ValueError as e:
            raise ValueError(f"--fault {name}={spec}: {e}") from None
    return specs


def run(args: argparse.Namespace) -> int:
    try:
        specs = fault_specs(args.fault, KINDS)
    except ValueError as e:
        print(f"failover emulate: error: {e}", file=sys.stderr)
        return 2
    argv = [item for name, spec in specs.items() for item in (f"--{name}-fault", spec)]
    try:
        return emulator_main([*argv, *args.rest])
    except SystemExit as e:  # the emulator's own usage errors (exit 2)
        return e.code if isinstance(e.code, int) else 2
