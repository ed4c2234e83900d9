"""Background probes (`breaker.probe: background`, DESIGN §10): when an open breaker's `reset_timeout`
has passed, the router sends a tiny request of its own (a fixed prompt, `max_tokens` 1, short
timeouts) while callers keep skipping the provider; its success closes the breaker, its failure
opens it again. No caller ever pays for a failed probe.

A probe starts when a caller's admission finds the probe due (a router with no traffic sends none)
and holds the breaker's probe lease, so with Redis storage there is one probe for the whole fleet.
`ProbeRun` decides; `run_probe` does its I/O. **Decision:** it runs in a thread of its own for sync
and asyncio callers alike: an asyncio caller's event loop may end right after its call (a script's
`asyncio.run`), which would cancel a probe task half-way; a thread does not block that loop either.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from failover.attempt import Truncated
from failover.events import Observer, ProbeEnded
from failover.policies.breaker import Admission, Judgement, Verdict
from failover.policies.classify import ErrorClass, classify
from failover.policies.timeouts import Watch
from failover.providers.base import CallTimeout
from failover.validate import build_request

if TYPE_CHECKING:
    from failover.route import Route

log = logging.getLogger("failover.breaker")

PROMPT = [{"role": "user", "content": "Reply with the single word: ok"}]
PROBE_TIMEOUT = 5.0  # the longest a probe waits (connect, first chunk), whatever the provider allows callers
_REQUEST = build_request(PROMPT, max_tokens=1)
_running: set[threading.Thread] = set()  # probes in flight


class ProbeRun:
    """One probe: what to send, and what its end means for the breaker."""

    def __init__(self, route: Route, admission: Admission, now: float) -> None:
        self.route = route
        self.admission = admission
        self.started = now
        t = route.config.timeouts
        limit = min(PROBE_TIMEOUT, t.first_token, t.total)
        self.watch = Watch(t, now + limit, now + limit)
        self.timeout = CallTimeout(connect=min(t.connect, limit), total=limit)
        self.decoder = route.provider.decoder()
        self.request = _REQUEST

    def feed(self, data: bytes) -> bool:
        """A block of the body: True once the provider has answered (content, or the terminal event)."""
        return bool(self.decoder.feed(data)) or self.decoder.complete

    def verdict(self, exc: BaseException | None) -> tuple[Verdict, str | None]:
        """Its verdict, and the error type when it failed. A provider that answers at all is up: a
        refusal of the tiny request itself (a 400) is a success for the breaker."""
        if exc is None:
            return Verdict.SUCCESS, None
        if self.watch.fired is not None:
            return Verdict.FAILURE, f"timeout_{self.watch.fired}"
        if isinstance(exc, Truncated):
            return Verdict.FAILURE, "cut"
        failure = classify(self.route.provider.fault(exc))
        if failure.error_class in (ErrorClass.REJECTED, ErrorClass.WRONG_FIT):
            return Verdict.SUCCESS, None
        return (Verdict.FAILURE if failure.breaker_failure else Verdict.NONE), failure.error_type

    def ended(self, judgement: Judgement, error_type: str | None, now: float, observer: Observer) -> None:
        log.warning("breaker %s: background probe %s (breaker %s)", self.route.name,
                    "succeeded" if error_type is None else f"failed: {error_type}", judgement.state)
        observer.handle(ProbeEnded(self.route, error_type, judgement, now - self.started))


def run_probe(route: Route, admission: Admission, observer: Observer) -> None:
    """The probe, blocking (in a thread of its own)."""
    run = ProbeRun(route, admission, time.monotonic())
    error: BaseException | None = None
    body: Any = None
    try:
        body = route.provider.open(run.request, run.timeout, run.watch)
        for data in body:
            if run.feed(data):
                break
        else:
            raise Truncated("the probe's stream ended without content")
    except Exception as exc:
        error = exc
    finally:
        if body is not None:
            try:
                body.close()
            except Exception:
                pass
    verdict, error_type = run.verdict(error)
    judgement = route.breaker.record(admission, verdict, time.monotonic())
    run.ended(judgement, error_type, time.monotonic(), observer)


def start_probe(route: Route, admission: Admission, observer: Observer) -> None:
    thread = threading.Thread(target=_in_thread, args=(route, admission, observer), daemon=True,
                              name=f"failover-probe-{route.name}")
    _running.add(thread)
    thread.start()


def _in_thread(route: Route, admission: Admission, observer: Observer) -> None:
    try:
        run_probe(route, admission, observer)
    except Exception:  # a probe must never take anything down; its lease ends by its TTL
        log.exception("failover: the background probe of %s failed", route.name)
    finally:
        _running.discard(threading.current_thread())
