"""`chains:`: named orders over the providers. Its rules, shared by the loader (which reports every
problem with its line) and by `Config` built in code (which raises the first)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from failover.config.fields import NAME_RE
from failover.config.problems import KeyPath, kind_of

# What `chain_problems` enforces, in words (the reference prints it).
CHAIN_RULES = (
    "A chain name follows the rules of provider names; each chain is a non-empty list of provider names, "
    "each named at most once; a name must be one of `providers` (exactly as written there)."
)


def chain_problems(chains: Mapping[str, Any], providers: Mapping[str, str],
                   show: Callable[[KeyPath, Any], str]) -> list[tuple[KeyPath, str]]:
    """Every problem of a `chains:` mapping, at its path below `chains`.

    `providers` maps each provider name to how a message may show it, and `show(path, value)` shows
    a chain's value: a loader never quotes what came from `${VAR}`.
    """
    found: list[tuple[KeyPath, str]] = []
    names = list(providers)
    for name, members in chains.items():
        if not NAME_RE.fullmatch(name):
            found.append(((name,), "a chain name may only contain letters, digits, '_', '.' and '-'"))
        if not isinstance(members, list | tuple):
            found.append(((name,), f"a chain must be a list of provider names (got {kind_of(members)})"))
            continue
        if not members:
            found.append(((name,), "a chain must name at least one provider"))
        first: dict[str, int] = {}
        for index, member in enumerate(members):
            path: KeyPath = (name, index)
            if not isinstance(member, str):
                found.append((path, f"must be a provider name (got {kind_of(member)})"))
            elif member in first:
                found.append((path, f"{show(path, member)} is already in this chain (at [{first[member]}])"))
            elif member not in providers:
                close = difflib.get_close_matches(member, names, n=1, cutoff=0.6)
                close += [p for p in names if p.casefold() == member.casefold()][:1]
                hint = f" (did you mean {providers[close[-1]]}?)" if close else ""
                known = ", ".join(providers.values())
                found.append((path, f"unknown provider {show(path, member)}{hint}; providers: {known}"))
            else:
                first[member] = index
    return found
