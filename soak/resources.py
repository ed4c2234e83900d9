"""What this process holds right now: threads, descriptors, TCP connections, resident memory (Linux /proc)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

_ESTABLISHED = "01"  # the `st` column of /proc/net/tcp


@dataclass(frozen=True)
class Snapshot:
    threads: tuple[str, ...]  # names, sorted
    fds: int
    established: int  # ESTABLISHED TCP connections whose socket is one of our descriptors
    sockets: int  # socket descriptors, in any state
    rss_kib: int

    def _extra(self, baseline: Snapshot) -> Counter[str]:
        return Counter(self.threads) - Counter(baseline.threads)

    def extra_threads(self, baseline: Snapshot) -> int:
        return sum(self._extra(baseline).values())

    def thread_names(self, baseline: Snapshot) -> str:
        """`name ×count` of the threads beyond `baseline`'s, grouped by name without its number."""
        groups: Counter[str] = Counter()
        for name, n in self._extra(baseline).items():
            groups[name.rstrip("0123456789_-") or name] += n
        return ", ".join(f"{name} ×{n}" for name, n in sorted(groups.items())) or "-"


def _socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listdir and readlink
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _established(inodes: set[str], ignore_ports: Collection[int]) -> int:
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == _ESTABLISHED and fields[9] in inodes and local_port not in ignore_ports:
                count += 1
    return count


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def snapshot(ignore_ports: Collection[int] = ()) -> Snapshot:
    """`ignore_ports`: local ports whose connections are not the router's (the server side of an
    emulator running in this process)."""
    inodes = _socket_inodes()
    return Snapshot(
        threads=tuple(sorted(t.name for t in threading.enumerate())),
        fds=len(os.listdir("/proc/self/fd")),
        established=_established(inodes, ignore_ports),
        sockets=len(inodes),
        rss_kib=_rss_kib(),
    )


def settle(baseline: Snapshot, ignore_ports: Collection[int] = (), wait: float = 2.0) -> Snapshot:
    """A snapshot once threads and descriptors are back to `baseline`, or after `wait` seconds: a thread
    that was told to stop, or a socket being closed, may need a moment."""
    deadline = time.monotonic() + wait
    while True:
        now = snapshot(ignore_ports)
        clean = (now.extra_threads(baseline) == 0 and now.fds <= baseline.fds
                 and now.established <= baseline.established)
        if clean or time.monotonic() >= deadline:
            return now
        time.sleep(0.1)
