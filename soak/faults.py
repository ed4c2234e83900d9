"""The faults the soak injects, as plain `(factory name, keyword arguments)` specs of
`failover.emulator.steps`, so they can cross the pipe to the emulators' child process.

Delays are chosen against the soak's timeouts (`first_token` 2 s, `idle` 2 s): every silent fault lasts
longer than the timeout that must catch it, so none of them can end as a healthy answer by luck.
Mid-answer faults strike at several places of the 29-chunk answer, early, late and at its very end.
"""

from __future__ import annotations

from typing import Any

FaultSpec = tuple[str, dict[str, Any]]

# Every family the router must survive, each with equal weight (chaos picks one uniformly).
CHAOS: tuple[FaultSpec, ...] = (
    # status errors
    ("rate_limit", {"retry_after": 1}),  # 429 with Retry-After: 1 (a floor for the backoff)
    ("server_error", {"code": 500}),
    ("server_error", {"code": 503}),
    ("server_error", {"code": 529}),
    ("overloaded", {}),  # OpenAI 503 / Anthropic 529 with each provider's own body
    # connection-level
    ("reset", {}),  # RST before any response byte
    ("hang", {}),  # request read, never answered: first_token must fire
    ("slow_headers", {"delay": 3.0}),  # nothing for 3 s: first_token must fire on the header wait
    ("slow_first", {"delay": 3.0}),  # headers at once, first chunk after 3 s
    # mid-answer
    ("cut", {"after": 2, "how": "close"}),
    ("cut", {"after": 20, "how": "reset"}),
    ("stall", {"after": 8, "seconds": 3.0}),  # silence past idle, then the rest (must not be used)
    ("malformed", {"after": 5}),
    ("inband_error", {"after": 12}),
    ("no_terminal", {"after": 4}),
    ("no_terminal", {}),  # the whole answer, then a clean end without the terminal event
)

# A brownout: fast failures of the kind a busy provider returns, no silence. The phase measures what
# retries, failover and the breaker make of them, not how long timeouts take.
BROWNOUT: tuple[FaultSpec, ...] = (
    ("rate_limit", {"retry_after": 1}),
    ("server_error", {"code": 500}),
    ("server_error", {"code": 503}),
    ("overloaded", {}),
    ("reset", {}),
)
