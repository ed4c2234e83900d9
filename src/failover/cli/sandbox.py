"""`failover try`: your config's chain and settings against local emulated providers, with the
faults you choose, in one command and without API keys.

Every provider of the config gets its own emulator of its type (`failover.emulator`); its
`base_url` and `api_key` become the emulator's and its breaker storage `memory` (a sandbox must not
move a fleet's shared breakers). Everything else (retries, breaker, timeouts, midstream, chains,
telemetry) is the config's, so what `try` shows is what the router would decide in production.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

import yaml

from failover.cli.emulate import fault_specs
from failover.cli.printer import WEATHER, Printer, settings_line
from failover.config import Config, load_config, parse_config
from failover.emulator import DEFAULT_ANSWER, Emulator, parse_faults
from failover.errors import ConfigError
from failover.router import Router

DEFAULT_CONFIG = "config.yaml"
# No config file at hand: the README's chain, with the built-in defaults.
BUILT_IN: dict[str, Any] = {"providers": [
    {"name": "openai", "type": "openai", "model": "gpt-4o", "api_key": "emulator"},
    {"name": "anthropic", "type": "anthropic", "model": "claude-sonnet-4-5", "api_key": "emulator",
     "max_tokens": 1024},
]}


def run(args: argparse.Namespace) -> int:
    if args.calls < 1:
        raise ConfigError(f"--calls must be at least 1, not {args.calls}")
    if args.chunk_delay < 0:
        raise ConfigError(f"--chunk-delay must be >= 0, not {args.chunk_delay}")
    source, mapping = _mapping(args.config)
    for override in args.overrides:
        apply_override(mapping, override)
    checked = parse_config(mapping, source=source)  # the overrides too, before anything starts
    try:
        specs = fault_specs(args.fault, [provider.name for provider in checked.providers])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    p = Printer(sys.stdout, sys.stdout.isatty())
    with contextlib.ExitStack() as stack:
        emus = {provider.name: stack.enter_context(Emulator(provider.type, chunk_delay=args.chunk_delay))
                for provider in checked.providers}
        config = parse_config(emulated(mapping, {n: e.base_url for n, e in emus.items()}), source=source)
        memory = None
        if args.trace:
            from failover.cli.trace import capture

            memory = capture(config.telemetry)
        router = stack.enter_context(Router(config))
        for name, spec in specs.items():
            parse_faults(spec).apply(emus[name])
        _header(p, config, emus, specs)
        router.listeners.append(p.on_event)
        messages = [{"role": "user", "content": args.prompt}]
        served = 0
        for n in range(1, args.calls + 1):
            p.heading(f"call {n} of {args.calls}" if args.calls > 1 else "the call")
            result = p.call(router, messages, **({"tools": [WEATHER]} if args.tools else {}))
            if result is not None:
                served += 1
                p.whole(result, DEFAULT_ANSWER)
        received = ", ".join(f"{name} {len(emu.requests)}" for name, emu in emus.items())
        p.line(f"\n{served} of {args.calls} calls served; requests each emulated provider received: {received}")
        if memory is not None:
            from failover.cli.trace import format_trace
            from failover.telemetry.sdk import flush_telemetry

            flush_telemetry()
            p.line(format_trace(memory.get_finished_spans()))
    return 0 if served == args.calls else 1


def _mapping(path: str | None) -> tuple[str, dict[str, Any]]:
    """The config to emulate, as plain data: the file (checked first, so that an error names its line),
    ./config.yaml when no file is given and it exists, else the built-in chain."""
    if path is None and not Path(DEFAULT_CONFIG).is_file():
        return "<built-in: openai, anthropic>", {"providers": [dict(p) for p in BUILT_IN["providers"]]}
    path = path or DEFAULT_CONFIG
    load_config(path)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    assert isinstance(data, dict)  # load_config accepted it
    return path, data


def apply_override(mapping: dict[str, Any], override: str) -> None:
    """`--set KEY=VALUE`: a dotted key path (a provider by its name or index) and a YAML value."""
    key, eq, text = override.partition("=")
    if not eq or not key:
        raise ConfigError(f"--set {override!r}: write KEY=VALUE, e.g. defaults.timeouts.idle=2")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {override!r}: the value is not YAML ({e})") from None
    node: Any = mapping
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = _index(node, part)
            if index is None:
                raise ConfigError(f"--set {override!r}: no entry {part!r} in {'.'.join(parts[:i])} "
                                  "(give a provider's name or its index from 0)")
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            elif not isinstance(node.get(part), (dict, list)):
                node[part] = {}  # absent, or a section whose keys are all commented out
            node = node[part]
        else:
            raise ConfigError(f"--set {override!r}: {'.'.join(parts[:i])} is a value, not a section")


def _index(entries: list[Any], part: str) -> int | None:
    if part.isdigit():
        return int(part) if int(part) < len(entries) else None
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("name") == part:
            return i
    return None


def emulated(mapping: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
    """The config with each provider pointed at its emulator, with any key, and per-process breakers."""
    providers = []
    for entry in mapping["providers"]:
        breaker = entry.get("breaker") if isinstance(entry.get("breaker"), dict) else {}
        providers.append({**entry, "base_url": urls[entry["name"]], "api_key": "emulator",
                          "breaker": {**breaker, "storage": "memory"}})
    return {**mapping, "providers": providers}


def _header(p: Printer, config: Config, emus: dict[str, Emulator], faults: dict[str, str]) -> None:
    p.line(f"failover try: {config.source}, each provider on a local emulator (no API keys, nothing leaves "
           "this machine)")
    for provider in config.providers:
        p.line(f"  {settings_line(provider)}")
        p.line(f"    emulated at {emus[provider.name].base_url}; faults: {faults.get(provider.name, 'none')}")
