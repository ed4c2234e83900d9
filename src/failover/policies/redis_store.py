"""Breaker state shared by every process through Redis (`breaker.storage: redis://host:6379/0`).

The rules are the ones of `policies/breaker.py`, run as Lua scripts so that each decision is one
atomic step in Redis:

- **Atomicity.** Counting a failure, measuring the failure rate of the window and opening is one
  script; admission (open → half-open plus the probe lease) is one script. pybreaker's own
  `CircuitRedisStorage` does INCR, reads back, compares and writes in four round trips between which
  other processes interleave (lost trips, several trips at once), so it is not used: this is the
  one point of DESIGN §5 ("shared state uses pybreaker's CircuitRedisStorage") that pybreaker's
  public API cannot meet (docs/behaviour.md).
- **Time.** `opened_at` and the window's slots are in milliseconds of the *Redis server's* clock
  (`TIME`): processes on hosts with skewed clocks agree on when the probe is due.
- **Keys.** `failover:<namespace>:<provider>:<field>`, see `namespace_for`.
- **Redis down.** Each process falls back to its own in-memory breaker; one warning says so, Redis
  is tried again at most every `RECONNECT_INTERVAL` seconds by one caller at a time, one line says
  when it is back. No request waits on an unreachable Redis longer than one socket timeout per
  interval, and none fails because of it.
- **asyncio.** Async callers use redis-py's asyncio client (one per event loop), so a Redis round
  trip never blocks an event loop.

Key layout (`<prefix>` is `failover:<namespace>:<provider>`):

    <prefix>:state         closed | open | half-open (missing: closed)
    <prefix>:fail_counter  consecutive failures while closed
    <prefix>:admitted      attempts admitted, ever       } a run of failures is a share of the
    <prefix>:decided       attempts decided, ever        } attempts admitted since it began or
    <prefix>:decided_at_run  decided when the run began  } still pending then (policies/breaker.py)
    <prefix>:opened_at     Redis server time in ms when it last opened
    <prefix>:probe         the probe lease: a token, with a TTL of the provider's timeouts.total
    <prefix>:trips         how many times it opened (a trip, or a failed probe): for operators

`redis` (redis-py) is imported lazily: install the `redis` extra (`pip install 'failover[redis]'`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from failover.policies.hedge import SAMPLES
from failover.redact import mask_url

if TYPE_CHECKING:
    from failover.config import BreakerSettings, ProviderConfig

log = logging.getLogger("failover.breaker")

KEY_ROOT = "failover"
RECONNECT_INTERVAL = 1.0  # seconds between two tries of an unreachable Redis
REMIND_INTERVAL = 300.0  # an outage that lasts is logged again at most this often
SOCKET_TIMEOUT = 0.25  # seconds; a URL's ?socket_timeout= / ?socket_connect_timeout= wins

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


# ---------------------------------------------------------------------------------------------
# The scripts

_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# KEYS: state, opened_at, probe, admitted. ARGV: reset_timeout ms, lease ms, token.
# -> {state, ms until a probe is due (open) or the lease ends (half-open), 1 if this caller is the probe}
ADMIT = _NOW_MS + """
local state = redis.call('GET', KEYS[1]) or 'closed'
if state == 'closed' then redis.call('INCR', KEYS[4]) return {'closed', 0, 0} end
if state == 'open' then
  local wait = tonumber(redis.call('GET', KEYS[2]) or '0') + tonumber(ARGV[1]) - now
  if wait > 0 then return {'open', wait, 0} end
  redis.call('SET', KEYS[1], 'half-open')
end
if redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[2]) then
  redis.call('INCR', KEYS[4])
  return {'half-open', 0, 1}
end
return {'half-open', math.max(redis.call('PTTL', KEYS[3]), 0), 0}
"""

# KEYS: state, fail_counter, probe, opened_at, trips, admitted, decided, decided_at_run, first_chunks.
# ARGV: token, verdict (success | failure | none), 1 if the attempt was decided before, fail_max, failure_rate,
# the first chunk's ms ('' when none), how many first chunks to keep.
# -> {state after, consecutive failures, 1 if this verdict opened the breaker}
RECORD = _NOW_MS + """
if ARGV[6] ~= '' then
  redis.call('LPUSH', KEYS[9], ARGV[6])
  redis.call('LTRIM', KEYS[9], 0, tonumber(ARGV[7]) - 1)
end
local mine = ARGV[1] ~= '' and redis.call('GET', KEYS[3]) == ARGV[1]
if mine then redis.call('DEL', KEYS[3]) end
if ARGV[3] ~= '1' then
  redis.call('INCR', KEYS[7])
elseif ARGV[2] == 'failure' then
  redis.call('INCR', KEYS[6])
  redis.call('INCR', KEYS[7])
end
local state = redis.call('GET', KEYS[1]) or 'closed'
local count = tonumber(redis.call('GET', KEYS[2]) or '0')
local function open()
  redis.call('SET', KEYS[1], 'open')
  redis.call('SET', KEYS[4], now)
  redis.call('INCR', KEYS[5])
end
if ARGV[2] == 'none' then return {state, count, 0} end
if state == 'half-open' and mine then
  if ARGV[2] == 'failure' then open() return {'open', count, 1} end
  redis.call('SET', KEYS[1], 'closed')
  redis.call('SET', KEYS[2], 0)
  return {'closed', 0, 0}
end
if state ~= 'closed' then return {state, count, 0} end
if ARGV[2] == 'success' then
  if count ~= 0 then redis.call('SET', KEYS[2], 0) end
  return {'closed', 0, 0}
end
if count == 0 then redis.call('SET', KEYS[8], tonumber(redis.call('GET', KEYS[7]) or '1') - 1) end
count = redis.call('INCR', KEYS[2])
local given = tonumber(redis.call('GET', KEYS[6]) or '0') - tonumber(redis.call('GET', KEYS[8]) or '0')
if count >= tonumber(ARGV[4]) and count >= tonumber(ARGV[5]) * given then
  open()
  return {'open', count, 1}
end
return {'closed', count, 0}
"""

# KEYS: state, fail_counter, opened_at, probe, trips, first_chunks. ARGV: reset_timeout ms.
# -> {state, failures, ms until a probe is due, probe lease ms left (-2: none), trips, opened_at ms,
#     recent first chunks in ms}
SNAPSHOT = _NOW_MS + """
local state = redis.call('GET', KEYS[1]) or 'closed'
local opened = tonumber(redis.call('GET', KEYS[3]) or '0')
local wait = 0
if state == 'open' then wait = math.max(opened + tonumber(ARGV[1]) - now, 0) end
return {state, tonumber(redis.call('GET', KEYS[2]) or '0'), wait, redis.call('PTTL', KEYS[4]),
        tonumber(redis.call('GET', KEYS[5]) or '0'), opened, redis.call('LRANGE', KEYS[6], 0, -1)}
"""

_SCRIPTS = {"admit": ADMIT, "record": RECORD, "snapshot": SNAPSHOT}


# ---------------------------------------------------------------------------------------------
# The connection and its health


class RedisLink:
    """The Redis clients of one storage URL (shared by the breakers of a router) and its health.

    `run(script, keys, args)` runs a script with the sync client, `arun` with the asyncio client of
    the running loop; both return None without trying while Redis is known to be down (the breaker
    then uses its local state). After a failure, one caller at a time tries again every
    RECONNECT_INTERVAL seconds. The transitions down and up are logged once each.
    """

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - exercised through failover check
            raise ImportError(REDIS_MISSING) from None
        self.url = url
        self.client: Any = self._make(sync=True)
        import redis

        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, asyncio.TimeoutError)
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._trying = False
        self._logged_at = 0.0
        self._scripts: dict[int, dict[str, Any]] = {}
        self._aclients: dict[asyncio.AbstractEventLoop, Any] = {}

    def _make(self, *, sync: bool) -> Any:
        import redis
        import redis.asyncio
        from redis.backoff import NoBackoff

        # No redis-py retries (they would multiply the wait on a dead server) and short timeouts:
        # breaker bookkeeping must never hold a call up for long.
        if sync:
            from redis.retry import Retry

            return redis.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT,
                                        socket_connect_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0))
        from redis.asyncio.retry import Retry as AsyncRetry

        return redis.asyncio.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT,
                                            socket_connect_timeout=SOCKET_TIMEOUT, retry=AsyncRetry(NoBackoff(), 0))

    @property
    def reachable(self) -> bool:
        """False while Redis is known to be down."""
        return not self._down

    def _script(self, client: Any, name: str) -> Any:
        scripts = self._scripts.get(id(client))
        if scripts is None:
            scripts = self._scripts[id(client)] = {k: client.register_script(v) for k, v in _SCRIPTS.items()}
        return scripts[name]

    def _aclient(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                for dead in [lp for lp in self._aclients if lp.is_closed()]:
                    self._scripts.pop(id(self._aclients.pop(dead)), None)
                client = self._aclients[loop] = self._make(sync=False)
            return client

    def _enter(self) -> bool | None:
        """None: skip Redis for now; True: this caller is the one trying it again; False: normal."""
        if not self._down:
            return False
        now = time.monotonic()
        with self._lock:
            if not self._down:
                return False
            if self._trying or now < self._retry_at:
                return None
            self._trying = True
            return True

    def _leave(self, trying: bool, error: BaseException | None) -> None:
        if trying:
            self._trying = False
        if error is not None:
            self._failed(error)
        elif self._down:
            self._recovered()

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        trying = self._enter()
        if trying is None:
            return None
        try:
            result = self._script(self.client, name)(keys=keys, args=args)
        except self.errors as exc:
            self._leave(trying, exc)
            return None
        self._leave(trying, None)
        return result

    async def arun(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        trying = self._enter()
        if trying is None:
            return None
        try:
            result = await self._script(self._aclient(), name)(keys=keys, args=args)
        except self.errors as exc:
            self._leave(trying, exc)
            return None
        self._leave(trying, None)
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

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            self._scripts.pop(id(client), None)
            try:
                await client.aclose()
            except self.errors:
                pass
        self.close()

    def __repr__(self) -> str:
        return f"<RedisLink {mask_url(self.url)}>"


# ---------------------------------------------------------------------------------------------
# One provider's shared state


@dataclass(frozen=True, slots=True)
class SharedAdmission:
    state: str
    wait: float  # seconds until a probe is due (open), or until the probe's lease ends (half-open)
    probe: bool  # this caller is the probe


@dataclass(frozen=True, slots=True)
class SharedJudgement:
    state: str
    failures: int  # consecutive failures after this verdict
    tripped: bool  # this verdict opened the breaker


@dataclass(frozen=True, slots=True)
class SharedSnapshot:
    state: str
    failures: int
    probe_in: float  # seconds until an open breaker lets a probe through (0 otherwise)
    probe_lease: float | None  # seconds left on the lease of a probe in flight
    trips: int
    opened_at: datetime | None
    first_chunks: tuple[float, ...] = ()  # the fleet's recent first-chunk times, seconds (newest first)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


_tokens = itertools.count(1)
_RANDOM = os.urandom(6).hex()


class RedisBreakerStore:
    """One provider's breaker in Redis. Every method returns None when Redis is unreachable: the
    Breaker then decides with its local state."""

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self.prefix = prefix
        k = self._key
        self._admit_keys = [k("state"), k("opened_at"), k("probe"), k("admitted")]
        self._record_keys = [k("state"), k("fail_counter"), k("probe"), k("opened_at"), k("trips"), k("admitted"),
                             k("decided"), k("decided_at_run"), k("first_chunks")]
        self._snapshot_keys = [k("state"), k("fail_counter"), k("opened_at"), k("probe"), k("trips"),
                               k("first_chunks")]

    def _key(self, field: str) -> str:
        return f"{self.prefix}:{field}"

    @staticmethod
    def token() -> str:
        """A token unique across the fleet for one admission's probe lease (cheap: no uuid per call;
        the pid is read at each call, so forked children never share a parent's tokens)."""
        return f"{os.getpid():x}-{_RANDOM}-{next(_tokens)}"

    # admission

    def _admit_args(self, reset_timeout: float, lease: float, token: str) -> list[Any]:
        return [_ms(reset_timeout), max(1, _ms(lease)), token]

    @staticmethod
    def _admission(got: Any) -> SharedAdmission | None:
        return None if got is None else SharedAdmission(_text(got[0]), int(got[1]) / 1000, bool(got[2]))

    def admit(self, reset_timeout: float, lease: float, token: str) -> SharedAdmission | None:
        return self._admission(self.link.run("admit", self._admit_keys, self._admit_args(reset_timeout, lease, token)))

    async def aadmit(self, reset_timeout: float, lease: float, token: str) -> SharedAdmission | None:
        args = self._admit_args(reset_timeout, lease, token)
        return self._admission(await self.link.arun("admit", self._admit_keys, args))

    # verdicts

    @staticmethod
    def _record_args(verdict: str, decided: bool, token: str | None, settings: BreakerSettings,
                     first_chunk_s: float | None) -> list[Any]:
        first = "" if first_chunk_s is None else _ms(first_chunk_s)
        return [token or "", verdict, int(decided), settings.fail_max, settings.failure_rate, first, SAMPLES]

    @staticmethod
    def _judgement(got: Any) -> SharedJudgement | None:
        return None if got is None else SharedJudgement(_text(got[0]), int(got[1]), bool(got[2]))

    def record(self, verdict: str, decided: bool, token: str | None, settings: BreakerSettings,
               first_chunk_s: float | None = None) -> SharedJudgement | None:
        args = self._record_args(verdict, decided, token, settings, first_chunk_s)
        return self._judgement(self.link.run("record", self._record_keys, args))

    async def arecord(self, verdict: str, decided: bool, token: str | None, settings: BreakerSettings,
                      first_chunk_s: float | None = None) -> SharedJudgement | None:
        args = self._record_args(verdict, decided, token, settings, first_chunk_s)
        return self._judgement(await self.link.arun("record", self._record_keys, args))

    # reading

    def snapshot(self, reset_timeout: float) -> SharedSnapshot | None:
        got = self.link.run("snapshot", self._snapshot_keys, [_ms(reset_timeout)])
        if got is None:
            return None
        lease, opened = int(got[3]), int(got[5])
        return SharedSnapshot(
            state=_text(got[0]), failures=int(got[1]), probe_in=int(got[2]) / 1000,
            probe_lease=lease / 1000 if lease >= 0 else None, trips=int(got[4]),
            opened_at=datetime.fromtimestamp(opened / 1000, UTC) if opened else None,
            first_chunks=tuple(int(ms) / 1000 for ms in got[6]))

    def __repr__(self) -> str:
        return f"<RedisBreakerStore {mask_url(self.link.url)} {self.prefix}>"

