"""Figure 4: memory at 1,000 concurrent streams, router against the raw `AsyncOpenAI`.

Each side runs in its own child process (the concurrency worker with `--hold`): after a warm-up stream
it reads its RSS (the baseline: interpreter, SDK, client), starts 1,000 streams, holds each one after
its first chunk until all 1,000 are open, reads its RSS again, then lets them finish. Per-stream memory
is (RSS with all open - baseline) / 1,000; peak RSS is the process's high-water mark (ru_maxrss).
"""

from __future__ import annotations

from benchmarks.common import Emulators, Row, answer, median
from benchmarks.concurrency import alternate

CHUNKS = 10  # the answer's length does not matter here: unread chunks wait in the kernel's socket buffers


def run(emus: Emulators, quick: bool) -> list[Row]:
    server = emus.start("openai", answer(CHUNKS))
    streams = 300 if quick else 1000
    results = alternate(server, "async", streams, repeats=1 if quick else 2, chunks=CHUNKS, hold=True)
    ours, raw = results["router"], results["raw"]
    fig = f"4 memory, {streams} open streams"
    peak, raw_peak = (median([r["rss_peak_kib"] for r in side]) for side in (ours, raw))
    per, raw_per = (median([(r["rss_open_kib"] - r["rss_base_kib"]) / streams for r in side]) for side in (ours, raw))
    base, raw_base = (median([r["rss_base_kib"] for r in side]) for side in (ours, raw))
    r = peak / raw_peak
    return [
        Row(fig, "peak RSS", f"{peak / 1024:.1f} MiB", f"{raw_peak / 1024:.1f} MiB", f"{r:.3f}×", "≤ 1.10×", r <= 1.10),
        Row(fig, "RSS per open stream", f"{per:.1f} KiB", f"{raw_per:.1f} KiB", f"{per / raw_per:.3f}×"),
        Row(fig, "RSS before the streams", f"{base / 1024:.1f} MiB", f"{raw_base / 1024:.1f} MiB",
            f"{base / raw_base:.3f}×"),
    ]
