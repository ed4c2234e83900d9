"""Figure 3: many streams at once. 1,000 concurrent `astream` calls on one event loop (router) against
1,000 concurrent streams of the raw `AsyncOpenAI`; and 100 threads on the sync API against the raw `OpenAI`.

Every run is a fresh child process (`python -m benchmarks.concurrency ...`), so one run's connections,
caches and garbage do not leak into the next, and memory.py can read a clean RSS from the same worker.
The emulator does not pace its chunks: throughput is how fast the client can take them in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.common import (
    MESSAGES,
    Emulators,
    Row,
    Server,
    answer,
    make_router,
    median,
    percentile,
    provider,
    ratio_row,
    raw_client,
    raw_open,
    raw_text,
)

CHUNKS = 100


def run(emus: Emulators, quick: bool) -> list[Row]:
    server = emus.start("openai", answer(CHUNKS))
    rows: list[Row] = []
    for mode, streams in (("async", 300 if quick else 1000), ("threads", 100)):
        results = alternate(server, mode, streams, repeats=1 if quick else 2)
        fig = f"3 {streams} concurrent, {'asyncio' if mode == 'async' else 'threads'}"
        ours, raw = results["router"], results["raw"]
        rows += [
            ratio_row(fig, "throughput", median([r["throughput"] for r in ours]),
                      median([r["throughput"] for r in raw]), "chunks/s", 1, limit=0.95, at_least=True, digits=0),
            ratio_row(fig, "first chunk p50", median([r["ttfc_p50"] for r in ours]),
                      median([r["ttfc_p50"] for r in raw]), "ms", 1e3),
            ratio_row(fig, "first chunk p99", median([r["ttfc_p99"] for r in ours]),
                      median([r["ttfc_p99"] for r in raw]), "ms", 1e3),
        ]
    return rows


def alternate(server: Server, mode: str, streams: int, repeats: int, chunks: int = CHUNKS,
              hold: bool = False) -> dict[str, list[Any]]:
    """Worker runs, router and raw alternately (AB BA ...); `server` streams answers of `chunks` chunks."""
    out: dict[str, list[Any]] = {"router": [], "raw": []}
    for i in range(repeats):
        for side in ("router", "raw") if i % 2 == 0 else ("raw", "router"):
            out[side].append(worker(server, side, mode, streams, chunks, hold))
    return out


def worker(server: Server, side: str, mode: str, streams: int, chunks: int, hold: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.concurrency", side, mode, server.kind, server.url, str(streams),
           str(chunks)]
    done = subprocess.run(cmd + (["--hold"] if hold else []), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {side} {mode} failed:\n{done.stderr}")
    server.reset()  # forget the emulator's request records
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# ---------------------------------------------------------------- the worker (a child process)


def rss_kib() -> int:
    """Resident set size now (KiB)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Run:
    """What one worker measures: per-stream time to first chunk, chunk count, RSS while all streams are open."""

    def __init__(self, streams: int, chunks: int) -> None:
        self.streams, self.per_stream = streams, chunks
        self.first: list[float] = []
        self.chunks = 0
        self.rss_open = 0
        self.hold = False
        self.lock = threading.Lock()

    def report(self, started: float, cpu: float, rss_base: int) -> dict[str, Any]:
        wall = time.perf_counter() - started
        assert self.chunks == self.streams * self.per_stream, (self.chunks, self.streams * self.per_stream)
        return {"throughput": self.chunks / wall, "wall": wall, "cpu": time.process_time() - cpu,
                "ttfc_p50": percentile(self.first, 50), "ttfc_p99": percentile(self.first, 99),
                "rss_base_kib": rss_base, "rss_open_kib": self.rss_open,
                "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


async def run_async(side: str, server: Server, streams: int, chunks: int, hold: bool) -> dict[str, Any]:
    router = make_router(provider("p", server)) if side == "router" else None
    client = raw_client(server, asynchronous=True) if side == "raw" else None
    kind = server.kind
    run = Run(streams, chunks)
    all_open = asyncio.Event()

    async def one(started: float) -> None:
        n = 0
        if router is not None:
            async with router.astream(MESSAGES) as stream:
                async for _ in stream:
                    n = await seen(n, started)
        else:
            async with await raw_open(client, kind) as events:
                async for event in events:
                    if raw_text(event, kind):
                        n = await seen(n, started)
        run.chunks += n

    async def seen(n: int, started: float) -> int:
        if n == 0:
            run.first.append(time.perf_counter() - started)
            if run.hold:  # memory: keep every stream open until all of them are
                if len(run.first) == streams:
                    run.rss_open = rss_kib()
                    all_open.set()
                await all_open.wait()
        return n + 1

    await one(time.perf_counter())  # warm up: imports, the connection pool, the first request
    run.first.clear()
    run.chunks = 0
    run.hold = hold
    rss_base = rss_kib()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(started) for _ in range(streams)))
    result = run.report(started, cpu, rss_base)
    if router is not None:
        await router.aclose()
    else:
        await client.close()
    return result


def run_threads(side: str, server: Server, streams: int, chunks: int) -> dict[str, Any]:
    router = make_router(provider("p", server)) if side == "router" else None
    client = raw_client(server) if side == "raw" else None
    kind = server.kind
    run = Run(streams, chunks)
    gate = threading.Barrier(streams + 1)
    started = 0.0

    def one() -> int:
        n = 0
        if router is not None:
            with router.stream(MESSAGES) as stream:
                for _ in stream:
                    n = seen(n)
        else:
            with raw_open(client, kind) as events:
                for event in events:
                    if raw_text(event, kind):
                        n = seen(n)
        return n

    def seen(n: int) -> int:
        if n == 0:
            with run.lock:
                run.first.append(time.perf_counter() - started)
        return n + 1

    def thread() -> None:
        gate.wait()
        n = one()
        with run.lock:
            run.chunks += n

    one()  # warm up
    run.first.clear()
    threads = [threading.Thread(target=thread) for _ in range(streams)]
    for t in threads:
        t.start()
    rss_base = rss_kib()
    started, cpu = time.perf_counter(), time.process_time()
    gate.wait()
    for t in threads:
        t.join()
    result = run.report(started, cpu, rss_base)
    if router is not None:
        router.close()
    else:
        client.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["router", "raw"])
    parser.add_argument("mode", choices=["async", "threads"])
    parser.add_argument("kind", choices=["openai", "anthropic"])
    parser.add_argument("url")
    parser.add_argument("streams", type=int)
    parser.add_argument("chunks", type=int, help="chunks in each answer (a check that all arrived)")
    parser.add_argument("--hold", action="store_true", help="hold every stream open after its first chunk "
                        "until all are open, and read the RSS then")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = Server(args.kind, args.url)
    if args.mode == "async":
        result = asyncio.run(run_async(args.side, server, args.streams, args.chunks, args.hold))
    else:
        result = run_threads(args.side, server, args.streams, args.chunks)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
