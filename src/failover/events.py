"""What one call reports as it goes, as plain values: the planner emits them, the drivers hand them
to observers (telemetry). Nothing is reported per chunk.

Order within a call: `CallStarted`; per attempt `AttemptStarted` … `AttemptEnded` (a skipped
provider is one `ProviderSkipped`); `BreakerChanged` wherever a transition was seen (after the
`AttemptStarted` of the attempt whose admission saw it, before the `AttemptEnded` of the attempt
whose verdict caused it); `CallEnded` exactly once for a call that started.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from failover.errors import Attempt
    from failover.policies.breaker import Change, Judgement
    from failover.policies.classify import Failure
    from failover.providers.base import Decoder
    from failover.request import Request
    from failover.route import Route
    from failover.types import Result


@dataclass(frozen=True, slots=True)
class CallStarted:
    request: Request
    chain: tuple[str, ...]  # the providers of the call's chain, in order


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    route: Route
    number: int  # 1-based within its provider
    request: Request  # what was sent (a continuation carries the delivered text)
    continuing: bool  # continues text another attempt delivered
    backoff_s: float  # slept before it
    previous: Failure | None  # why the attempt before it failed
    probe: bool  # the half-open breaker's probe
    hedge: bool = False  # started because the attempt before it was slow to send content


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    attempt: Attempt
    decoder: Decoder  # usage, finish reason, served model, unrepresented content
    failure: Failure | None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSkipped:
    attempt: Attempt
    code: str  # breaker_open | breaker_half_open | missing_api_key | capability | deadline


@dataclass(frozen=True, slots=True)
class BreakerChanged:
    change: Change


@dataclass(frozen=True, slots=True)
class ProbeEnded:
    """A background probe ended (outside any call; see failover.probe)."""

    route: Route
    error_type: str | None  # None: the provider answered
    judgement: Judgement  # the breaker after its verdict
    duration_s: float


@dataclass(frozen=True, slots=True)
class CallEnded:
    result: Result | None
    error: BaseException | None
    cancelled: bool = False


Event = CallStarted | AttemptStarted | AttemptEnded | ProviderSkipped | BreakerChanged | CallEnded | ProbeEnded


class Observer:
    """Told the story of one call, event by event. This base ignores it."""

    def handle(self, event: Event) -> None:
        return None


NULL_OBSERVER = Observer()

Listener = Callable[[Event], None]


class Fanout(Observer):
    """Hands each event to a first observer (telemetry), then to plain listeners."""

    __slots__ = ("_first", "_listeners")

    def __init__(self, first: Observer, listeners: tuple[Listener, ...]) -> None:
        self._first = first
        self._listeners = listeners

    def handle(self, event: Event) -> None:
        self._first.handle(event)
        for listener in self._listeners:
            listener(event)
