"""failover: stream LLM chat completions through an ordered chain of providers."""

import logging as _logging

from failover.errors import (
    AllProvidersFailed,
    Attempt,
    ConfigError,
    FailoverError,
    RequestRejected,
    StreamInterrupted,
)
from failover.router import Router
from failover.types import Chunk, Result, ToolCall, ToolCallDelta, Usage

# A library logs, the application decides where it goes (and nothing prints by default).
_logging.getLogger("failover").addHandler(_logging.NullHandler())

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "Chunk",
    "ConfigError",
    "FailoverError",
    "RequestRejected",
    "Result",
    "Router",
    "StreamInterrupted",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]
