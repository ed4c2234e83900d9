"""One circuit breaker per provider: pybreaker's state machine, our decision of what trips it.

pybreaker guards function calls; a stream is not one, and its defaults differ from what a stream
router needs (a closed generator counts as a failure, half-open admits every caller, the trip
replaces the real error, the reset runs on the wall clock). So pybreaker is used through its public
surface only: `open()`, `half_open()`, `close()`, `current_state`, the storage's counter, and a
listener for transitions. What counts as a failure, when it trips, when the probe is due and who
the probe is, is decided here:

- **Verdicts.** An attempt's success is its first content: the provider is serving, and the stream's
  end may be minutes away. A failure is recorded when it happens (a cut after content too).
- **Trip rule.** It opens when the last `fail_max` verdicts were failures (pybreaker's counter) *and*
  those failures are at least `failure_rate` of the attempts the provider was given since that run
  of failures began, counting the attempts that were still waiting for their first content then.
  A provider that is down trips after `fail_max` failures (nothing else it was given is still
  pending). Under load, a brownout produces runs of `fail_max` failures by chance, and fast failures
  overtake the successes still on their way; but those pending attempts are in the count, so the
  share stays near the brownout's rate and the breaker stays closed. `failure_rate: 0` is the plain
  consecutive count.
- **One probe.** After `reset_timeout` (on the monotonic clock, injectable for tests) exactly one
  attempt is let through (a lease that ends with its verdict, or after `probe_lease` seconds), the
  others keep skipping. Its success closes the breaker, its failure opens it again.
- **Verdicts outside the call.** An attempt's verdict is recorded after the fact (`record`), so the
  real error always reaches the caller; a caller's cancel before any chunk is no verdict at all.

With `storage: redis://…` the state is shared by every process: the same rules run as atomic scripts
in Redis (`policies/redis_store.py`), and the local state machine is the fallback while Redis is
unreachable. Every method that may talk to Redis has an async twin, so asyncio callers never block
their event loop on it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pybreaker

from failover.config import BreakerSettings

if TYPE_CHECKING:
    from failover.policies.redis_store import RedisBreakerStore, SharedAdmission, SharedJudgement

log = logging.getLogger("failover.breaker")

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN


@dataclass(frozen=True, slots=True)
class Change:
    """A state transition of one provider's breaker, as this process saw it."""

    provider: str
    old: str
    new: str
    why: str = ""  # "" | "opened after N consecutive failures" | "seen in the shared storage" ...


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    probe: bool = False
    state: str = CLOSED
    probe_in: float | None = None  # seconds until a probe will be let through, when refused
    token: str | None = None  # the probe's lease in Redis (shared storage), released with the verdict
    changes: tuple[Change, ...] = ()

    def reason(self) -> str:
        if self.state == HALF_OPEN:
            return "breaker half-open, probe in flight"
        when = f", probe in {self.probe_in:.1f}s" if self.probe_in is not None else ""
        return f"breaker open{when}"

    @property
    def code(self) -> str:
        return "breaker_half_open" if self.state == HALF_OPEN else "breaker_open"


ADMITTED = Admission(True)


class Verdict(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NONE = "none"  # the attempt ended without a verdict (the caller left before any chunk)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What recording a verdict did: the state after it, and the transitions it caused."""

    state: str
    changes: tuple[Change, ...] = ()


class _Transitions(pybreaker.CircuitBreakerListener):
    """Collects the local state machine's transitions while the breaker's lock is held."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else CLOSED
        if old != new_state.name:
            self.seen.append((old, new_state.name))


class Breaker:
    """Admission and verdicts for one provider. `now` is always time.monotonic() (or a fake clock)."""

    def __init__(self, name: str, settings: BreakerSettings, *, probe_lease: float,
                 shared: RedisBreakerStore | None = None) -> None:
        self.name = name
        self.settings = settings
        self._transitions = _Transitions()
        self._storage = pybreaker.CircuitMemoryStorage(CLOSED)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max, reset_timeout=settings.reset_timeout, name=name,
            state_storage=self._storage, throw_new_error_on_trip=False, listeners=[self._transitions])
        self._lock = threading.Lock()
        # Attempts admitted, and attempts decided (a verdict, or none), ever; and how many were decided
        # when the current run of failures began. Those admitted since, and those still pending then,
        # are what a run's failures are a share of.
        self._admitted = 0
        self._decided = 0
        self._decided_at_run = 0
        self._opened_at = 0.0  # monotonic time of the last opening
        self._probe_lease = probe_lease  # a probe that never reports back frees its slot after this
        self._probe_until = 0.0
        self.shared = shared
        self._seen = CLOSED  # the shared state this process saw last (to report others' changes)
        self.trips_here = 0  # shared breaker: how often a verdict of this process opened it

    def update(self, settings: BreakerSettings, *, probe_lease: float, shared: RedisBreakerStore | None) -> None:
        """New settings from a config reload; the state (local and shared) is kept."""
        with self._lock:
            self.settings = settings
            self._cb.fail_max = settings.fail_max
            self._cb.reset_timeout = settings.reset_timeout
            self._probe_lease = probe_lease
            if shared is not self.shared:
                self.shared = shared
                self._seen = CLOSED

    # ---- admission

    def admit(self, now: float) -> Admission:
        """May an attempt go to this provider now?"""
        shared = self.shared
        if shared is not None:
            token = shared.token()
            got = shared.admit(self.settings.reset_timeout, self._probe_lease, token)
            if got is not None:
                return self._shared_admission(got, token)
        return self._admit_local(now)

    async def aadmit(self, now: float) -> Admission:
        shared = self.shared
        if shared is not None:
            token = shared.token()
            got = await shared.aadmit(self.settings.reset_timeout, self._probe_lease, token)
            if got is not None:
                return self._shared_admission(got, token)
        return self._admit_local(now)

    def _admit_local(self, now: float) -> Admission:
        with self._lock:
            state = self._cb.current_state
            if state == CLOSED:
                self._admitted += 1
                return ADMITTED
            if state == OPEN:
                wait = self._opened_at + self.settings.reset_timeout - now
                if wait > 0:
                    return Admission(False, state=OPEN, probe_in=wait)
                self._cb.half_open()
            if self._probe_until > now:
                return Admission(False, state=HALF_OPEN, changes=self._drain(""))
            self._probe_until = now + self._probe_lease
            self._admitted += 1
            return Admission(True, probe=True, state=HALF_OPEN, changes=self._drain("probe due"))

    def _shared_admission(self, got: SharedAdmission, token: str) -> Admission:
        changes = self._observe(got.state)
        if got.state == CLOSED:
            return ADMITTED if not changes else Admission(True, changes=changes)
        if got.probe:
            return Admission(True, probe=True, state=HALF_OPEN, token=token, changes=changes)
        if got.state == OPEN:
            return Admission(False, state=OPEN, probe_in=got.wait, changes=changes)
        return Admission(False, state=HALF_OPEN, changes=changes)

    # ---- verdicts

    def record(self, admission: Admission, verdict: Verdict, now: float, *, decided: bool = False,
               first_chunk_s: float | None = None) -> Judgement:
        """Record one attempt's verdict; the state after it and the transitions it caused. `decided`:
        the attempt had a verdict already (its first content), and now failed after all.
        `first_chunk_s`: a success's time to its first content, kept in Redis for `failover status`."""
        shared = self.shared
        if shared is not None:
            got = shared.record(verdict.value, decided, admission.token, self.settings, first_chunk_s)
            if got is not None:
                return self._shared_judgement(got, admission)
        return self._record_local(admission, verdict, now, decided)

    async def arecord(self, admission: Admission, verdict: Verdict, now: float, *,
                      decided: bool = False, first_chunk_s: float | None = None) -> Judgement:
        shared = self.shared
        if shared is not None:
            got = await shared.arecord(verdict.value, decided, admission.token, self.settings, first_chunk_s)
            if got is not None:
                return self._shared_judgement(got, admission)
        return self._record_local(admission, verdict, now, decided)

    def _record_local(self, admission: Admission, verdict: Verdict, now: float, decided: bool) -> Judgement:
        with self._lock:
            if not decided:
                self._decided += 1
            elif verdict is Verdict.FAILURE:  # a failure after the success of its first content: one
                self._admitted += 1          # more thing the provider was given and got wrong
                self._decided += 1
            state = self._cb.current_state
            why = ""
            if verdict is Verdict.SUCCESS:
                if state == CLOSED:
                    if self._storage.counter:
                        self._storage.reset_counter()
                elif state == HALF_OPEN and admission.probe:
                    self._cb.close()
                    why = "the probe succeeded"
            elif verdict is Verdict.FAILURE:
                if state == CLOSED:
                    if self._storage.counter == 0:  # a run of failures begins, this one included
                        self._decided_at_run = self._decided - 1
                    self._storage.increment_counter()
                    if self._trips():
                        self._open(now)
                        why = f"opened after {self._storage.counter} consecutive failures"
                elif state == HALF_OPEN and admission.probe:
                    self._open(now)
                    why = "the probe failed"
            if admission.probe:  # its verdict ends the probe's lease
                self._probe_until = 0.0
            return Judgement(self._cb.current_state, self._drain(why))

    def _trips(self) -> bool:
        s = self.settings
        failures = self._storage.counter
        if failures < s.fail_max:
            return False
        given = self._admitted - self._decided_at_run  # pending when the run began, or admitted since
        return failures >= s.failure_rate * given

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._cb.open()

    def _release_probe(self, admission: Admission) -> None:
        if admission.probe and admission.token is None:
            with self._lock:
                self._probe_until = 0.0

    def _shared_judgement(self, got: SharedJudgement, admission: Admission) -> Judgement:
        if got.tripped:
            self.trips_here += 1
        why = f"opened here after {got.failures} consecutive failures" if got.tripped else ""
        self._release_probe(admission)
        return Judgement(got.state, self._observe(got.state, why))

    # ---- transitions

    def _drain(self, why: str) -> tuple[Change, ...]:
        """The local transitions since the last drain (the lock is held)."""
        seen = self._transitions.seen
        if not seen:
            return ()
        self._transitions.seen = []
        changes = tuple(Change(self.name, old, new, why) for old, new in seen)
        for change in changes:
            log.warning("breaker %s: %s -> %s%s", self.name, change.old, change.new, f" ({why})" if why else "")
        return changes

    def _observe(self, state: str, why: str = "") -> tuple[Change, ...]:
        """A state read from Redis: a change when it differs from the last one seen here (this
        process, or another one, changed it)."""
        if state == self._seen:
            return ()
        with self._lock:
            old, self._seen = self._seen, state
        if old == state:
            return ()
        reason = why or "seen in the shared storage"
        log.warning("breaker %s: %s -> %s (shared: %s)", self.name, old, state, reason)
        return (Change(self.name, old, state, reason),)

    # ---- reading (status, telemetry, tests)

    @property
    def state(self) -> str:
        snap = self.shared.snapshot(self.settings.reset_timeout) if self.shared is not None else None
        return snap.state if snap is not None else str(self._cb.current_state)

    @property
    def fail_counter(self) -> int:
        snap = self.shared.snapshot(self.settings.reset_timeout) if self.shared is not None else None
        return snap.failures if snap is not None else int(self._storage.counter)

    def probe_in(self, now: float) -> float:
        """Seconds until the open breaker lets a probe through (0 when it would now)."""
        snap = self.shared.snapshot(self.settings.reset_timeout) if self.shared is not None else None
        if snap is not None:
            return snap.probe_in
        if self._cb.current_state != OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.settings.reset_timeout - now)

    def __repr__(self) -> str:
        where = repr(self.shared) if self.shared is not None else "memory"
        return f"<Breaker {self.name} {where}>"
