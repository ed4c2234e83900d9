"""`python -m soak [--seconds 60] [--async-streams 1000] [--threads 100] [--midstream resume] ...`:
run the chaos soak, print one table of promises, exit 1 if any target was missed."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
import time

from soak import phases, report, resources
from soak.emulators import Fleet, Server, raise_fd_limit
from soak.phases import ANSWER, PROVIDERS, BrownoutResult, ChaosResult, OutageResult, Settings


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the chaos phase (default 60)")
    p.add_argument("--round-seconds", type=float, default=10.0, help="resources are checked after each round")
    p.add_argument("--async-streams", type=int, default=1000, help="concurrent asyncio callers (default 1000)")
    p.add_argument("--threads", type=int, default=100, help="concurrent sync callers, one thread each (default 100)")
    p.add_argument("--fault-rate", type=float, default=0.3, help="share of requests answered with a fault")
    p.add_argument("--midstream", choices=["resume", "restart", "raise"], default="resume")
    p.add_argument("--pace", type=float, default=5.0,
                   help="a caller starts a call at most every PACE seconds (default 5; a healthy answer takes 3 s)")
    p.add_argument("--chunk-delay", type=float, default=0.1, help="seconds between the emulators' 29 chunks")
    p.add_argument("--tolerance", type=float, default=0.5, help="seconds a call may run past timeouts.total")
    p.add_argument("--give-up", type=float, default=10.0,
                   help="seconds past timeouts.total after which a call is counted as hung and abandoned")
    p.add_argument("--brownout-seconds", type=float, default=10.0)
    p.add_argument("--outage-seconds", type=float, default=8.0)
    p.add_argument("--phase-callers", type=int, default=100, help="concurrent asyncio callers in brownout and outage")
    p.add_argument("--emulators", choices=["child", "inprocess"], default="child",
                   help="where the emulators run (child: a process of their own, the default)")
    p.add_argument("--seed", type=int, default=1, help="seed of the emulators' fault choices")
    args = p.parse_args(argv)
    if not 0 <= args.fault_rate <= 1:
        p.error(f"--fault-rate must be between 0 and 1, not {args.fault_rate}")
    for name in ("seconds", "round_seconds", "brownout_seconds", "outage_seconds", "chunk_delay", "tolerance",
                 "give_up", "pace"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    return args


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def load() -> str:
    """The machine's load average: CPU taken by other processes shows in the loop's lateness."""
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


async def run_phases(args: argparse.Namespace, servers: list[Server],
                     ignore: list[int]) -> tuple[ChaosResult, BrownoutResult, OutageResult]:
    settings = settings_of(args)
    say(f"chaos: {args.seconds:g} s, {args.async_streams} async + {args.threads} sync callers, "
        f"{args.fault_rate:.0%} faults, midstream {args.midstream}, providers {' -> '.join(PROVIDERS)}")
    chaos = await phases.chaos(servers, settings, args.seconds, args.round_seconds, args.async_streams,
                               args.threads, ignore)
    say(f"brownout: {args.brownout_seconds:g} s, {args.phase_callers} callers")
    brownout = await phases.brownout(servers, settings, args.brownout_seconds, args.phase_callers)
    say(f"outage: {args.outage_seconds:g} s, {args.phase_callers} callers")
    outage = await phases.outage(servers, settings, args.outage_seconds, args.phase_callers)
    return chaos, brownout, outage


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(args.midstream, args.fault_rate, args.seed, args.tolerance, args.give_up, args.pace)


def soak(args: argparse.Namespace, fleet: Fleet) -> int:
    servers = [fleet.start(kind, ANSWER, args.chunk_delay) for kind in ("openai", "anthropic", "openai")]
    # In-process emulators' own connections are no leak of the router's (their fds are counted, though).
    ignore = [s.port for s in servers] if args.emulators == "inprocess" else []
    # Leaks are counted outside the event loop: the loop's own descriptors and its default executor's
    # threads (where the SDKs compute their platform header) belong to the application and end with it.
    baseline = resources.snapshot(ignore)
    chaos, brownout, outage = asyncio.run(run_phases(args, servers, ignore))
    closed = resources.settle(baseline, ignore)

    all_calls = phases.new_tally(settings_of(args))
    for tally in (chaos.tally, brownout.tally, outage.tally):
        all_calls.merge(tally)
    result = report.rows(all_calls, chaos, brownout, outage, baseline, closed)
    print(f"\n{report.details(all_calls, chaos, brownout, outage, baseline, closed)}\n")
    print(report.verdict_table(result))
    missed = [r.check for r in result if r.ok is False]
    print(f"\n{'MISSED: ' + '; '.join(missed) if missed else 'every target met'}")
    return 1 if missed else 0


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raise_fd_limit()
    started = time.monotonic()
    print(f"{machine()}; {datetime.date.today()}; python -m soak {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"before: {load()}")
    with Fleet(args.emulators) as fleet:
        code = soak(args, fleet)
    print(f"({time.monotonic() - started:.0f} s; after: {load()})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
