"""Figures 1 and 2: what the router costs per stream, per chunk and per call, against the raw SDK; and
the same per stream for an answer that is one long tool call (its arguments in ~500 fragments).

Both clients stream the same answer from the same emulator (no pacing: the client is the bottleneck,
so wall time shows its cost too), alternately, in this process; the medians are compared.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import (
    MAX_TOKENS,
    MESSAGES,
    MODEL,
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
TOOL = {"type": "function", "function": {"name": "save", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}}}}}
LONG = {"text": "x" * 3990}  # the emulator streams JSON arguments 8 characters a fragment: ~500 fragments


def run(emus: Emulators, quick: bool) -> list[Row]:
    rows: list[Row] = []
    for kind in ("openai", "anthropic"):
        rows += _overhead(emus, kind, repeats=6 if quick else 20)
    for kind in ("openai", "anthropic"):
        rows += _tool_call(emus, kind, repeats=6 if quick else 20)
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


def _tool_call(emus: Emulators, kind: str, repeats: int) -> list[Row]:
    server = emus.start(kind, answer(1))
    server.script(*[("tool_calls", [["save", LONG]])] * (2 * (repeats + 4)))  # warm-up and checks included
    router, client = make_router(provider("p", server)), raw_client(server)

    def ours() -> int:
        with router.stream(MESSAGES, tools=[TOOL]) as stream:
            return sum(1 for chunk in stream if chunk.tool_calls)

    def theirs() -> int:
        if kind == "openai":
            events: Any = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, tools=[TOOL],
                                                         stream_options={"include_usage": True})
        else:
            events = client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES, stream=True,
                                            tools=[{"name": "save", "input_schema": TOOL["function"]["parameters"]}])
        n = 0
        with events:
            for event in events:
                if kind == "openai":
                    n += bool(event.choices and event.choices[0].delta.tool_calls)
                else:
                    n += event.type == "content_block_delta" or event.type == "content_block_start"
        return n

    try:
        fragments = ours()
        assert fragments == theirs() and fragments > 400, fragments
        a, b = interleave(ours, theirs, repeats)
    finally:
        router.close()
        client.close()
    fig = f"1 tool call, {fragments} fragments, {kind}"
    cpu, raw_cpu = median([s.cpu for s in a]), median([s.cpu for s in b])
    return [
        ratio_row(fig, "CPU / stream", cpu, raw_cpu, "ms", 1e3, limit=1.03),
        ratio_row(fig, "CPU / fragment", cpu / fragments, raw_cpu / fragments, "µs", 1e6),
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
