"""`python -m benchmarks [--quick] [--only NAME ...]`: run the figures and print one table."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from benchmarks import concurrency, failover_latency, hedging, memory, outage, startup, streaming
from benchmarks.common import Emulators, Row, print_table

FIGURES = {
    "streaming": streaming.run,  # 1, 2
    "concurrency": concurrency.run,  # 3
    "memory": memory.run,  # 4
    "failover": failover_latency.run,  # 5
    "outage": outage.run,  # 6
    "startup": startup.run,  # 7
    "hedging": hedging.run,  # 8
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller loads (about a minute)")
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), help="run only these figures")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows: list[Row] = []
    with Emulators() as emus:
        for name in args.only or FIGURES:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows += FIGURES[name](emus, args.quick)
    print(f"\n{machine()}; `python -m benchmarks{' --quick' if args.quick else ''}`, "
          f"{time.monotonic() - started:.0f} s\n")
    print_table(rows)
    return 0  # a missed target is marked in the table; a benchmark is not a test


if __name__ == "__main__":
    raise SystemExit(main())
