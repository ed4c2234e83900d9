"""The emulators the router talks to, in a child process (default) or in this one.

In a child process (`python -m soak.emulators`, driven by JSON lines on stdin) the emulators' event
loop has a core and a GIL of its own, and every socket, thread and descriptor the soak counts in this
process is the router's. `--emulators inprocess` runs the same dispatcher here, to compare.

Commands and replies (one JSON object per line):

    {"op": "start", "kind": "openai", "answer": "...", "chunk_delay": 0.05} -> {"id": 0, "url": "...", "port": 0}
    {"op": "chaos", "id": 0, "rate": 0.3, "faults": [["cut", {"after": 2}]], "seed": 1} -> {}
    {"op": "down_for", "id": 0, "seconds": 30}                              -> {}
    {"op": "times", "id": 0}     -> {"times": [monotonic time of every request received]}
    {"op": "reset", "id": 0}                                                -> {}
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from failover.emulator import Emulator, steps
from soak.faults import FaultSpec

Where = Literal["child", "inprocess"]


class Dispatcher:
    """Runs the commands above on real `Emulator`s; the same code serves both placements."""

    def __init__(self) -> None:
        self.emulators: list[Emulator] = []

    def __call__(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "start":
            emu = Emulator(cmd["kind"], answer=cmd["answer"], chunk_delay=cmd["chunk_delay"]).start()
            self.emulators.append(emu)
            return {"id": len(self.emulators) - 1, "url": emu.base_url, "port": emu.port}
        emu = self.emulators[cmd["id"]]
        if op == "chaos":
            faults = [getattr(steps, name)(**kwargs) for name, kwargs in cmd["faults"]]
            emu.chaos(cmd["rate"], faults, seed=cmd["seed"])
        elif op == "down_for":
            emu.down_for(cmd["seconds"])
        elif op == "times":
            return {"times": [r.time for r in emu.requests]}
        elif op == "reset":
            emu.reset()
        else:
            raise ValueError(f"unknown emulator command {op!r}")
        return {}

    def stop(self) -> None:
        for emu in self.emulators:
            emu.stop()


@dataclass
class Server:
    """One running emulator, as the soak sees it."""

    kind: str
    url: str
    port: int
    id: int
    fleet: Fleet

    def chaos(self, rate: float, faults: Sequence[FaultSpec], seed: int) -> None:
        self.fleet.call(op="chaos", id=self.id, rate=rate, faults=[list(f) for f in faults], seed=seed)

    def down_for(self, seconds: float) -> None:
        self.fleet.call(op="down_for", id=self.id, seconds=seconds)

    def request_times(self) -> list[float]:
        """When each request arrived (time.monotonic(), the same clock in every process of the machine)."""
        return [float(t) for t in self.fleet.call(op="times", id=self.id)["times"]]

    def reset(self) -> None:
        self.fleet.call(op="reset", id=self.id)


class Fleet:
    """The emulators of one soak run."""

    def __init__(self, where: Where) -> None:
        self.where = where
        self._local: Dispatcher | None = None
        self._proc: subprocess.Popen[str] | None = None
        if where == "inprocess":
            self._local = Dispatcher()
        else:
            self._proc = subprocess.Popen([sys.executable, "-m", "soak.emulators"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, **cmd: Any) -> dict[str, Any]:
        if self._local is not None:
            return self._local(cmd)
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(cmd) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator process died (exit code {self._proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def start(self, kind: str, answer: str, chunk_delay: float) -> Server:
        reply = self.call(op="start", kind=kind, answer=answer, chunk_delay=chunk_delay)
        return Server(kind, reply["url"], reply["port"], reply["id"], self)

    def close(self) -> None:
        if self._local is not None:
            self._local.stop()
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(30)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_fd_limit() -> None:
    """A thousand concurrent streams need more descriptors than the usual soft limit of 1,024."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    raise_fd_limit()
    dispatch = Dispatcher()
    try:
        for line in sys.stdin:
            print(json.dumps(dispatch(json.loads(line))), flush=True)
    finally:
        dispatch.stop()


if __name__ == "__main__":
    main()
