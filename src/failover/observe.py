"""What one call reports as it goes: telemetry listens here. Nothing is reported per chunk."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from failover.errors import Attempt
    from failover.planner import Route
    from failover.policies.classify import Failure
    from failover.providers.base import Decoder
    from failover.request import Request
    from failover.types import Result


class Observer:
    """Told the story of one call. This base class ignores it; every hook is called at most once
    per attempt, and `call_ended` exactly once for a call that started."""

    def call_started(self, request: Request) -> None:
        return None

    def attempt_started(self, route: Route, number: int, request: Request, *, continuing: bool,
                        backoff_s: float, previous: Failure | None) -> None:
        return None

    def attempt_ended(self, attempt: Attempt, decoder: Decoder, failure: Failure | None) -> None:
        return None

    def attempt_skipped(self, attempt: Attempt) -> None:
        return None

    def call_ended(self, result: Result | None, error: BaseException | None, *, cancelled: bool = False) -> None:
        return None


NULL_OBSERVER = Observer()
