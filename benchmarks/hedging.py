"""Figure 8: never waiting on a sick provider (DESIGN §10), each measured side by side in the same run.

8a. A primary that never answers (`first_token` 10 s), hedge after 1 s: the caller's first chunk,
    hedging on against off.
8b. A primary slow on 10 % of its calls (5 s to the first chunk), 200 asyncio callers: p99 time to
    the first chunk with `hedge: {after: auto}` against off, and the extra requests it cost.
8c. A primary down for 4 s, then recovered, 20 calls a second: callers that paid for a failed probe,
    requests to the down primary, and the time until traffic is back on it, with `breaker.probe:
    background` against `request`.
8d. What hedging costs a healthy stream (it never starts): CPU per 500-chunk stream and per one-chunk
    call with `hedge` configured against not, sync (a reader thread per attempt) and asyncio.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from benchmarks.common import (
    MESSAGES,
    Emulators,
    Row,
    answer,
    arouter_stream,
    interleave,
    make_router,
    median,
    percentile,
    provider,
    ratio_row,
    router_stream,
)
from failover import Router
from failover.events import AttemptStarted, ProbeEnded


def run(emus: Emulators, quick: bool) -> list[Row]:
    return [*_silent(emus, quick), *_slow_tail(emus, quick), *_recovery(emus, quick), *_cost(emus, quick)]


def _first_chunk(router: Router) -> float:
    started = time.perf_counter()
    with router.stream(MESSAGES) as stream:
        next(iter(stream))
        first = time.perf_counter() - started
        for _ in stream:
            pass
    return first


def _silent(emus: Emulators, quick: bool) -> list[Row]:
    primary, fallback = emus.start("openai", answer(5)), emus.start("openai", answer(5))
    timeouts = {"connect": 5.0, "first_token": 10.0, "idle": 10.0, "total": 60.0}
    on = make_router(provider("primary", primary), provider("fallback", fallback), timeouts=timeouts,
                     hedge={"after": 1.0}, breaker={"fail_max": 1000})
    off = make_router(provider("primary", primary), provider("fallback", fallback), timeouts=timeouts,
                      breaker={"fail_max": 1000})
    reps = 2 if quick else 4
    try:
        primary.script(*[("hang",)] * (2 * reps))
        with_hedge, without = [], []
        for _ in range(reps):
            with_hedge.append(_first_chunk(on))
            without.append(_first_chunk(off))
    finally:
        on.close()
        off.close()
        primary.reset()
    fig = "8a primary never answers"
    hedged, plain = median(with_hedge), median(without)
    return [Row(fig, "first chunk (hedge after 1 s)", f"{hedged:.2f} s", f"{plain:.2f} s (off)",
                f"{hedged / plain:.3f}×", "≈ 1 s + fallback", hedged < 1.5)]


def _slow_tail(emus: Emulators, quick: bool) -> list[Row]:
    """Calls arrive at a steady rate (open loop, as a service's users do); the primary's first chunk
    takes 0.3 s on nine calls in ten and 5 s on the tenth."""
    calls, rate = (120, 30.0) if quick else (300, 30.0)
    warmup = 30
    out: dict[str, tuple[list[float], int]] = {}
    for label, hedge in (("auto", {"after": "auto"}), ("off", None)):
        primary, fallback = emus.start("openai", answer(5)), emus.start("openai", answer(5))
        assert primary.emulators is not None
        primary.emulators.call(id=primary.id, op="chaos", rate=1.0, seed=7,
                               steps=[*[["slow_first", 0.3]] * 9, ["slow_first", 5.0]])
        opts: dict[str, Any] = {"timeouts": {"connect": 5.0, "first_token": 10.0, "idle": 10.0, "total": 60.0},
                                "breaker": {"fail_max": 1000}}
        if hedge:
            opts["hedge"] = hedge
        router = make_router(provider("primary", primary), provider("fallback", fallback), **opts)

        async def one(r: Router = router) -> float:
            started = time.perf_counter()
            async with r.astream(MESSAGES) as stream:
                first = None
                async for _ in stream:
                    first = first or time.perf_counter() - started
            return first or 0.0

        async def all_calls(r: Router = router) -> list[float]:
            await asyncio.gather(*(one() for _ in range(warmup)))  # `auto` learns the first-chunk times
            tasks = []
            for _ in range(calls):
                tasks.append(asyncio.ensure_future(one()))
                await asyncio.sleep(1 / rate)
            firsts = await asyncio.gather(*tasks)
            await r.aclose()
            return list(firsts)

        try:
            firsts = asyncio.run(all_calls())
        finally:
            router.close()
        out[label] = (firsts, primary.count() + fallback.count() - warmup)
    fig = f"8b primary slow on 10 %, {calls} calls at {rate:g}/s"
    (auto, auto_requests), (off, off_requests) = out["auto"], out["off"]
    return [
        Row(fig, "first chunk p99 (auto vs off)", f"{percentile(auto, 99):.2f} s", f"{percentile(off, 99):.2f} s",
            f"{percentile(auto, 99) / percentile(off, 99):.3f}×"),
        Row(fig, "first chunk p50", f"{percentile(auto, 50) * 1e3:.0f} ms", f"{percentile(off, 50) * 1e3:.0f} ms",
            f"{percentile(auto, 50) / percentile(off, 50):.3f}×"),
        Row(fig, "requests per call", f"{auto_requests / calls:.3f}", f"{off_requests / calls:.3f}",
            f"{auto_requests / off_requests:.3f}×"),
    ]


def _recovery(emus: Emulators, quick: bool) -> list[Row]:
    rows = []
    down = 4.0
    for mode in ("background", "request"):
        primary, fallback = emus.start("openai", answer(3)), emus.start("openai", answer(3))
        router = make_router(provider("primary", primary), provider("fallback", fallback),
                             timeouts={"connect": 2.0, "first_token": 2.0, "idle": 2.0, "total": 10.0},
                             retry={"max_attempts": 1}, breaker={"fail_max": 3, "reset_timeout": 1.0, "probe": mode})
        started = time.monotonic()
        seen = {"probing": False, "while_down": 0}

        def listen(event: Any, seen: dict[str, Any] = seen, started: float = started) -> None:
            if getattr(event, "route", None) is None or event.route.name != "primary":
                return
            if isinstance(event, AttemptStarted):
                seen["probing"] = seen["probing"] or event.probe
            if isinstance(event, AttemptStarted | ProbeEnded) and time.monotonic() - started < down:
                seen["while_down"] += 1

        router.listeners.append(listen)
        primary.down_for(down)
        paid = 0
        served_by_primary_since: float | None = None
        try:
            while time.monotonic() - started < (7.0 if quick else 9.0):
                t0 = time.monotonic()
                seen["probing"] = False
                result = router.complete(MESSAGES)
                if seen["probing"] and any(a.provider == "primary" and a.outcome == "error" for a in result.attempts):
                    paid += 1  # this caller's request was the probe, and it failed
                if result.provider == "primary" and served_by_primary_since is None and t0 - started > down:
                    served_by_primary_since = t0
                time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))  # 20 calls a second
        finally:
            router.close()
        back_at = (served_by_primary_since - started - down) if served_by_primary_since else float("nan")
        rows.append((mode, paid, seen["while_down"], back_at))
    fig = f"8c down {down:g} s then back, 20 calls/s"
    (_, bg_paid, bg_hits, bg_back), (_, rq_paid, rq_hits, rq_back) = rows
    return [
        Row(fig, "callers that paid a failed probe", f"{bg_paid}", f"{rq_paid} (request)", "",
            "0 (background)", bg_paid == 0),
        Row(fig, "requests to the primary while down", f"{bg_hits}", f"{rq_hits} (request)", ""),
        Row(fig, "back on the primary after recovery", f"{bg_back:.2f} s", f"{rq_back:.2f} s (request)", "",
            "≤ reset_timeout + probe"),
    ]


def _cost(emus: Emulators, quick: bool) -> list[Row]:
    rows: list[Row] = []
    repeats = 10 if quick else 30
    for chunks, label in ((500, "500-chunk stream"), (1, "one-chunk call")):
        server = emus.start("openai", answer(chunks))
        on = make_router(provider("p", server), provider("q", server), hedge={"after": 30.0})
        off = make_router(provider("p", server), provider("q", server))
        loop = asyncio.new_event_loop()
        try:
            a, b = interleave(partial(router_stream, on), partial(router_stream, off), repeats)
            aa, ab = interleave(partial(_in_loop, loop, on), partial(_in_loop, loop, off), repeats)
        finally:
            loop.run_until_complete(on.aclose())
            loop.run_until_complete(off.aclose())
            loop.close()
            on.close()
            off.close()
        fig = f"8d hedge configured, not started, {label}"
        for mode, (x, y) in (("sync", (a, b)), ("asyncio", (aa, ab))):
            rows.append(ratio_row(fig, f"CPU, {mode} (on vs off)", median([s.cpu for s in x]),
                                  median([s.cpu for s in y]), "ms", 1e3, digits=2))
    return rows


def _in_loop(loop: asyncio.AbstractEventLoop, router: Router) -> int:
    return loop.run_until_complete(arouter_stream(router))
