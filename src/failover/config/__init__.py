"""YAML (or a mapping) → a validated, typed, frozen `Config`.

Everything that can be wrong with a configuration is found at load and reported in one
`ConfigError` that names the file, the line and the key path of every problem. Afterwards the
router and the policies only read plain typed data and never validate again.

- `schema`: the models (`fields`: their value types and checks; `chains`: the rules of `chains:`).
- `source`: YAML text or a caller's mapping → plain data, and the line of every key path.
- `env`: `${VAR}` / `${VAR:-default}` interpolation.
- `checks`: document shape, unknown keys, environment; `load`: the pipeline, `parse_config`, `load_config`.
- `problems`: key paths, lines, and the one ConfigError listing every problem.
- `describe`: what `failover check` prints; `reference`: docs/configuration.md's reference section.
"""

from failover.config.describe import describe
from failover.config.load import load_config, parse_config
from failover.config.problems import KeyPath
from failover.config.schema import (
    BreakerSettings,
    Capabilities,
    Config,
    HedgeSettings,
    ProviderConfig,
    ProviderSettings,
    RetryBudgetSettings,
    RetrySettings,
    TelemetrySettings,
    TimeoutSettings,
)
from failover.redact import mask_secret

__all__ = [
    "BreakerSettings",
    "Capabilities",
    "Config",
    "HedgeSettings",
    "KeyPath",
    "ProviderConfig",
    "ProviderSettings",
    "RetryBudgetSettings",
    "RetrySettings",
    "TelemetrySettings",
    "TimeoutSettings",
    "describe",
    "load_config",
    "mask_secret",
    "parse_config",
]
