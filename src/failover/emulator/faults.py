"""Compact fault specs: a script of steps in one string, for the command line.

    parse_faults("503x2,ok")                     two 503s, then the healthy answer
    parse_faults("rate_limit:retry_after=1")     a 429 with Retry-After: 1
    parse_faults("down:10s,cut:after=3")         503 to everything for 10 s; the first request after: a cut

Grammar: tokens separated by commas. A token is `NAME[xN][:ARGS]`:
  - NAME is a step of `failover.emulator.steps` (ok, rate_limit, quota, cut, stall, hang, tool_calls, ...,
    the list is `STEPS`), an HTTP status 400-599 (5xx: `server_error(code)`, others and any status with
    `retry_after` / `retry_after_ms`: `status(code, ...)`), or `down` (a down window: every request gets
    a 503 for that long, ahead of the script);
  - `xN` repeats the step N times (`503x2`, `hangx3`);
  - ARGS are the factory's parameters as `name=value`; the first may be given bare (`cut:3`, `down:10s`).
    A comma followed by `name=value` continues the same token's arguments (`stall:after=5,seconds=3`).
Values: whole numbers for counts, seconds as `1.5`, `1.5s` or `1500ms`, words for `how` and `error_type`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failover.emulator import steps
from failover.emulator.script import Step
from failover.emulator.server import Emulator


def _count(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(ms|s)?", value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration (e.g. 2, 1.5s, 500ms)")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "ms" else number


def _word(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_]+", value):
        raise ValueError(f"{value!r} is not a word")
    return value


Param = tuple[str, Callable[[str], Any]]
_SIMPLE = ("quota", "context_length", "content_filter", "bad_request", "overloaded", "auth", "forbidden", "not_found",
           "payment_required", "reset", "hang", "thinking", "only_thinking", "refusal", "unknown_delta")
# step name -> (factory, its parameters in positional order)
STEPS: dict[str, tuple[Callable[..., Step], tuple[Param, ...]]] = {
    **{name: (getattr(steps, name), ()) for name in _SIMPLE},
    "ok": (steps.ok, (("chunk_delay", _seconds),)),
    "rate_limit": (steps.rate_limit, (("retry_after", _seconds), ("retry_after_ms", _seconds))),
    "server_error": (steps.server_error, (("code", _count),)),
    "slow_first": (steps.slow_first, (("delay", _seconds),)),
    "slow_headers": (steps.slow_headers, (("delay", _seconds),)),
    "cut": (steps.cut, (("after", _count), ("how", _word))),
    "stall": (steps.stall, (("after", _count), ("seconds", _seconds))),
    "malformed": (steps.malformed, (("after", _count),)),
    "no_terminal": (steps.no_terminal, (("after", _count),)),
    "inband_error": (steps.inband_error, (("after", _count), ("error_type", _word))),
    "stall_then_close": (steps.stall_then_close, (("after", _count), ("seconds", _seconds))),
    "trickle_headers": (steps.trickle_headers, (("interval", _seconds),)),
    "trickle_body": (steps.trickle_body, (("interval", _seconds),)),
    "echo_key": (steps.echo_key, (("status", _count), ("prefix_len", _count), ("after", _count))),
    "tool_calls": (steps.tool_calls, (("after", _count),)),
}
_STATUS_PARAMS: tuple[Param, ...] = (("retry_after", _seconds), ("retry_after_ms", _seconds))
_HEAD = re.compile(r"(?P<name>[a-z_]+?|\d{3})(?:x(?P<times>\d+))?")
_ARG = re.compile(r"[a-z_]+=.*")


@dataclass(frozen=True)
class Faults:
    """A parsed spec: the steps to script, and an optional down window (seconds) ahead of them."""

    steps: tuple[Step, ...] = ()
    down: float | None = None

    def apply(self, emu: Emulator) -> None:
        if self.down is not None:
            emu.down_for(self.down)
        emu.script(*self.steps)


def parse_faults(spec: str) -> Faults:
    """Parse a fault spec (see the module docstring); ValueError naming the bad token otherwise."""
    out: list[Step] = []
    down: float | None = None
    for token in _tokens(spec):
        try:
            head, _, args = token.partition(":")
            match = _HEAD.fullmatch(head)
            if match is None:
                raise ValueError(f"{head!r} is not a step name or an HTTP status")
            name, times = match.group("name"), int(match.group("times") or 1)
            if times < 1:
                raise ValueError("a repeat count must be at least 1")
            if name == "down":
                if down is not None:
                    raise ValueError("only one down window per spec")
                down = _seconds(_single(args, "down needs a duration, e.g. down:10s"))
                continue
            out.extend([_step(name, args)] * times)
        except (ValueError, TypeError) as e:
            raise ValueError(f"fault spec {spec!r}: bad token {token!r}: {e}") from None
    return Faults(tuple(out), down)


def _tokens(spec: str) -> list[str]:
    """Split on commas, gluing `name=value` pieces to the token before them."""
    tokens: list[str] = []
    for piece in (p.strip() for p in spec.split(",")):
        if not piece:
            if spec.strip():
                raise ValueError(f"fault spec {spec!r}: empty token")
            continue
        if tokens and _ARG.fullmatch(piece) and ":" in tokens[-1]:
            tokens[-1] += "," + piece
        else:
            tokens.append(piece)
    return tokens


def _single(args: str, message: str) -> str:
    if not args or "," in args or "=" in args:
        raise ValueError(message)
    return args


def _step(name: str, args: str) -> Step:
    if name.isdigit():
        code = int(name)
        if not 400 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP error status (400-599)")
        kwargs = _arguments(args, _STATUS_PARAMS, name)
        # server_error has the providers' own 5xx wording; status() is the one that takes Retry-After.
        return steps.server_error(code) if code >= 500 and not kwargs else steps.status(code, **kwargs)
    if name not in STEPS:
        raise ValueError(f"unknown step {name!r} (known: {', '.join(sorted(STEPS))}, down, or a status code)")
    factory, params = STEPS[name]
    return factory(**_arguments(args, params, name))


def _arguments(args: str, params: tuple[Param, ...], name: str) -> dict[str, Any]:
    known = dict(params)
    out: dict[str, Any] = {}
    for i, arg in enumerate(a for a in args.split(",") if args):
        key, eq, value = arg.partition("=")
        if not eq:  # a bare value: the first parameter
            if i or not params:
                raise ValueError(f"{arg!r}: only the first argument may be given without a name")
            key, value = params[0][0], arg
        if key not in known:
            accepted = ", ".join(known) or "no arguments"
            raise ValueError(f"{name} has no argument {key!r} (it takes {accepted})")
        if key in out:
            raise ValueError(f"argument {key!r} given twice")
        out[key] = known[key](value.strip())
    return out
