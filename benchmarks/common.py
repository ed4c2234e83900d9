"""What every figure shares: the emulator child process, the two clients under test (the router and the raw
SDK, configured alike), interleaved timing, and the table's rows."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai

from failover import Router

MESSAGES = [{"role": "user", "content": "Hello"}]
MODEL = "bench-model"
KEY = "bench-key"
MAX_TOKENS = 1024  # Anthropic needs one; the router sends the same default

# Generous deadlines: a benchmark measures cost, it must never be cut short by the router's own timeouts.
DEFAULTS: dict[str, Any] = {
    "timeouts": {"connect": 30.0, "first_token": 120.0, "idle": 120.0, "total": 600.0},
}


def answer(chunks: int) -> str:
    """An answer the emulator streams in exactly `chunks` content chunks (one word each)."""
    return " ".join(f"w{i}" for i in range(chunks))


# ---------------------------------------------------------------- the emulators, in a child process


@dataclass
class Server:
    kind: str
    url: str
    emulators: Emulators | None = None  # the control channel (None in a worker that only connects)
    id: int = -1

    def _call(self, **cmd: Any) -> dict[str, Any]:
        assert self.emulators is not None
        return self.emulators.call(id=self.id, **cmd)

    def script(self, *steps: tuple[Any, ...]) -> None:
        """Queue fault steps by factory name and arguments: `script(("server_error", 503))`."""
        self._call(op="script", steps=[list(s) for s in steps])

    def down_for(self, seconds: float) -> None:
        self._call(op="down_for", seconds=seconds)

    def count(self) -> int:
        return int(self._call(op="count")["count"])

    def reset(self) -> None:
        self._call(op="reset")


class Emulators:
    """`failover.emulator` servers running in `python -m benchmarks.serve`, so the client's CPU time is its own."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "benchmarks.serve"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator process died (exit code {self._proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def start(self, kind: str, answer: str, chunk_delay: float = 0.0) -> Server:
        reply = self.call(op="start", kind=kind, answer=answer, chunk_delay=chunk_delay)
        return Server(kind, reply["url"], self, reply["id"])

    def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(10)

    def __enter__(self) -> Emulators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the two clients under test


def provider(name: str, server: Server, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "type": server.kind, "model": MODEL, "api_key": KEY, "base_url": server.url, **overrides}


def make_router(*providers: dict[str, Any], **defaults: Any) -> Router:
    return Router.from_dict({"providers": list(providers), "defaults": {**DEFAULTS, **defaults}}, source="<bench>")


def raw_client(server: Server, *, asynchronous: bool = False) -> Any:
    """The SDK client a user would write, configured as the router configures its own: no SDK retries
    (and for Anthropic, no SDK spans), so the comparison isolates what the router adds."""
    if server.kind == "openai":
        cls: Any = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        return cls(api_key=KEY, base_url=server.url, max_retries=0)
    cls = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
    return cls(api_key=KEY, base_url=server.url, max_retries=0, open_telemetry=False)


def raw_open(client: Any, kind: str, messages: list[dict[str, str]] = MESSAGES) -> Any:
    """Open a stream with the same request body the router sends."""
    if kind == "openai":
        return client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                              stream_options={"include_usage": True})
    return client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=messages, stream=True)


def raw_text(event: Any, kind: str) -> str:
    """The text of one SDK event, the way a caller of the raw SDK picks it out."""
    if kind == "openai":
        return (event.choices[0].delta.content or "") if event.choices else ""
    return event.delta.text if event.type == "content_block_delta" else ""


def raw_stream(client: Any, kind: str) -> int:
    """One whole stream through the raw SDK; returns the number of text chunks."""
    n = 0
    with raw_open(client, kind) as events:
        for event in events:
            if raw_text(event, kind):
                n += 1
    return n


def router_stream(router: Router) -> int:
    n = 0
    with router.stream(MESSAGES) as stream:
        for _ in stream:
            n += 1
    return n


async def arouter_stream(router: Router) -> int:
    n = 0
    async with router.astream(MESSAGES) as stream:
        async for _ in stream:
            n += 1
    return n


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds, time.perf_counter
    cpu: float  # seconds, time.process_time: this (client) process only, all its threads


def measure(fn: Callable[[], Any]) -> Sample:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return Sample(time.perf_counter() - w, time.process_time() - c)


def interleave(a: Callable[[], Any], b: Callable[[], Any], repeats: int,
               warmup: int = 3) -> tuple[list[Sample], list[Sample]]:
    """Run a and b alternately (AB BA AB ...) after a warm-up, so drift hits both alike."""
    for _ in range(warmup):
        a()
        b()
    sa: list[Sample] = []
    sb: list[Sample] = []
    for i in range(repeats):
        if i % 2 == 0:
            sa.append(measure(a))
            sb.append(measure(b))
        else:
            sb.append(measure(b))
            sa.append(measure(a))
    return sa, sb


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------- the table


@dataclass
class Row:
    figure: str
    measure: str
    router: str
    raw: str
    compare: str = ""  # "1.02×", "+0.8 ms"
    target: str = ""
    ok: bool | None = None


def ratio_row(figure: str, measure: str, router: float, raw: float, unit: str, scale: float,
              limit: float | None = None, at_least: bool = False, digits: int = 1) -> Row:
    """A row whose comparison is the ratio router/raw, checked against `limit` (≤, or ≥ with `at_least`)."""
    r = router / raw
    ok = None if limit is None else (r >= limit if at_least else r <= limit)
    target = "" if limit is None else f"{'≥' if at_least else '≤'} {limit:.2f}×"
    return Row(figure, measure, f"{router * scale:,.{digits}f} {unit}", f"{raw * scale:,.{digits}f} {unit}",
               f"{r:.3f}×", target, ok)


def print_table(rows: list[Row], out: Any = sys.stdout) -> None:
    """A Markdown table: readable in a terminal, pasted as is into benchmarks/README.md."""
    head = ["figure", "measure", "router", "raw SDK", "router vs raw", "target", ""]
    cells = [[r.figure, r.measure, r.router, r.raw, r.compare, r.target,
              "" if r.ok is None else ("ok" if r.ok else "MISSED")] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=True)]
    for line in [head, ["-" * w for w in widths], *cells]:
        print("| " + " | ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)) + " |", file=out)
