"""Figure 5: how long failing over takes, against doing the same by hand with the raw SDK.

The primary refuses one request (a 503, a reset before any byte, or a cut after 5 chunks); the router
(no retries on the primary, so no backoff) moves to the fallback. The raw side does what a careful
caller of the SDK would: catch the error and open a new stream on the fallback (after a cut, with the
text received so far, as the router's resume does). Its two phases are timed apart:

    raw:    start --(primary refuses)--> error --(open fallback)--> first chunk
    router: start ------------------------------------------------> first fallback chunk

so the router's failover latency (error -> first fallback chunk) is the median of its total minus the
median raw refusal time, compared with the median raw time to reopen. Then the skip of an open breaker, timed directly:
the planner's actions up to the fallback's admission (as the driver performs them, events to telemetry
included) over [open primary, fallback], against the same over [fallback] alone.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.common import (
    MESSAGES,
    Emulators,
    Row,
    answer,
    interleave,
    make_router,
    median,
    provider,
    raw_client,
    raw_open,
    raw_text,
)
from failover import Router
from failover.planner import Planner
from failover.validate import build_request

FAULTS = {
    "503": ("server_error", 503),
    "reset": ("reset",),
    "cut after 5 chunks": ("cut", 5),
}
CONTINUE = "Continue exactly where your previous message stopped."
DECIDE_CALLS = 20_000


def run(emus: Emulators, quick: bool) -> list[Row]:
    primary, fallback = emus.start("openai", answer(20)), emus.start("openai", answer(20))
    router = make_router(provider("primary", primary, retry={"max_attempts": 1}), provider("fallback", fallback),
                         breaker={"fail_max": 1_000_000})  # this part measures failover, not the breaker
    raw_primary, raw_fallback = raw_client(primary), raw_client(fallback)
    rows: list[Row] = []
    try:
        for name, step in FAULTS.items():
            rows.append(_failover(name, step, primary, router, raw_primary, raw_fallback, 10 if quick else 40))
        rows += _open_breaker(primary, fallback, raw_fallback, 200 if quick else 1000)
    finally:
        router.close()
        raw_primary.close()
        raw_fallback.close()
    return rows


def _router_once(router: Router) -> float:
    """Seconds from the call to the first chunk of the fallback (the stream is read to its end)."""
    first = 0.0
    started = time.perf_counter()
    with router.stream(MESSAGES) as stream:
        for chunk in stream:
            if not first and chunk.provider == "fallback":
                first = time.perf_counter() - started
    assert first, "the fallback never served"
    return first


def _raw_once(raw_primary: Any, raw_fallback: Any) -> tuple[float, float]:
    """(seconds until the primary's error, seconds from the error to the fallback's first chunk)."""
    received: list[str] = []
    started = time.perf_counter()
    try:
        with raw_open(raw_primary, "openai") as events:
            for event in events:
                if text := raw_text(event, "openai"):
                    received.append(text)
    except Exception:
        failed = time.perf_counter()
    else:
        raise AssertionError("the primary did not fail")
    messages = MESSAGES
    if received:
        messages = [*MESSAGES, {"role": "assistant", "content": "".join(received)},
                    {"role": "user", "content": CONTINUE}]
    first = 0.0
    with raw_open(raw_fallback, "openai", messages) as events:
        for event in events:
            if not first and raw_text(event, "openai"):
                first = time.perf_counter() - failed
    return failed - started, first


def _failover(name: str, step: tuple[Any, ...], primary: Any, router: Router, raw_primary: Any,
              raw_fallback: Any, repeats: int) -> Row:
    ours: list[float] = []
    refuse: list[float] = []
    reopen: list[float] = []
    for i in range(repeats + 3):  # the first 3 rounds warm up
        for side in ("router", "raw") if i % 2 == 0 else ("raw", "router"):
            primary.script(step)
            if side == "router":
                ours.append(_router_once(router))
            else:
                a, b = _raw_once(raw_primary, raw_fallback)
                refuse.append(a)
                reopen.append(b)
    ours, refuse, reopen = ours[3:], refuse[3:], reopen[3:]
    latency, raw_latency = median(ours) - median(refuse), median(reopen)
    extra = latency - raw_latency
    return Row(f"5 failover on {name}", "refusal → fallback's 1st chunk", f"{latency * 1e3:.2f} ms",
               f"{raw_latency * 1e3:.2f} ms", f"{extra * 1e3:+.2f} ms", "≤ +5 ms", extra <= 0.005)


def _open_breaker(primary: Any, fallback: Any, raw_fallback: Any, repeats: int) -> list[Row]:
    """Open the primary's breaker with real failures, then time what skipping it costs."""
    router = make_router(provider("primary", primary, retry={"max_attempts": 1}), provider("fallback", fallback),
                         breaker={"fail_max": 3, "reset_timeout": 3600})
    try:
        for _ in range(3):
            primary.script(("server_error", 503))
            router.complete(MESSAGES)
        assert router.breaker("primary").state == "open"
        request = build_request(MESSAGES)

        def decide(routes: list[Any]) -> float:
            """Seconds per call for a fresh planner to get to the fallback's admission, the open
            primary's skip included when it is in `routes`."""
            started = time.perf_counter()
            for _ in range(DECIDE_CALLS):
                now = time.monotonic()
                planner, observer = Planner(routes, request, now=now), router.telemetry.observer()
                action: Any = planner.next(now)
                while action.route.name != "fallback":
                    planner.admitted(action.route.breaker.admit(now), now)
                    action = planner.next(now)
                for event in planner.take_events():
                    observer.handle(event)
            return (time.perf_counter() - started) / DECIDE_CALLS

        timings: list[tuple[float, float]] = [(decide(router.routes), decide(router.routes[1:])) for _ in range(5)]
        with_skip, without = median([t[0] for t in timings]), median([t[1] for t in timings])

        # The same in context: a whole call that skips the open primary, against the raw SDK
        # calling the fallback directly.
        ours, raw = interleave(lambda: router.complete(MESSAGES), lambda: _drain(raw_fallback), repeats)
        skip = with_skip - without
        wall, raw_wall = median([s.wall for s in ours]), median([s.wall for s in raw])
    finally:
        router.close()
    fig = "5 open breaker"
    return [
        Row(fig, "skip: planner cost", f"{skip * 1e6:.1f} µs", "", f"{with_skip * 1e6:.1f} vs "
            f"{without * 1e6:.1f} µs", "< 50 µs", skip < 50e-6),
        Row(fig, "whole call, primary skipped", f"{wall * 1e6:,.0f} µs", f"{raw_wall * 1e6:,.0f} µs",
            f"{(wall - raw_wall) * 1e6:+,.0f} µs"),
    ]


def _drain(client: Any) -> None:
    with raw_open(client, "openai") as events:
        for _ in events:
            pass
