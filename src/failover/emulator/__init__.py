"""Local OpenAI-compatible and Anthropic servers with scripted faults, for tests, the demo and benchmarks.

    with Emulator("openai") as emu:
        emu.script(steps.rate_limit(retry_after=0.5), steps.cut(after=3))
        client = openai.OpenAI(api_key="k", base_url=emu.base_url, max_retries=0)
"""

from failover.emulator import script as steps
from failover.emulator.script import Step
from failover.emulator.server import DEFAULT_ANSWER, PREFILL_MESSAGE, Emulator, Record

__all__ = ["DEFAULT_ANSWER", "PREFILL_MESSAGE", "Emulator", "Record", "Step", "steps"]
