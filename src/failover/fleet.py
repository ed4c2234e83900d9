"""What a router needs to run in a fleet and to change its config while it serves.

- `RouteBuilder`: config → routes, and on a reload the routes of a new config that keep what must
  survive: the breaker (its state, local and in Redis) and the retry budget of every provider whose
  name stays, and its SDK client while the client's settings are unchanged. One Redis client per
  storage URL is shared by the breakers of the router.
- `ConfigWatcher`: a daemon thread that polls the config file (inode, size, mtime; stdlib only) and
  calls back when it changed.

See docs/fleet.md.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from failover.errors import ConfigError
from failover.policies.breaker import Breaker
from failover.policies.budget import RetryBudget
from failover.policies.hedge import FirstChunks
from failover.policies.retry import RetryPolicy
from failover.providers import check_params, make_provider
from failover.request import CAPABILITIES
from failover.route import Route

if TYPE_CHECKING:
    from failover.config import Config, ProviderConfig
    from failover.policies.redis_store import RedisBreakerStore, RedisLink
    from failover.providers.base import Provider

log = logging.getLogger("failover")

# The ProviderConfig fields an SDK client (and the Provider object) is built from: while these stay
# equal, a reload keeps the provider's client and its open connections.
_CLIENT_FIELDS = ("type", "model", "base_url", "api_key", "params", "max_tokens")


def capabilities(p: ProviderConfig) -> frozenset[str]:
    """What the provider takes: its YAML `capabilities`, and for what they leave unset, its type's
    (both provider types take tools, images and JSON schema output)."""
    return frozenset(c for c in CAPABILITIES if getattr(p.capabilities, c) is not False)


def same_client(a: ProviderConfig, b: ProviderConfig) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in _CLIENT_FIELDS)


class RouteBuilder:
    """Builds a router's routes; owns the Redis clients and the SDK clients a reload retired."""

    def __init__(self) -> None:
        self._links: dict[str, RedisLink] = {}
        self._retired: list[Provider] = []
        self._lock = threading.Lock()

    def build(self, config: Config, previous: Sequence[Route] = ()) -> list[Route]:
        """The routes of `config`. Nothing of `previous` is changed unless the whole build succeeds
        (a ConfigError leaves the running routes as they were)."""
        check_params(config)
        with self._lock:
            storages = [self._storage(config, index, p, previous) for index, p in enumerate(config.providers)]
            old = {r.name: r for r in previous}
            routes: list[Route] = []
            for p, shared in zip(config.providers, storages, strict=True):
                prev = old.get(p.name)
                if prev is None:
                    breaker = Breaker(p.name, p.breaker, probe_lease=p.timeouts.total, shared=shared)
                    provider = make_provider(p)
                    budget = RetryBudget(p.retry.budget) if p.retry.budget is not None else None
                else:
                    breaker = prev.breaker
                    breaker.update(p.breaker, probe_lease=p.timeouts.total, shared=shared)
                    if same_client(prev.config, p):
                        provider = prev.provider
                        provider.config = p
                    else:
                        provider = make_provider(p)
                    budget = prev.budget
                    if p.retry.budget is None:
                        budget = None
                    elif budget is None:
                        budget = RetryBudget(p.retry.budget)
                    else:
                        budget.update(p.retry.budget)
                first_chunks = prev.first_chunks if prev is not None and prev.first_chunks else FirstChunks()
                routes.append(Route(provider, p, RetryPolicy(p.retry), breaker, budget, capabilities(p), first_chunks))
            kept = {id(r.provider) for r in routes}
            # Calls in flight may still stream through a retired client: it is closed with the router.
            self._retired.extend(r.provider for r in previous if id(r.provider) not in kept)
            return routes

    def _storage(self, config: Config, index: int, p: ProviderConfig,
                 previous: Sequence[Route]) -> RedisBreakerStore | None:
        url = p.breaker.storage
        if url == "memory":
            return None
        from failover.policies.redis_store import RedisBreakerStore, RedisLink, key_prefix, namespace_for

        link = self._links.get(url)
        if link is None:
            try:
                link = self._links[url] = RedisLink(url)
            except ImportError as e:
                raise ConfigError(str(e), source=config.source, path=f"providers[{index}].breaker.storage") from None
        prefix = key_prefix(namespace_for(p, config.telemetry.service_name), p.name)
        for route in previous:
            shared = route.breaker.shared
            if shared is not None and shared.link is link and shared.prefix == prefix:
                return shared
        return RedisBreakerStore(link, prefix)

    def close(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for provider in retired:
            provider.close()
        for link in list(self._links.values()):
            link.close()

    async def aclose(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for provider in retired:
            await provider.aclose()
        for link in list(self._links.values()):
            await link.aclose()


Signature = tuple[int, int, int, int]


def file_signature(path: str) -> Signature | None:
    """What changes when the file is edited in place or replaced (inode, device, size, mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns


class ConfigWatcher:
    """Polls one file from a daemon thread; calls `on_change()` once per change it sees.

    A file that is missing for a moment (an editor that writes a temporary file and renames it) is
    waited for; a change is acted on once the file stayed the same for `settle` seconds, so a file
    caught half-written is not reported as a broken config.
    """

    def __init__(self, path: str, on_change: Callable[[], None], *, interval: float = 1.0,
                 settle: float = 0.05) -> None:
        if interval <= 0:
            raise ValueError("watch_interval must be > 0")
        self.path = path
        self.interval = interval
        self.settle = min(settle, interval)
        self._on_change = on_change
        self._seen = file_signature(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-config-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            current = file_signature(self.path)
            if current is None or current == self._seen:
                continue
            while not self._stop.wait(self.settle):  # wait until the writer is done
                again = file_signature(self.path)
                if again == current:
                    break
                current = again
            if self._stop.is_set() or current is None:
                continue
            self._seen = current
            try:
                self._on_change()
            except Exception:  # never let the watcher die: the next edit deserves a try too
                log.exception("failover: reloading %s failed", self.path)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
