"""The built-in emulators in a child process, driven by JSON lines on stdin (`python -m benchmarks.serve`).

The client being measured must not share its CPU time (or its GIL) with the server it talks to, so the
emulators run here and the benchmark sends one command per line, reading one JSON reply per line:

    {"op": "start", "kind": "openai", "answer": "...", "chunk_delay": 0}  ->  {"id": 0, "url": "http://..."}
    {"op": "script", "id": 0, "steps": [["server_error", 503]]}           ->  {}   (failover.emulator.steps)
    {"op": "down_for", "id": 0, "seconds": 600}                           ->  {}
    {"op": "chaos", "id": 0, "rate": 0.1, "steps": [["slow_first", 5]]}    ->  {}
    {"op": "count", "id": 0}                                              ->  {"count": <requests received>}
    {"op": "reset", "id": 0}                                              ->  {}
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

from failover.emulator import Emulator, steps


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a thousand concurrent connections
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    emus: list[Emulator] = []
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        reply: dict[str, Any] = {}
        if op == "start":
            emu = Emulator(cmd["kind"], answer=cmd["answer"], chunk_delay=cmd.get("chunk_delay", 0.0)).start()
            emus.append(emu)
            reply = {"id": len(emus) - 1, "url": emu.base_url}
        else:
            emu = emus[cmd["id"]]
            if op == "script":
                emu.script(*(getattr(steps, name)(*args) for name, *args in cmd["steps"]))
            elif op == "chaos":
                faults = [getattr(steps, name)(*args) for name, *args in cmd["steps"]]
                emu.chaos(cmd["rate"], faults, seed=cmd.get("seed"))
            elif op == "down_for":
                emu.down_for(cmd["seconds"])
            elif op == "count":
                reply = {"count": len(emu.requests)}
            elif op == "reset":
                emu.reset()
        print(json.dumps(reply), flush=True)
    for emu in emus:
        emu.stop()


if __name__ == "__main__":
    main()
