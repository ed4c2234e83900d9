"""`failover status`: each provider's breaker as the fleet sees it (from Redis), and what
`failover check` says about the breaker storage."""

from __future__ import annotations

import argparse

from failover.config import Config, ProviderConfig, load_config
from failover.policies.hedge import FirstChunks, hedge_delay
from failover.policies.redis_store import (
    REDIS_MISSING,
    RedisBreakerStore,
    RedisLink,
    SharedSnapshot,
    key_prefix,
    namespace_for,
    redis_available,
)
from failover.redact import mask_url

MEMORY_NOTE = ("storage: memory: the breaker lives in each process's memory, so a fresh process cannot "
               "see it (set breaker.storage: redis://host:6379/0 to share it across processes and see it here)")


def storage_problems(config: Config) -> list[str]:
    """What `failover check` reports about `breaker.storage` (empty when all is well)."""
    if any(p.breaker.storage != "memory" for p in config.providers) and not redis_available():
        return [REDIS_MISSING]
    return []


def unreachable_storages(config: Config) -> list[str]:
    """One line per Redis storage that does not answer a PING (each tried once, with the breaker's
    own short socket timeouts): the router would work, but each process with its own breakers."""
    lines: list[str] = []
    for url in dict.fromkeys(p.breaker.storage for p in config.providers if p.breaker.storage != "memory"):
        link = RedisLink(url)
        try:
            link.client.ping()
        except link.errors as e:
            lines.append(f"breaker storage {mask_url(url)} is unreachable ({type(e).__name__}: {e}): every process "
                         "would use its own in-memory breakers until it answers (docs/fleet.md)")
        finally:
            link.close()
    return lines


def run(args: argparse.Namespace) -> int:
    text, code = status_report(load_config(args.config))
    print(text)
    return code


def _probe(snap: SharedSnapshot) -> str:
    if snap.state == "open":
        return f"in {snap.probe_in:.1f}s" if snap.probe_in > 0 else "due (the next call probes)"
    if snap.state == "half-open":
        if snap.probe_lease is not None:
            return f"in flight (lease ends in {snap.probe_lease:.1f}s)"
        return "due (the next call probes)"
    return "-"


def _first_chunks(p: ProviderConfig, samples: tuple[float, ...] | None) -> tuple[str, str]:
    """The fleet's first-chunk p50/p95 (None: not shared) and the hedge delay they give."""
    hedge = p.hedge
    if samples is None:
        return "(per process)", "off" if hedge is None else f"{hedge.after}" + ("" if hedge.after == "auto" else "s")
    chunks = FirstChunks()
    for seconds in samples:
        chunks.add(seconds)
    p50, p95 = chunks.percentile(50), chunks.percentile(95)
    seen = "-" if p50 is None or p95 is None else f"{p50:.2f}s / {p95:.2f}s ({len(chunks)})"
    if hedge is None:
        return seen, "off"
    delay = hedge_delay(hedge, chunks, p.timeouts.first_token)
    return seen, f"{delay:.2f}s" + (" (auto)" if hedge.after == "auto" else "")


def status_report(config: Config) -> tuple[str, int]:
    """The text `failover status` prints and its exit code (1 when a Redis storage is unusable)."""
    lines = [f"config: {config.source}"]
    problems = storage_problems(config)
    if problems:
        return "\n".join([*lines, *(f"error: {p}" for p in problems)]), 1
    code = 0
    links: dict[str, RedisLink] = {}
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    try:
        for p in config.providers:
            url = p.breaker.storage
            if url == "memory":
                rows.append((p.name, "(per process)", "", "", *_first_chunks(p, None), "memory"))
                if MEMORY_NOTE not in notes:
                    notes.append(MEMORY_NOTE)
                continue
            link = links.get(url)
            if link is None:
                link = links[url] = RedisLink(url)
            prefix = key_prefix(namespace_for(p, config.telemetry.service_name), p.name)
            snap = RedisBreakerStore(link, prefix).snapshot(p.breaker.reset_timeout)
            where = f"{mask_url(url)} {prefix}"
            if snap is None:
                rows.append((p.name, "(unknown)", "", "", "", "", f"{where}: Redis unreachable"))
                code = 1
                continue
            trips = f", opened {snap.trips}x" if snap.trips else ""
            rows.append((p.name, snap.state, f"{snap.failures}/{p.breaker.fail_max}{trips}", _probe(snap),
                         *_first_chunks(p, snap.first_chunks), where))
    finally:
        for link in links.values():
            link.close()
    header = ("provider", "state", "failures", "next probe", "first chunk p50 / p95", "hedge after",
              "storage / keys")
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    lines.extend(notes)
    return "\n".join(line.rstrip() for line in lines), code
