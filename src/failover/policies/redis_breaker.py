"""Breaker state shared by every process through Redis (`breaker.storage: redis://host:6379/0`).

Built on pybreaker's `CircuitRedisStorage`, with its gaps closed:

- **Atomicity.** pybreaker counts a failure with INCR, reads the counter back, compares it with
  `fail_max` and then writes `opened_at` and the state: four round trips during which other
  processes interleave (a success resets the counter between the INCR and the read: a lost trip;
  several processes open the breaker at once: several trips, `opened_at` moved forward). Here each
  verdict is one Lua script that reads the state, counts and transitions in one step, and admission
  (open → half-open plus the probe lease) is one script too. Redis runs a script atomically.
- **Time.** `opened_at` is kept in milliseconds of the *Redis server's* clock (`TIME`), and every
  comparison with it is made inside a script against that same clock: processes on hosts with
  skewed clocks agree on when the probe is due. pybreaker stores whole seconds of each client's
  clock.
- **Keys.** pybreaker's default keys (`pybreaker:state`, …) are shared by every breaker on the
  server. Ours: `failover:<namespace>:<provider>:<field>`, see `namespace_for`.
- **Redis down.** pybreaker logs a traceback per call and reports the circuit closed. Here the
  breaker falls back to its own in-memory state (the Breaker's local pybreaker), one warning says
  so, Redis is tried again at most every `RECONNECT_INTERVAL` seconds by one caller at a time, and
  one line says when it is back. No request waits on an unreachable Redis longer than one socket
  timeout per interval, and none fails because of it.
- **Probe lease.** The single probe of a half-open breaker is a `SET NX PX` key, so exactly one
  process of the fleet probes; a probe that never reports back frees it after the lease.

`redis` (redis-py) is imported lazily: install the `redis` extra (`pip install 'failover[redis]'`).

Key layout (all plain strings; `<prefix>` is `failover:<namespace>:<provider>`):

    <prefix>:state            closed | open | half-open (missing: closed)
    <prefix>:fail_counter     consecutive failures while closed; saturates at fail_max when it trips
    <prefix>:opened_at        Redis server time in ms when it last opened
    <prefix>:probe            the probe lease: a token, with a TTL of the provider's timeouts.total
    <prefix>:trips            how many times it opened (a trip, or a failed probe): for operators
    <prefix>:success_counter  pybreaker's (half-open successes); unused with success_threshold 1
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pybreaker

from failover.redact import mask_url

if TYPE_CHECKING:
    from failover.config import ProviderConfig

log = logging.getLogger("failover.breaker")

T = TypeVar("T")

KEY_ROOT = "failover"
RECONNECT_INTERVAL = 1.0  # seconds between two tries of an unreachable Redis
REMIND_INTERVAL = 300.0  # an outage that lasts is logged again at most this often
SOCKET_TIMEOUT = 0.25  # seconds; a URL's ?socket_timeout= / ?socket_connect_timeout= wins

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN

REDIS_MISSING = "breaker.storage is a Redis URL but the redis package is not installed: pip install 'failover[redis]'"


def redis_available() -> bool:
    """Is the `redis` extra installed?"""
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


def namespace_for(provider: ProviderConfig, service_name: str) -> str:
    """The namespace of a provider's keys: `breaker.namespace` when set, else 12 hex digits of the
    SHA-256 of the telemetry `service_name`, the provider's `type`, `base_url` and `model`.

    So the replicas of one app share each provider's breaker (same file, wherever it lives, and a
    reload that keeps those four keeps the state); another app (another service_name) or another
    upstream (another endpoint or model, even under the same provider name) gets its own. Set the
    same explicit `namespace` in several apps to make them share one breaker.
    """
    if provider.breaker.namespace:
        return provider.breaker.namespace
    identity = "\n".join((service_name, provider.type, provider.base_url or "", provider.model))
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def key_prefix(namespace: str, provider: str) -> str:
    return f"{KEY_ROOT}:{namespace}:{provider}"




class RedisLink:
    """One Redis client per storage URL (shared by the breakers of a router) and its health.

    `call(fn)` runs fn against Redis, or returns None without trying while Redis is known to be
    down (then the breaker uses its local state). After a failure, one caller at a time tries again
    every RECONNECT_INTERVAL seconds. The transitions down and up are logged once each.
    """

    def __init__(self, url: str) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:  # pragma: no cover - exercised through failover check
            raise ImportError(REDIS_MISSING) from None
        self.url = url
        # No redis-py retries (they would multiply the wait on a dead server) and short timeouts:
        # breaker bookkeeping must never hold a call up for long.
        self.client: Any = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0))
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._trying = False
        self._logged_at = 0.0

    @property
    def reachable(self) -> bool:
        """False while Redis is known to be down."""
        return not self._down

    def call(self, fn: Callable[[], T]) -> T | None:
        trying = False
        if self._down:
            now = time.monotonic()
            with self._lock:
                if not self._down:
                    pass
                elif self._trying or now < self._retry_at:
                    return None
                else:
                    self._trying = trying = True
        try:
            result = fn()
        except self.errors as exc:
            self._failed(exc)
            return None
        finally:
            if trying:
                self._trying = False
        if self._down:
            self._recovered()
        return result

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._retry_at = now + RECONNECT_INTERVAL
            first = not self._down
            self._down = True
            if not first and now - self._logged_at < REMIND_INTERVAL:
                return
            self._logged_at = now
        log.warning("breaker storage %s is unreachable (%s: %s): breakers use per-process state until it is back%s",
                    mask_url(self.url), type(exc).__name__, exc, "" if first else " (still down)")

    def _recovered(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.warning("breaker storage %s is reachable again: breaker state is shared again", mask_url(self.url))

    def close(self) -> None:
        try:
            self.client.close()
        except self.errors:
            pass


_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# KEYS: state, opened_at, probe. ARGV: reset_timeout ms, lease ms, token.
# -> {state, ms until a probe is due (open) or the lease ends (half-open), 1 if this caller is the probe}
_ADMIT = _NOW_MS + """
local state = redis.call('GET', KEYS[1]) or 'closed'
if state == 'closed' then return {'closed', 0, 0} end
if state == 'open' then
  local wait = tonumber(redis.call('GET', KEYS[2]) or '0') + tonumber(ARGV[1]) - now
  if wait > 0 then return {'open', wait, 0} end
  redis.call('SET', KEYS[1], 'half-open')
end
if redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[2]) then return {'half-open', 0, 1} end
return {'half-open', math.max(redis.call('PTTL', KEYS[3]), 0), 0}
"""

_RELEASE_MINE = "if ARGV[1] ~= '' and redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end "

# KEYS: state, fail_counter, probe, opened_at, trips. ARGV: token, fail_max.
# -> {state after, failure count, 1 if this verdict opened the breaker}
_FAILURE = _NOW_MS + _RELEASE_MINE + """
local state = redis.call('GET', KEYS[1]) or 'closed'
local count
if state == 'open' then
  return {'open', tonumber(redis.call('GET', KEYS[2]) or '0'), 0}
elseif state == 'half-open' then
  count = tonumber(redis.call('GET', KEYS[2]) or '0')
else
  count = redis.call('INCR', KEYS[2])
  if count < tonumber(ARGV[2]) then return {'closed', count, 0} end
end
redis.call('SET', KEYS[1], 'open')
redis.call('SET', KEYS[4], now)
redis.call('INCR', KEYS[5])
return {'open', count, 1}
"""

# KEYS: state, fail_counter, probe. ARGV: token. -> {state after, 1 if this verdict closed it}
_SUCCESS = _RELEASE_MINE + """
local state = redis.call('GET', KEYS[1]) or 'closed'
if state == 'open' then return {'open', 0} end
local count = redis.call('GET', KEYS[2])
if count and count ~= '0' then redis.call('SET', KEYS[2], 0) end
if state == 'half-open' then
  redis.call('SET', KEYS[1], 'closed')
  redis.call('DEL', KEYS[3])
  return {'closed', 1}
end
return {'closed', 0}
"""

# KEYS: state, fail_counter, probe. ARGV: token.
_RELEASE = _RELEASE_MINE + "return 1"

# KEYS: state, fail_counter, opened_at, probe, trips. ARGV: reset_timeout ms.
# -> {state, failures, ms until a probe is due, probe lease ms left (-2: none), trips, opened_at ms}
_SNAPSHOT = _NOW_MS + """
local state = redis.call('GET', KEYS[1]) or 'closed'
local opened = tonumber(redis.call('GET', KEYS[3]) or '0')
local wait = 0
if state == 'open' then wait = math.max(opened + tonumber(ARGV[1]) - now, 0) end
return {state, tonumber(redis.call('GET', KEYS[2]) or '0'), wait, redis.call('PTTL', KEYS[4]),
        tonumber(redis.call('GET', KEYS[5]) or '0'), opened}
"""


@dataclass(frozen=True, slots=True)
class SharedSnapshot:
    state: str
    failures: int
    probe_in: float  # seconds until an open breaker lets a probe through (0 otherwise)
    probe_lease: float | None  # seconds left on the lease of a probe in flight
    trips: int
    opened_at: datetime | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBreakerStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage with our key layout, ms precision, no per-call error logging, and
    the atomic operations the Breaker uses (`admit`, `failure`, `success`, `release`, `snapshot`).

    The pybreaker storage interface (state, counter, opened_at, …) still works, for a plain
    `pybreaker.CircuitBreaker`, but the Breaker decides through the scripts only. Every method
    returns None (or the fallback) when Redis is unreachable: the caller then uses local state.
    """

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self.prefix = prefix
        super().__init__(CLOSED, link.client, namespace=prefix, fallback_circuit_state=CLOSED)
        client = link.client
        self._admit = client.register_script(_ADMIT)
        self._failure = client.register_script(_FAILURE)
        self._success = client.register_script(_SUCCESS)
        self._release = client.register_script(_RELEASE)
        self._snapshot = client.register_script(_SNAPSHOT)
        k = self._namespace
        self._state_key, self._count_key, self._opened_key = k("state"), k("fail_counter"), k("opened_at")
        self._probe_key, self._trips_key = k("probe"), k("trips")

    def _initialize_redis_state(self, state: str) -> None:
        # pybreaker writes the keys with SETNX at construction: a Redis that is down when the app
        # starts would fail the Router. Missing keys read as closed / 0 in every script instead.
        return None

    def _namespace(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    # ---- the atomic operations ----------------------------------------------------------------

    def admit(self, reset_timeout: float, lease: float, token: str) -> tuple[str, float, bool] | None:
        """(state, seconds to wait, is this caller the probe), or None when Redis is unreachable."""
        keys = [self._state_key, self._opened_key, self._probe_key]
        args = [_ms(reset_timeout), max(1, _ms(lease)), token]
        got = self.link.call(lambda: self._admit(keys=keys, args=args))
        if got is None:
            return None
        return _text(got[0]), int(got[1]) / 1000, bool(got[2])

    def failure(self, fail_max: int, token: str | None) -> tuple[str, int, bool] | None:
        """(state after, failure count, this verdict opened it), or None."""
        keys = [self._state_key, self._count_key, self._probe_key, self._opened_key, self._trips_key]
        got = self.link.call(lambda: self._failure(keys=keys, args=[token or "", fail_max]))
        if got is None:
            return None
        return _text(got[0]), int(got[1]), bool(got[2])

    def success(self, token: str | None) -> tuple[str, bool] | None:
        """(state after, this verdict closed it), or None."""
        keys = [self._state_key, self._count_key, self._probe_key]
        got = self.link.call(lambda: self._success(keys=keys, args=[token or ""]))
        if got is None:
            return None
        return _text(got[0]), bool(got[1])

    def release(self, token: str) -> None:
        keys = [self._state_key, self._count_key, self._probe_key]
        self.link.call(lambda: self._release(keys=keys, args=[token]))

    def snapshot(self, reset_timeout: float) -> SharedSnapshot | None:
        keys = [self._state_key, self._count_key, self._opened_key, self._probe_key, self._trips_key]
        got = self.link.call(lambda: self._snapshot(keys=keys, args=[_ms(reset_timeout)]))
        if got is None:
            return None
        lease = int(got[3])
        opened = int(got[5])
        return SharedSnapshot(
            state=_text(got[0]), failures=int(got[1]), probe_in=int(got[2]) / 1000,
            probe_lease=lease / 1000 if lease >= 0 else None, trips=int(got[4]),
            opened_at=datetime.fromtimestamp(opened / 1000, UTC) if opened else None)

    # ---- pybreaker's storage interface, through the link (no traceback per call) ----------------

    def _get(self, key: str) -> Any:
        return self.link.call(lambda: self._redis.get(key))

    def _set(self, key: str, value: Any) -> None:
        self.link.call(lambda: self._redis.set(key, value))

    @property
    def state(self) -> str:
        value = self._get(self._state_key)
        return _text(value) if value is not None else self._fallback_circuit_state

    @state.setter
    def state(self, state: str) -> None:
        self._set(self._state_key, str(state))

    def increment_counter(self) -> None:
        self.link.call(lambda: self._redis.incr(self._count_key))

    def reset_counter(self) -> None:
        self._set(self._count_key, 0)

    def increment_success_counter(self) -> None:
        self.link.call(lambda: self._redis.incr(self._namespace("success_counter")))

    def reset_success_counter(self) -> None:
        self._set(self._namespace("success_counter"), 0)

    @property
    def counter(self) -> int:
        value = self._get(self._count_key)
        return int(value) if value else 0

    @property
    def success_counter(self) -> int:
        value = self._get(self._namespace("success_counter"))
        return int(value) if value else 0

    @property
    def opened_at(self) -> datetime | None:
        value = self._get(self._opened_key)
        return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        # Milliseconds, and never moved backwards (as pybreaker's set-if-greater), in one script.
        self.link.call(lambda: self._redis.eval(
            "local c = tonumber(redis.call('GET', KEYS[1]) or '0') "
            "if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1]) end return 1",
            1, self._opened_key, int(now.timestamp() * 1000)))

    def __repr__(self) -> str:
        return f"<RedisBreakerStorage {mask_url(self.link.url)} {self.prefix}>"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


_tokens = itertools.count(1)
_RANDOM = os.urandom(6).hex()


def probe_token() -> str:
    """A token unique across the fleet for one admission's probe lease (cheap: no uuid per call;
    the pid is read at each call, so forked children never share a parent's tokens)."""
    return f"{os.getpid():x}-{_RANDOM}-{next(_tokens)}"
