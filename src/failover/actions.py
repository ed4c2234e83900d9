"""What the planner asks a driver to do (planner.py lists them with what the driver reports back).
`Judge` lives with the attempt (attempt.py): an attempt's first content hands one to the driver too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from failover.attempt import Judge

if TYPE_CHECKING:
    from failover.attempt import LiveAttempt
    from failover.errors import FailoverError
    from failover.policies.breaker import Admission
    from failover.route import Route
    from failover.types import Chunk, Result


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Admit:
    route: Route


@dataclass(frozen=True, slots=True)
class Open:
    attempt: LiveAttempt
    race: bool = False


@dataclass(frozen=True, slots=True)
class Read:
    until: float | None


@dataclass(frozen=True, slots=True)
class Cancel:
    attempt: LiveAttempt


@dataclass(frozen=True, slots=True)
class Adopt:
    attempt: LiveAttempt


@dataclass(frozen=True, slots=True)
class Probe:
    route: Route
    admission: Admission


@dataclass(frozen=True, slots=True)
class Done:
    result: Result
    last: tuple[Chunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Raise:
    error: FailoverError


Action = Sleep | Admit | Open | Read | Cancel | Adopt | Judge | Probe | Done | Raise
