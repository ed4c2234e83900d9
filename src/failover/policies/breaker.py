"""One pybreaker circuit breaker per provider, driven deliberately for streams.

pybreaker guards function calls; a stream is not one. We keep pybreaker for what it does well (the
state machine, its storages, listeners) and decide admission ourselves, because its defaults differ
from what a stream router needs:

- a generator that the caller closes raises `GeneratorExit` inside pybreaker's wrapper and counts
  as a failure: we never hand it a generator, we record each attempt's verdict after the fact;
- half-open admits every caller: we let exactly one probe through (a lease) while others skip;
- `throw_new_error_on_trip` replaces the real error with `CircuitBreakerError`: it is off, and the
  verdict is recorded on our side of the call anyway, so the real error always reaches the caller.

With `storage: redis://…` the breaker is shared by every process (`policies/redis_breaker.py`):
admission and verdicts are atomic scripts in Redis, and the local pybreaker below is the fallback
used while Redis is unreachable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pybreaker

from failover.config import BreakerSettings

if TYPE_CHECKING:
    from failover.policies.redis_breaker import RedisBreakerStorage

log = logging.getLogger("failover.breaker")

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN

StateListener = Callable[[str, str, str], None]  # (provider, old state, new state)


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    probe: bool = False
    state: str = CLOSED
    probe_in: float | None = None  # seconds until a probe will be let through, when refused
    token: str | None = None  # the probe's lease in Redis (shared storage), released with the verdict

    def reason(self) -> str:
        if self.state == HALF_OPEN:
            return "breaker half-open, probe in flight"
        when = f", probe in {self.probe_in:.1f}s" if self.probe_in is not None else ""
        return f"breaker open{when}"


ADMITTED = Admission(True)


class _Verdict(Exception):
    """Carries a failure into pybreaker so that its own state machine counts it."""


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _Verdict


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, on_change: list[StateListener]) -> None:
        self._on_change = on_change

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else "none"
        log.warning("breaker %s: %s -> %s", cb.name, old, new_state.name)
        for listener in self._on_change:
            listener(cb.name, old, new_state.name)


class Breaker:
    """Admission and verdicts for one provider.

    `shared`: the provider's state in Redis; None for `storage: memory`. While Redis is unreachable
    (and always without it) the local pybreaker decides.
    """

    def __init__(self, name: str, settings: BreakerSettings, *, probe_lease: float,
                 storage: pybreaker.CircuitBreakerStorage | None = None,
                 shared: RedisBreakerStorage | None = None) -> None:
        self.name = name
        self.settings = settings
        self.listeners: list[StateListener] = []
        self._cb = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max, reset_timeout=settings.reset_timeout, name=name,
            state_storage=storage or pybreaker.CircuitMemoryStorage(CLOSED),
            throw_new_error_on_trip=False, listeners=[_Listener(self.listeners)])
        self._lock = threading.Lock()
        self._probe_lease = probe_lease  # a probe that never reports back frees its slot after this
        self._probe_until = 0.0
        self.shared = shared
        self._seen = CLOSED  # the shared state this process saw last (listeners hear of changes)
        self.trips_here = 0  # shared breaker: how often a verdict of this process opened it

    def update(self, settings: BreakerSettings, *, probe_lease: float,
               shared: RedisBreakerStorage | None) -> None:
        """New settings from a config reload; the state (local and shared) is kept."""
        with self._lock:
            self.settings = settings
            self._cb.fail_max = settings.fail_max
            self._cb.reset_timeout = settings.reset_timeout
            self._probe_lease = probe_lease
            if shared is not self.shared:
                self.shared = shared
                self._seen = CLOSED

    def _snapshot(self) -> Any:
        shared = self.shared
        return shared.snapshot(self.settings.reset_timeout) if shared is not None else None

    @property
    def state(self) -> str:
        snap = self._snapshot()
        if snap is not None:
            return str(snap.state)
        return str(self._cb.current_state)

    @property
    def fail_counter(self) -> int:
        snap = self._snapshot()
        if snap is not None:
            return int(snap.failures)
        return int(self._cb.fail_counter)

    def probe_in(self) -> float:
        """Seconds until the open breaker lets a probe through (0 when it would now)."""
        snap = self._snapshot()
        if snap is not None:
            return float(snap.probe_in)
        return self._probe_in_local()

    def _observe(self, state: str, why: str = "") -> None:
        """A state read from Redis: tell the listeners when it differs from the last one seen here
        (this process, or another one, changed it)."""
        if state == self._seen:
            return
        with self._lock:
            old, self._seen = self._seen, state
        if old == state:
            return
        log.warning("breaker %s: %s -> %s (shared%s)", self.name, old, state, why)
        for listener in self.listeners:
            listener(self.name, old, state)

    def admit(self, now: float) -> Admission:
        """May an attempt go to this provider now? `now` is time.monotonic()."""
        shared = self.shared
        if shared is not None:
            from failover.policies.redis_breaker import probe_token

            token = probe_token()
            got = shared.admit(self.settings.reset_timeout, self._probe_lease, token)
            if got is not None:
                state, wait, probe = got
                self._observe(state)
                if state == CLOSED:
                    return ADMITTED
                if probe:
                    return Admission(True, probe=True, state=HALF_OPEN, token=token)
                if state == OPEN:
                    return Admission(False, state=OPEN, probe_in=wait)
                return Admission(False, state=HALF_OPEN)
        if self._cb.current_state == CLOSED:
            return ADMITTED
        with self._lock:
            state = self._cb.current_state
            if state == CLOSED:
                return ADMITTED
            if state == OPEN:
                wait = self._probe_in_local()
                if wait > 0:
                    return Admission(False, state=OPEN, probe_in=wait)
                self._cb.half_open()
            if self._probe_until > now:
                return Admission(False, state=HALF_OPEN)
            self._probe_until = now + self._probe_lease
            return Admission(True, probe=True, state=HALF_OPEN)

    def _probe_in_local(self) -> float:
        opened_at: datetime | None = self._cb._state_storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (datetime.now(UTC) - opened_at).total_seconds()
        return max(0.0, self.settings.reset_timeout - elapsed)

    def success(self, admission: Admission) -> None:
        shared = self.shared
        if shared is not None:
            got = shared.success(admission.token)
            if got is not None:
                self._observe(got[0])
                self._release_local(admission)
                return
        elif admission is ADMITTED and self._cb.current_state == CLOSED and self._cb.fail_counter == 0:
            return  # the common case: pybreaker's call() would change nothing
        self._record(_succeed, admission)

    def failure(self, admission: Admission) -> None:
        shared = self.shared
        if shared is not None:
            got = shared.failure(self.settings.fail_max, admission.token)
            if got is not None:
                state, count, tripped = got
                if tripped:
                    self.trips_here += 1
                self._observe(state, f"; opened here after {count} consecutive failures" if tripped else "")
                self._release_local(admission)
                return
        self._record(_fail, admission)

    def release(self, admission: Admission) -> None:
        """The attempt ended without a verdict (the caller left before any chunk)."""
        if admission.token is not None and self.shared is not None:
            self.shared.release(admission.token)  # unreachable: the lease ends by its TTL
        self._release_local(admission)

    def _release_local(self, admission: Admission) -> None:
        if admission.probe and admission.token is None:
            with self._lock:
                self._probe_until = 0.0

    def _record(self, outcome: Callable[[], None], admission: Admission) -> None:
        try:
            self._cb.call(outcome)
        except (_Verdict, pybreaker.CircuitBreakerError):
            # _Verdict is our own failure coming back; CircuitBreakerError means another caller
            # opened the breaker meanwhile, and this verdict changes nothing.
            pass
        self.release(admission)

    def __repr__(self) -> str:
        where = repr(self.shared) if self.shared is not None else "memory"
        return f"<Breaker {self.name} {where}>"
