"""What `failover demo` and `failover try` print while calls run: the streamed text, one line per
attempt and per breaker change as they happen (from `router.listeners`), and the settings behind
every decision."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from failover.config import ProviderConfig
from failover.errors import Attempt, FailoverError
from failover.events import AttemptEnded, AttemptStarted, BreakerChanged, CallEnded, Event, ProbeEnded, ProviderSkipped
from failover.policies.breaker import Change
from failover.types import Chunk, Result, ToolCall

if TYPE_CHECKING:
    from failover.router import Router

HALF_OPEN = "half-open"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def settings_line(p: ProviderConfig) -> str:
    """The settings of one provider that decide retries, the breaker and timeouts, on one line."""
    r, b, t = p.retry, p.breaker, p.timeouts
    return (f"{p.name} ({p.type}, {p.model}): max_attempts={r.max_attempts} "
            f"backoff={r.initial_backoff:g}-{r.max_backoff:g}s x{r.multiplier:g} "
            f"max_retry_after={r.max_retry_after:g}s; "
            f"breaker fail_max={b.fail_max} reset_timeout={b.reset_timeout:g}s; "
            f"timeouts first_token={t.first_token:g}s idle={t.idle:g}s total={t.total:g}s; midstream={p.midstream}")


class Printer:
    """Writes one call's story. Install `on_event` in `router.listeners`, then `chunk()` each chunk.

    A breaker change is printed after the line of the attempt whose verdict caused it (the planner
    reports it just before that attempt ends); `open -> half-open` is printed when it happens, since
    it is what lets the probe attempt through.
    """

    def __init__(self, out: TextIO, color: bool) -> None:
        self.out = out
        self.color = color
        self.midline = False  # streamed text is on the current line
        self.provider = ""  # whose text is being printed
        self._held: list[Change] = []
        self._lock = threading.Lock()
        self._probes: list[ProbeEnded] = []

    def line(self, text: str = "") -> None:
        if self.midline:
            self.out.write("\n")
            self.midline = False
        self.out.write(text + "\n")
        self.out.flush()

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def heading(self, text: str) -> None:
        self.line("\n" + self.paint(f"== {text}", "1"))

    def note(self, text: str) -> None:
        self.line(self.paint(f"   {text}", "2"))

    def attempt(self, a: Attempt) -> None:
        code = {"ok": "32", "error": "31", "skipped": "33"}[a.outcome]
        self.line("   " + self.paint(a.line(), code))

    def breaker(self, c: Change) -> None:
        why = f" ({c.why})" if c.why else ""
        self.line(self.paint(f"   breaker {c.provider}: {c.old} -> {c.new}{why}", "35"))

    def on_event(self, event: Event) -> None:
        """A `router.listeners` entry."""
        if isinstance(event, BreakerChanged):
            if event.change.new == HALF_OPEN:
                self.breaker(event.change)
            else:
                self._held.append(event.change)
        elif isinstance(event, (AttemptEnded, ProviderSkipped)):
            self.attempt(event.attempt)
            self._flush()
        elif isinstance(event, (AttemptStarted, CallEnded)):
            self._flush()
        elif isinstance(event, ProbeEnded):  # from the probe's own thread: printed by the caller's thread
            with self._lock:
                self._probes.append(event)

    def background(self) -> None:
        """Print the background probes that ended since the last call (they run in threads of their
        own, and would cut through a streaming line)."""
        with self._lock:
            probes, self._probes = self._probes, []
        for event in probes:
            how = "answered" if event.error_type is None else f"failed: {event.error_type}"
            self.line(self.paint(f"   background probe of {event.route.name} (the router's own request): {how} "
                                 f"in {event.duration_s:.2f}s", "36"))
            for change in event.judgement.changes:
                self.breaker(change)

    def _flush(self) -> None:
        held, self._held = self._held, []
        for change in held:
            self.breaker(change)

    def chunk(self, chunk: Chunk) -> None:
        if chunk.restart:
            self.note(f"[{chunk.provider} starts the answer over (chunk.restart): the caller drops what it had]")
        pieces = [chunk.text] if chunk.text else []
        for delta in chunk.tool_calls:  # a tool call as it streams: its name, then its argument fragments
            pieces += [f"tool call {delta.name} " if delta.name else "", delta.arguments]
        if any(pieces):
            if chunk.provider != self.provider or not self.midline:
                self.provider = chunk.provider
                self.text(f"   [{chunk.provider}] ")
            self.text("".join(pieces))

    def text(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self.midline = True

    def call(self, router: Router, messages: list[dict[str, Any]], **params: Any) -> Result | None:
        """One call through `router`, printed as it goes; None when it failed (the error is printed)."""
        t0 = time.monotonic()
        try:
            with router.stream(messages, **params) as stream:
                for chunk in stream:
                    self.chunk(chunk)
                result = stream.result
        except FailoverError as e:
            self.line(self.paint(f"   {type(e).__name__}: {str(e).splitlines()[0]}", "31"))
            return None
        finally:
            self.background()
        self.result(result, time.monotonic() - t0)
        return result

    def result(self, result: Result, seconds: float) -> None:
        for call in result.tool_calls:
            self.note(f"result.tool_calls: {tool_call_text(call)}")
        self.note(f"served by {result.provider} in {seconds:.2f}s, finish_reason={result.finish_reason}")

    def whole(self, result: Result, expected: str) -> None:
        """After a resumed answer: is it exactly the answer the providers would have given unbroken?"""
        if result.resumed:
            verdict = "yes" if result.text == expected else "NO"
            providers = len({a.provider for a in result.attempts if a.outcome != "skipped"})
            self.note(f"resumed (Result.resumed): one answer from {providers} provider(s) and "
                      f"{len([a for a in result.attempts if a.outcome != 'skipped'])} attempts; exactly the whole "
                      f"answer ({len(result.text)} characters), nothing repeated or lost: {verdict}")


def tool_call_text(call: ToolCall) -> str:
    return f"{call.name}({call.arguments})  id={call.id}"
