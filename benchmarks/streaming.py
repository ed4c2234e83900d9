"""Figures 1 and 2: what the router costs per stream, per chunk and per call, against the raw SDK.

Both clients stream the same answer from the same emulator (no pacing: the client is the bottleneck,
so wall time shows its cost too), alternately, in this process; the medians are compared.
"""

from __future__ import annotations

from benchmarks.common import (
    Emulators,
    Row,
    answer,
    interleave,
    make_router,
    median,
    provider,
    ratio_row,
    raw_client,
    raw_stream,
    router_stream,
)

CHUNKS = 500
CALLS_PER_BLOCK = 20  # a one-chunk call is ~1 ms: time blocks of calls, not single calls


def run(emus: Emulators, quick: bool) -> list[Row]:
    rows: list[Row] = []
    for kind in ("openai", "anthropic"):
        rows += _overhead(emus, kind, repeats=6 if quick else 20)
    for kind in ("openai", "anthropic"):
        rows += _per_call(emus, kind, repeats=6 if quick else 20)
    return rows


def _overhead(emus: Emulators, kind: str, repeats: int) -> list[Row]:
    server = emus.start(kind, answer(CHUNKS))
    router, client = make_router(provider("p", server)), raw_client(server)
    try:
        assert router_stream(router) == raw_stream(client, kind) == CHUNKS
        ours, raw = interleave(lambda: router_stream(router), lambda: raw_stream(client, kind), repeats)
    finally:
        router.close()
        client.close()
    fig = f"1 stream {CHUNKS} chunks, {kind}"
    wall, cpu = median([s.wall for s in ours]), median([s.cpu for s in ours])
    raw_wall, raw_cpu = median([s.wall for s in raw]), median([s.cpu for s in raw])
    return [
        ratio_row(fig, "wall / stream", wall, raw_wall, "ms", 1e3, limit=1.03),
        ratio_row(fig, "CPU / stream", cpu, raw_cpu, "ms", 1e3, limit=1.03),
        ratio_row(fig, "CPU / chunk", cpu / CHUNKS, raw_cpu / CHUNKS, "µs", 1e6),
    ]


def _per_call(emus: Emulators, kind: str, repeats: int) -> list[Row]:
    server = emus.start(kind, answer(1))
    router, client = make_router(provider("p", server)), raw_client(server)

    def ours() -> None:
        for _ in range(CALLS_PER_BLOCK):
            router_stream(router)

    def theirs() -> None:
        for _ in range(CALLS_PER_BLOCK):
            raw_stream(client, kind)

    try:
        assert router_stream(router) == raw_stream(client, kind) == 1
        a, b = interleave(ours, theirs, repeats)
    finally:
        router.close()
        client.close()
    fig = f"2 one-chunk call, {kind}"
    wall, cpu = median([s.wall for s in a]) / CALLS_PER_BLOCK, median([s.cpu for s in a]) / CALLS_PER_BLOCK
    raw_wall, raw_cpu = median([s.wall for s in b]) / CALLS_PER_BLOCK, median([s.cpu for s in b]) / CALLS_PER_BLOCK
    extra = (cpu - raw_cpu) * 1e6
    return [
        ratio_row(fig, "wall / call", wall, raw_wall, "µs", 1e6, limit=1.10, digits=0),
        ratio_row(fig, "CPU / call", cpu, raw_cpu, "µs", 1e6, limit=1.10, digits=0),
        Row(fig, "extra CPU / call", f"{extra:+.0f} µs", "", ""),
    ]
