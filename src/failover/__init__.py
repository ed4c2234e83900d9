"""failover: stream LLM chat completions through an ordered chain of providers.

The public names are imported on first use (`failover.Router` imports the router, its policies and
pydantic; the SDKs wait until a provider of their type is built), so `import failover`, the CLI's
`--help` and `failover check` start fast. Type checkers see the imports below as usual.
"""

from __future__ import annotations

import importlib
import logging as _logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# The one place the version is written: pyproject.toml reads it from here (tool.setuptools.dynamic).
__version__ = "0.1.0"

# A library logs, the application decides where it goes (and nothing prints by default).
_logging.getLogger("failover").addHandler(_logging.NullHandler())

# public name -> the module that defines it
_WHERE = {
    "AllProvidersFailed": "failover.errors",
    "Attempt": "failover.errors",
    "ConfigError": "failover.errors",
    "FailoverError": "failover.errors",
    "RequestRejected": "failover.errors",
    "StreamInterrupted": "failover.errors",
    "Router": "failover.router",
    "Chunk": "failover.types",
    "Result": "failover.types",
    "ToolCall": "failover.types",
    "ToolCallDelta": "failover.types",
    "Usage": "failover.types",
}

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
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'failover' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
