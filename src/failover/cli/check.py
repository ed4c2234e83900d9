"""`failover check`: validate a config file, print the resolved chain (keys masked), and say what
would go wrong at run time.

Exit status: 2 for an invalid file (file, line, key path), 1 for errors (no provider has a key, the
`redis` extra is missing), 0 otherwise; warnings (a provider without its key, an unreachable Redis)
are printed and exit 1 only with `--strict`. Nothing slow is imported for a valid file that needs
no SDK and no Redis: pydantic and PyYAML only.
"""

from __future__ import annotations

import argparse
import sys

from failover.config import Config, describe, load_config


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if any(p.params for p in config.providers):
        from failover.providers import check_params  # imports the SDK of each type that has `params`

        check_params(config)
    print(describe(config))
    errors, warnings = problems(config)
    for text in errors:
        print(f"error: {text}", file=sys.stderr)
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr)
    if errors or (args.strict and warnings):
        return 1
    return 0


def problems(config: Config) -> tuple[list[str], list[str]]:
    """What would go wrong at run time: errors (every call would fail, or the router cannot be
    built) and warnings (the router works, but not as configured)."""
    errors: list[str] = []
    warnings: list[str] = []
    unusable = [p.name for p in config.providers if not p.usable]
    if len(unusable) == len(config.providers):
        errors.append("no provider has an API key: every call would fail")
    elif unusable:
        noun = "provider has" if len(unusable) == 1 else "providers have"
        warnings.append(f"{len(unusable)} {noun} no API key and will be skipped: {', '.join(unusable)}")
    if any(p.breaker.storage != "memory" for p in config.providers):
        from failover.cli.status import storage_problems, unreachable_storages  # imports redis

        missing = storage_problems(config)
        errors += missing
        if not missing:
            warnings += unreachable_storages(config)
    return errors, warnings
