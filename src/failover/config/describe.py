"""What `failover check` prints: the resolved chain, keys masked, and why a provider would be skipped."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from failover.config.schema import DEFAULT_CONTINUE_PROMPT, Capabilities, Config, ProviderConfig
from failover.redact import mask_secret, mask_url

_SECRET_PARAM = re.compile(r"key|token|secret|password|passwd|authorization|auth|cookie", re.IGNORECASE)


def _show_params(value: Any, name: str = "") -> str:
    # Headers in params (extra_headers: {x-api-key: ...}) may carry credentials.
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {_show_params(v, str(k))}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show_params(v, name) for v in value) + "]"
    if name and _SECRET_PARAM.search(name):
        return mask_secret(str(value))
    return repr(value) if isinstance(value, str) else str(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"  # as it is written in the YAML


def _fields(model: BaseModel) -> str:
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            shown = "{" + _fields(value) + "}"
        elif value is None and name == "budget":
            shown = "off"
        elif isinstance(value, str):
            shown = mask_url(value)
        elif isinstance(value, float):
            shown = f"{value:g}" if name in ("multiplier", "ratio", "failure_rate") else f"{value:g}s"
        elif value is None and name == "namespace":
            shown = "(derived)"
        else:
            shown = str(value)
        out.append(f"{name}={shown}")
    return " ".join(out)


def _capabilities(caps: Capabilities) -> str:
    shown = [f"{name}={'default' if value is None else _flag(value)}" for name, value in caps]
    return " ".join(shown) + ("  (default: what the provider type supports)" if None in dict(caps).values() else "")


def skip_reason(provider: ProviderConfig) -> str | None:
    """Why the router would skip this provider without a request, or None when it is usable."""
    if provider.usable:
        return None
    if provider.missing_env:
        names = ", ".join(f"${n}" for n in provider.missing_env)
        return f"{names} {'is' if len(provider.missing_env) == 1 else 'are'} not set"
    return "no api_key"


def _key_line(provider: ProviderConfig) -> str:
    reason = skip_reason(provider)
    if reason is None and provider.api_key is not None:
        origin = f" (from ${provider.api_key_env})" if provider.api_key_env else " (literal in config)"
        return mask_secret(provider.api_key.get_secret_value()) + origin
    return f"MISSING: {reason}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _chains(cfg: Config) -> list[str]:
    usable = {p.name for p in cfg.providers if p.usable}
    named = cfg.chains or {"default": tuple(p.name for p in cfg.providers)}
    out = ["chains:" if cfg.chains else "chains: (none configured; the providers' order is the chain 'default')"]
    for name, members in named.items():
        note = "" if usable & set(members) else "  (no usable provider!)"
        out.append(f"  {name}: {' -> '.join(members)}{note}")
    if cfg.chains and "default" not in cfg.chains:
        out.append("  (a call without chain= uses the providers' order)")
    return out


def describe(cfg: Config) -> str:
    """The resolved chain as `failover check` prints it. Never shows a key, only a masked form."""
    out = [f"config: {cfg.source}", "providers, in failover order:"]
    for number, p in enumerate(cfg.providers, 1):
        out.append(f"  {number}. {p.name}  (type {p.type}, model {p.model})")
        rows: list[tuple[str, str]] = [
            ("base_url", mask_url(p.base_url) if p.base_url else "(the provider's default)"),
            ("api_key", _key_line(p)),
            ("max_tokens", str(p.max_tokens) if p.max_tokens is not None else "(none: the call's, if given)"),
            ("retry", _fields(p.retry)),
            ("breaker", _fields(p.breaker)),
            ("timeouts", _fields(p.timeouts)),
            ("capabilities", _capabilities(p.capabilities)),
            ("midstream", f"{p.midstream} supports_prefill={_flag(p.supports_prefill)} "
                          f"failover_on_reject={_flag(p.failover_on_reject)}"),
        ]
        if p.continue_prompt != DEFAULT_CONTINUE_PROMPT:
            rows.append(("continue_prompt", repr(p.continue_prompt)))
        if p.params:
            rows.append(("params", _show_params(p.params)))
        out.extend(f"       {label + ':':<12} {text}" for label, text in rows)
    out.extend(_chains(cfg))
    t = cfg.telemetry
    out.append(f"telemetry: exporter={t.exporter} endpoint={mask_url(t.endpoint)} service_name={t.service_name} "
               f"capture_content={_flag(t.capture_content)}")
    skipped = [f"{p.name} ({reason})" for p in cfg.providers if (reason := skip_reason(p)) is not None]
    total = _count(len(cfg.providers), "provider")
    if skipped:
        usable = len(cfg.providers) - len(skipped)
        out.append(f"{usable} of {total} usable; skipped: {', '.join(skipped)}")
    else:
        out.append(f"all {total} usable" if len(cfg.providers) > 1 else f"{total}, usable")
    return "\n".join(out)
