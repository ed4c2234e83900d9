"""Figure 7: start-up. How long a fresh process takes to `import failover`, to import the router (what
`from failover import Router` costs), to print `failover --help` and to run `failover check` on the
repository's config.yaml, each against a reference that runs on the same machine in the same run.

Each command is a fresh `python` process (the venv's interpreter, `-m failover.cli` for the command
line), run `repeats` times in rotation after one warm-up round (so the files are in the page cache and
drift hits every command alike); the median wall time is reported. The CLI targets (0.5 s) are absolute
wall times; the ratio to `python -c pass` (the interpreter's own start) shows how much of it is ours.
`import failover` is compared with `import openai`, which it used to include.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Emulators, Row, median

ROOT = Path(__file__).resolve().parent.parent
CLI_TARGET = 0.5  # seconds, wall, on 2 cores (issue 14)
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import openai": ["-c", "import openai"],
    "import failover": ["-c", "import failover"],
    "from failover import Router": ["-c", "from failover import Router"],
    "failover --help": ["-m", "failover.cli", "--help"],
    "failover check config.yaml": ["-m", "failover.cli", "check", "config.yaml"],
}


def timings(repeats: int) -> dict[str, float]:
    """Median wall seconds of each command, a fresh process per run."""
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "ANTHROPIC_API_KEY": "sk-bench"}  # check exits 0
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for round_ in range(repeats + 1):
        for name, args in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
            if round_:  # round 0 warms the page cache
                samples[name].append(time.perf_counter() - started)
    return {name: median(values) for name, values in samples.items()}


def run(emus: Emulators | None, quick: bool) -> list[Row]:
    """`emus` is unused: every command is a fresh process of its own."""
    t = timings(5 if quick else 15)
    base = t["python -c pass"]
    fig = "7 start-up, fresh process"
    rows = [Row(fig, "import failover", _ms(t["import failover"]), _ms(t["import openai"]) + " (import openai)",
                f"{t['import failover'] / t['import openai']:.3f}×")]
    rows.append(Row(fig, "from failover import Router", _ms(t["from failover import Router"]),
                    _ms(t["import openai"]) + " (import openai)",
                    f"{t['from failover import Router'] / t['import openai']:.3f}×"))
    for name in ("failover --help", "failover check config.yaml"):
        rows.append(Row(fig, name, _ms(t[name]), _ms(base) + " (python -c pass)", f"{t[name] / base:.1f}×",
                        f"< {CLI_TARGET * 1000:.0f} ms", t[name] < CLI_TARGET))
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


if __name__ == "__main__":  # `python -m benchmarks.startup`: this figure alone, without the emulators
    from benchmarks.common import print_table

    print_table(run(None, "--quick" in sys.argv))
