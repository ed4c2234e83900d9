"""Local OpenAI-compatible and Anthropic servers with scripted faults, for tests, the demo and benchmarks.

    with Emulator("openai") as emu:
        emu.script(steps.rate_limit(retry_after=0.5), steps.cut(after=3))
        client = openai.OpenAI(api_key="k", base_url=emu.base_url, max_retries=0)

Every step, the request rules, the automatic answers and the fault-spec grammar are described in
docs/emulator.md. `python -m failover.emulator --help` runs both emulators from the command line.
"""

from failover.emulator import steps
from failover.emulator.exchange import Record
from failover.emulator.faults import Faults, parse_faults
from failover.emulator.script import Step
from failover.emulator.server import DEFAULT_ANSWER, PREFILL_MESSAGE, Emulator

__all__ = ["DEFAULT_ANSWER", "PREFILL_MESSAGE", "Emulator", "Faults", "Record", "Step", "parse_faults", "steps"]
