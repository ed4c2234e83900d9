"""`python -m failover.emulator --kind openai --port 8001`: serve the healthy answer until Ctrl-C."""

from __future__ import annotations

import argparse
import threading

from failover.emulator.server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failover.emulator", description=__doc__)
    parser.add_argument("--kind", choices=["openai", "anthropic"], default="openai")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--answer", help="the text every healthy request gets")
    parser.add_argument("--chunk-delay", type=float, default=0.05, help="seconds between content chunks")
    parser.add_argument("--continuation", choices=["smart", "naive"], default="smart")
    parser.add_argument("--reject-prefill", action="store_true")
    args = parser.parse_args(argv)
    emu = Emulator(args.kind, answer=args.answer, chunk_delay=args.chunk_delay, continuation=args.continuation,
                   reject_prefill=args.reject_prefill, port=args.port)
    with emu:
        print(f"{args.kind} emulator on {emu.base_url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
