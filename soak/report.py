"""The soak's verdict: one table of promises (measured, target, ok/MISSED) and the details behind it."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from soak.phases import FAIL_MAX, TIMEOUTS, BrownoutResult, ChaosResult, OutageResult
from soak.resources import Snapshot
from soak.verdict import Tally

RSS_GROWTH_LIMIT_MIB = 2.0  # per round; a leak of 1 KiB a call shows as ~2 MiB a round (~2,000 calls)
BROWNOUT_TARGET = 0.99
MIB = 1024.0


@dataclass(frozen=True)
class Row:
    check: str
    measured: str
    target: str = ""
    ok: bool | None = None  # None: information, no target


def zero(check: str, count: int, note: str = "") -> Row:
    return Row(check, f"{count:,}{note}", "0", count == 0)


def rss_growth(rounds: list[int]) -> float | None:
    """The median growth from one round to the next, in MiB. Round 1 is a warm-up (caches, pools and
    the allocator's arenas fill up) and the next round may still grow a little; a leak grows every round."""
    if len(rounds) < 3:
        return None
    return statistics.median(b - a for a, b in itertools.pairwise(rounds)) / MIB


def rows(all_calls: Tally, chaos: ChaosResult, brownout: BrownoutResult, outage: OutageResult,
         baseline: Snapshot, closed: Snapshot) -> list[Row]:
    t = all_calls
    total, tol = TIMEOUTS["total"], t.tolerance
    growth = rss_growth([r.after.rss_kib for r in chaos.rounds])
    b = brownout.tally
    rate = b.successes / b.count if b.count else 0.0
    return [
        Row("calls (all phases)", f"{t.count:,} ({t.calls['async']:,} async, {t.calls['sync']:,} sync)"),
        Row("successes", f"{t.successes:,} ({t.successes / max(t.count, 1):.1%})"),
        Row("exact-text successes", f"{t.exact:,}", f"= successes ({t.successes:,})", t.exact == t.successes),
        zero("truncated answer passed off as complete", t.defects["truncated"]),
        zero("duplicated text", t.defects["duplicated"]),
        zero("lost text (a missing middle)", t.defects["lost"]),
        zero("other wrong text", t.defects["garbled"]),
        zero("Result/partial/discard text ≠ streamed text", t.defects["reported ≠ streamed"]),
        zero(f"calls past total {total:g} s + {tol:g} s", t.past_deadline,
             f" (worst overrun {t.worst_overrun:+.2f} s)"),
        zero("  of which hung (abandoned)", t.hung),
        zero("unexpected exception types", len(t.unexpected), f" ({sum(t.unexpected.values()):,} calls)"),
        zero("leaked threads after close", closed.extra_threads(baseline)),
        zero("leaked sockets after close (ESTABLISHED)", max(0, closed.established - baseline.established)),
        zero("leaked fds after close", max(0, closed.fds - baseline.fds)),
        Row("RSS growth per round (chaos, median after round 1)",
            "n/a (fewer than 3 rounds)" if growth is None else f"{growth:+.2f} MiB",
            f"≤ {RSS_GROWTH_LIMIT_MIB:g} MiB", None if growth is None else growth <= RSS_GROWTH_LIMIT_MIB),
        Row("brownout success rate", f"{rate:.2%} of {b.count:,}", f"≥ {BROWNOUT_TARGET:.0%}",
            rate >= BROWNOUT_TARGET),
        Row("outage: requests to the down provider",
            f"{outage.requests:,} ({outage.before_open:,} before its breaker opened, "
            f"{outage.requests - outage.before_open:,} after)",
            f"≤ {outage.bound} (fail_max {FAIL_MAX} + {outage.bound - FAIL_MAX} probes)",
            outage.requests <= outage.bound),
    ]


def table(lines: Iterable[Iterable[str]]) -> str:
    grid = [list(line) for line in lines]
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
    fmt = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in grid]
    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([fmt[0], rule, *fmt[1:]])


def verdict_table(result: list[Row]) -> str:
    marks = {True: "ok", False: "MISSED", None: ""}
    return table([("check", "measured", "target", ""),
                  *((r.check, r.measured, r.target, marks[r.ok]) for r in result)])


def rounds_table(chaos: ChaosResult, baseline: Snapshot, closed: Snapshot) -> str:
    lines = [("round", "seconds", "calls", "ok", "threads beyond baseline", "fds", "ESTABLISHED", "RSS MiB")]
    lines.append(("before", "", "", "", "-", str(baseline.fds), str(baseline.established),
                  f"{baseline.rss_kib / MIB:.1f}"))
    for r in chaos.rounds:
        s = r.after
        lines.append((str(r.index), f"{r.seconds:.1f}", f"{r.calls:,}", f"{r.successes:,}",
                      s.thread_names(baseline), str(s.fds), str(s.established), f"{s.rss_kib / MIB:.1f}"))
    lines.append(("closed", "", "", "", closed.thread_names(baseline), str(closed.fds), str(closed.established),
                  f"{closed.rss_kib / MIB:.1f}"))
    return table(lines)


def top(counter: dict[str, int], n: int = 8) -> str:
    items = sorted(counter.items(), key=lambda kv: -kv[1])
    shown = [f"  {count:>6,}  {key}" for key, count in items[:n]]
    if len(items) > n:
        shown.append(f"  {sum(c for _, c in items[n:]):>6,}  ({len(items) - n} other kinds)")
    return "\n".join(shown) or "  none"


def details(all_calls: Tally, chaos: ChaosResult, brownout: BrownoutResult, outage: OutageResult,
            baseline: Snapshot, closed: Snapshot) -> str:
    out = [f"chaos rounds: resources after each round; the event loop ran up to {chaos.worst_lag:.2f} s late, "
           f"the longest GC pass took {chaos.worst_gc:.2f} s",
           rounds_table(chaos, baseline, closed), ""]
    for name, tally, trips in (("chaos", chaos.tally, chaos.trips), ("brownout", brownout.tally, brownout.trips),
                               ("outage", outage.tally, None)):
        ok = f"{tally.successes:,}/{tally.count:,} ok"
        opened = "" if trips is None else "; breaker opened: " + (
            ", ".join(f"{p} ×{n}" for p, n in trips.items() if n) or "never")
        out += [f"{name}: {ok}{opened}; failures (how each provider ended, in order):", top(tally.failures), ""]
    out.append(f"outage: {outage.seconds:.1f} s from the moment the provider went down until every call had "
               f"ended; one probe per reset_timeout allows {outage.bound - FAIL_MAX} in that time")
    for what, sample in all_calls.samples.items():
        out += ["", f"first {what} call: {sample}"]
    for name, tb in all_calls.tracebacks.items():
        out += ["", f"unexpected {name} ×{all_calls.unexpected[name]}, first traceback:", tb.rstrip()]
    return "\n".join(out)
