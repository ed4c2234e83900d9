"""The 500-chunk stream in a loop, for a profiler: router or raw SDK, one provider kind.

    .venv/bin/python -m pip install py-spy   # not a project dependency
    py-spy record -r 1000 -f raw -o router.txt -- .venv/bin/python -m benchmarks.hotpath router openai
    py-spy record -r 1000 -f raw -o raw.txt    -- .venv/bin/python -m benchmarks.hotpath raw openai

The emulator runs in a child process, which py-spy leaves out unless given --subprocesses. Without a
profiler, the loop prints the CPU per stream, which makes it a quick A/B check of a change to src/.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import Emulators, answer, make_router, provider, raw_client, raw_stream, router_stream


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("side", choices=["router", "raw"])
    parser.add_argument("kind", choices=["openai", "anthropic"])
    parser.add_argument("--chunks", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with Emulators() as emus:
        server = emus.start(args.kind, answer(args.chunks))
        router, client = make_router(provider("p", server)), raw_client(server)
        stream = (lambda: router_stream(router)) if args.side == "router" else (lambda: raw_stream(client, args.kind))
        for _ in range(5):
            stream()
        n, started, cpu = 0, time.monotonic(), time.process_time()
        while time.monotonic() - started < args.seconds:
            stream()
            n += 1
        per = (time.process_time() - cpu) / n
        print(f"{args.side} {args.kind}: {n} streams of {args.chunks} chunks, CPU {per * 1e3:.2f} ms per stream, "
              f"{per / args.chunks * 1e6:.2f} µs per chunk")
        router.close()
        client.close()


if __name__ == "__main__":
    main()
