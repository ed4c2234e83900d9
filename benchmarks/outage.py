"""Figure 6: load on a provider that is down. 10,000 calls while the primary answers every request with
a 503 (`Emulator.down_for`), the breaker on (fail_max 5, reset_timeout 1 s) and retries without backoff.

The router's primary should receive at most fail_max requests, plus one probe per reset_timeout of the
run. The raw side is the same failover written by hand with the SDK (primary, then fallback): it has no
breaker, so every call hits the primary; it runs on fewer calls, as its count is one per call.
"""

from __future__ import annotations

import time

from benchmarks.common import MESSAGES, Emulators, Row, answer, make_router, provider, raw_client, raw_open

FAIL_MAX, RESET_TIMEOUT = 5, 1.0


def run(emus: Emulators, quick: bool) -> list[Row]:
    calls = 1_000 if quick else 10_000
    raw_calls = min(calls, 1_000)
    primary, fallback = emus.start("openai", answer(1)), emus.start("openai", answer(1))
    primary.down_for(3600)
    router = make_router(provider("primary", primary), provider("fallback", fallback),
                         retry={"max_attempts": 3, "initial_backoff": 0.0, "max_backoff": 0.0},
                         breaker={"fail_max": FAIL_MAX, "reset_timeout": RESET_TIMEOUT})
    try:
        started = time.monotonic()
        for _ in range(calls):
            assert router.complete(MESSAGES).provider == "fallback"
        elapsed = time.monotonic() - started
    finally:
        router.close()
    hits = primary.count()
    primary.reset()
    primary.down_for(3600)

    raw_primary, raw_fallback = raw_client(primary), raw_client(fallback)
    raw_started = time.monotonic()
    for _ in range(raw_calls):
        try:
            with raw_open(raw_primary, "openai") as events:
                for _event in events:
                    pass
        except Exception:
            with raw_open(raw_fallback, "openai") as events:
                for _event in events:
                    pass
    raw_elapsed = time.monotonic() - raw_started
    raw_per_call = primary.count() / raw_calls
    raw_primary.close()
    raw_fallback.close()
    primary.reset()

    bound = FAIL_MAX + int(elapsed // RESET_TIMEOUT)
    fig = f"6 outage, {calls:,} calls"
    return [
        Row(fig, "requests to the down primary", f"{hits:,}", f"{raw_per_call * calls:,.0f}",
            f"{hits / calls:.4f} per call", f"≤ {FAIL_MAX} + 1/{RESET_TIMEOUT:g} s = {bound}", hits <= bound),
        Row(fig, "wall / call", f"{elapsed / calls * 1e6:,.0f} µs", f"{raw_elapsed / raw_calls * 1e6:,.0f} µs",
            f"{elapsed / calls / (raw_elapsed / raw_calls):.3f}×"),
    ]
