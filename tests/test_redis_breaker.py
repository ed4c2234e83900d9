"""Breakers shared through a real redis-server by several OS processes (docs/fleet.md)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.conftest import FAST_DEFAULTS, OTHER, make_router, provider_entry, run_async, run_sync
from tests.fleet_worker import serve
from tests.redis_server import RedisServer

from failover import Router
from failover.cli import main
from failover.config import BreakerSettings, parse_config
from failover.emulator import steps
from failover.policies import redis_store
from failover.policies.breaker import Breaker, Verdict
from failover.policies.redis_store import RedisBreakerStore, RedisLink, key_prefix, namespace_for

PROCESSES = 3


class Fleet:
    """Worker processes (spawned, so nothing is inherited but the code) driven over pipes."""

    def __init__(self, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns = []
        self.procs = []
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=serve, args=(child,), name=f"fleet-{i}", daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            assert conn.poll(60), "a fleet worker did not start"
            assert conn.recv() == ("ready", None)

    def _receive(self, i: int, timeout: float) -> Any:
        conn = self.conns[i]
        assert conn.poll(timeout), f"fleet worker {i} did not answer within {timeout}s"
        status, value = conn.recv()
        assert status == "ok", f"fleet worker {i} failed:\n{value}"
        return value

    def ask(self, i: int, command: str, *args: Any, timeout: float = 30) -> Any:
        self.conns[i].send((command, args))
        return self._receive(i, timeout)

    def ask_all(self, command: str, *args: Any, timeout: float = 30) -> list[Any]:
        """The same command in every process at once."""
        for conn in self.conns:
            conn.send((command, args))
        return [self._receive(i, timeout) for i in range(len(self.conns))]

    def close(self) -> None:
        for i, conn in enumerate(self.conns):
            if self.procs[i].is_alive():
                conn.send(("exit", ()))
                conn.poll(10) and conn.recv()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    workers = Fleet(PROCESSES)
    yield workers
    workers.close()


def unique() -> str:
    return "t" + uuid.uuid4().hex[:10]


def fleet_config(primary: Any, fallback: Any, url: str, namespace: str, **breaker: Any) -> dict[str, Any]:
    defaults = {k: (dict(v) if isinstance(v, dict) else v) for k, v in FAST_DEFAULTS.items()}
    defaults["retry"] = {**defaults["retry"], "max_attempts": 1}
    defaults["breaker"] = {"fail_max": 2, "reset_timeout": 30.0, "storage": url, "namespace": namespace, **breaker}
    return {"providers": [provider_entry("primary", primary), provider_entry("fallback", fallback)],
            "defaults": defaults}


def test_a_trip_in_one_process_is_seen_by_the_others_on_their_next_call(emu, kind, fleet, redis_server):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    ns = unique()
    # failure_rate 0: the consecutive failures alone trip it (the rate rule has tests of its own)
    fleet.ask_all("router", "trip", fleet_config(primary, fallback, redis_server.url, ns, failure_rate=0))
    before = fleet.ask_all("calls", "trip")
    assert [r[0]["served"] for r in before] == ["primary"] * PROCESSES

    primary.reset()
    primary.down_for(60, steps.server_error(503))
    tripping = [fleet.ask(0, "calls", "trip")[0] for _ in range(2)]  # fail_max=2, in process 0 only
    assert [t["served"] for t in tripping] == ["fallback", "fallback"]
    assert len(primary.requests) == 2
    db = redis_server.client()
    assert db.get(f"failover:{ns}:primary:state") == "open"
    assert db.get(f"failover:{ns}:primary:trips") == "1"

    for i in range(1, PROCESSES):  # their own (local) breakers never saw a failure
        after = fleet.ask(i, "calls", "trip")[0]
        assert after["served"] == "fallback"
        provider, outcome, _, message = after["attempts"][0]
        assert (provider, outcome) == ("primary", "skipped")
        assert message.startswith("breaker open, probe in")
        assert fleet.ask(i, "breaker_state", "trip", "primary") == "open"
    assert len(primary.requests) == 2  # no other process sent anything to the failing provider


def test_exactly_one_probe_in_flight_across_processes(emu, kind, fleet, redis_server):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    ns = unique()
    fleet.ask_all("router", "probe", fleet_config(primary, fallback, redis_server.url, ns,
                                                  fail_max=1, reset_timeout=0.4, probe="request"))
    primary.down_for(60, steps.server_error(503))
    assert fleet.ask(0, "calls", "probe")[0]["served"] == "fallback"
    tripped_at = time.time()
    primary.reset()
    primary.script(steps.slow_first(0.6))  # the probe stays in flight while the others arrive
    threads = 4
    start = max(time.time() + 0.3, tripped_at + 0.5)
    results = [r for per_process in fleet.ask_all("calls", "probe", threads, start) for r in per_process]
    assert len(results) == PROCESSES * threads
    assert len(primary.requests) == 1
    served = sorted(r["served"] for r in results)
    assert served.count("primary") == 1 and served.count("fallback") == PROCESSES * threads - 1
    skips = [r["attempts"][0] for r in results if r["served"] == "fallback"]
    assert all(a[1] == "skipped" and "half-open, probe in flight" in a[3] for a in skips)
    db = redis_server.client()
    assert db.get(f"failover:{ns}:primary:state") == "closed"  # the probe's success closed it for all
    assert db.exists(f"failover:{ns}:primary:probe") == 0  # and freed its lease
    again = fleet.ask_all("calls", "probe")
    assert [r[0]["served"] for r in again] == ["primary"] * PROCESSES


def test_failure_counter_and_trip_are_atomic_across_processes(fleet, redis_server):
    prefix = key_prefix(unique(), "hammered")
    fail_max, threads, each = 40, 4, 25  # 300 concurrent failures from 12 threads in 3 processes
    start = time.time() + 0.5
    trips_here = fleet.ask_all("hammer", redis_server.url, prefix, fail_max, threads, each, start)
    db = redis_server.client()
    assert db.get(f"{prefix}:state") == "open"
    assert db.get(f"{prefix}:fail_counter") == str(fail_max)  # no overshoot past the trip
    assert db.get(f"{prefix}:trips") == "1"  # opened once, not once per process that crossed fail_max
    assert sum(trips_here) == 1  # exactly one verdict, in one process, opened it


def test_stragglers_after_the_trip_change_nothing(redis_server):
    """Verdicts of attempts admitted before the trip arrive after it: no overshoot, no second trip, and
    a late success neither resets the counter nor closes the breaker (only the probe's can)."""
    link = RedisLink(redis_server.url)
    storage = RedisBreakerStore(link, key_prefix(unique(), "p"))
    breaker = Breaker("p", BreakerSettings(fail_max=2, failure_rate=0, reset_timeout=60), probe_lease=5,
                      shared=storage)
    try:
        admitted = [breaker.admit(time.monotonic()) for _ in range(5)]
        assert all(a.allowed for a in admitted)
        for a in admitted[:4]:
            breaker.record(a, Verdict.FAILURE, time.monotonic())
        breaker.record(admitted[4], Verdict.SUCCESS, time.monotonic())
        assert breaker.state == "open" and breaker.fail_counter == 2 and breaker.trips_here == 1
        snapshot = storage.snapshot(60)
        assert snapshot is not None and snapshot.trips == 1
    finally:
        link.close()


def test_opened_at_has_millisecond_precision(redis_server):
    link = RedisLink(redis_server.url)
    storage = RedisBreakerStore(link, key_prefix(unique(), "p"))
    breaker = Breaker("p", BreakerSettings(fail_max=1, reset_timeout=0.3), probe_lease=5, shared=storage)
    try:
        breaker.record(breaker.admit(time.monotonic()), Verdict.FAILURE, time.monotonic())
        snapshot = storage.snapshot(0.3)
        opened_at = snapshot.opened_at if snapshot is not None else None
        assert opened_at is not None
        assert abs((datetime.now(UTC) - opened_at).total_seconds()) < 0.1  # whole seconds would be up to 1s off
        refused = breaker.admit(time.monotonic())
        assert not refused.allowed and refused.probe_in is not None and 0.15 < refused.probe_in <= 0.3
        assert 0.15 < breaker.probe_in(time.monotonic()) <= 0.3
        time.sleep(0.32)
        assert breaker.admit(time.monotonic()).probe
    finally:
        link.close()


def test_key_layout_and_default_namespace(emu, redis_server):
    primary, fallback = emu["openai"], emu["anthropic"]
    config = fleet_config(primary, fallback, redis_server.url, "unused")
    del config["defaults"]["breaker"]["namespace"]
    config["defaults"]["breaker"]["fail_max"] = 1
    config["telemetry"] = {"service_name": f"svc-{unique()}"}
    primary.down_for(60, steps.server_error(503))
    with Router.from_dict(config) as router:
        run_sync(router)
        provider = router.routes[0].config
        ns = namespace_for(provider, config["telemetry"]["service_name"])
        assert len(ns) == 12 and all(c in "0123456789abcdef" for c in ns)
        keys = set(redis_server.client().keys(f"failover:{ns}:*"))
        assert keys == {f"failover:{ns}:primary:{k}" for k in (
            "state", "fail_counter", "opened_at", "trips", "admitted", "decided", "decided_at_run")}
    # Stable: the same provider in another file order, or another process, gets the same namespace;
    # another app (service_name) or another model does not.
    reordered = parse_config({**config, "providers": config["providers"][::-1]})
    assert namespace_for(reordered.providers[1], config["telemetry"]["service_name"]) == ns
    assert namespace_for(provider, "another-app") != ns
    other_model = parse_config({**config, "providers": [{**config["providers"][0], "model": "other"}]})
    assert namespace_for(other_model.providers[0], config["telemetry"]["service_name"]) != ns


def test_redis_down_mid_test_calls_served_one_log_line_then_recovery(emu, caplog, monkeypatch):
    monkeypatch.setattr(redis_store, "RECONNECT_INTERVAL", 0.3)
    server = RedisServer().start()
    primary, fallback = emu["openai"], emu["anthropic"]
    ns = unique()
    state_key = f"failover:{ns}:primary:state"
    caplog.set_level(logging.WARNING, logger="failover.breaker")

    def lines(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    try:
        with make_router(primary, fallback, retry={"max_attempts": 1},
                         breaker={"fail_max": 2, "reset_timeout": 30, "storage": server.url,
                                  "namespace": ns, "failure_rate": 0}) as router:
            assert run_sync(router).result.provider == "primary"
            server.client().set(state_key, "open")  # Redis is what the router consults
            server.client().set(f"failover:{ns}:primary:opened_at", int(time.time() * 1000))
            assert run_sync(router).attempts[0].outcome == "skipped"
            server.client().delete(state_key)

            server.kill()
            t0 = time.monotonic()
            outcomes = [run_sync(router) for _ in range(10)]
            outcomes.append(asyncio.run(run_async(router)))
            assert [o.result.provider for o in outcomes] == ["primary"] * 11
            assert time.monotonic() - t0 < 5
            assert len(lines("is unreachable")) == 1
            assert "per-process state" in lines("is unreachable")[0]

            # The breaker still works, on this process's own state.
            primary.down_for(60, steps.server_error(503))
            assert [run_sync(router).result.provider for _ in range(2)] == ["fallback", "fallback"]
            skipped = run_sync(router)
            assert skipped.attempts[0].outcome == "skipped" and skipped.result.provider == "fallback"
            assert router.breaker("primary").state == "open"
            assert len(lines("is unreachable")) == 1  # still one line for the whole outage

            # Redis returns (empty: the shared state is authoritative again, the local one is dropped).
            primary.reset()
            server.start()
            time.sleep(0.35)
            assert run_sync(router).result.provider == "primary"
            assert len(lines("reachable again")) == 1
            server.client().set(state_key, "open")
            server.client().set(f"failover:{ns}:primary:opened_at", int(time.time() * 1000))
            assert run_sync(router).attempts[0].outcome == "skipped"
            assert router.breaker("primary").state == "open"
    finally:
        server.close()


# ------------------------------------------------------------------ failover status / check


def write_config(tmp_path: Any, primary: Any, fallback: Any, storage: str, ns: str) -> str:
    import yaml

    config = fleet_config(primary, fallback, storage, ns)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_status_reads_the_shared_state_from_redis(emu, redis_server, tmp_path, capsys):
    primary, fallback = emu["openai"], emu["anthropic"]
    ns = unique()
    path = write_config(tmp_path, primary, fallback, redis_server.url, ns)
    primary.down_for(60, steps.server_error(503))
    with Router.from_yaml(path) as router:
        run_sync(router)
        run_sync(router)
    assert main(["status", path]) == 0  # a fresh reader: nothing but Redis knows the state
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert rows["primary"].split()[1:3] == ["open", "2/2,"] and "opened 1x" in rows["primary"]
    assert "in 29." in rows["primary"] or "in 30.0s" in rows["primary"]
    assert f"failover:{ns}:primary" in rows["primary"]
    assert rows["fallback"].split()[1:3] == ["closed", "0/2"]
    assert "(2)" in rows["fallback"] and "(2)" not in rows["primary"]  # the first chunks of its 2 answers


def test_status_shows_the_fleet_s_first_chunk_times_and_the_hedge_delay_they_give(emu, redis_server, tmp_path,
                                                                                   capsys):
    import yaml

    primary, fallback = emu["openai"], emu["anthropic"]
    config = fleet_config(primary, fallback, redis_server.url, unique())
    config["defaults"]["hedge"] = {"after": "auto"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    primary.script(*[steps.slow_first(0.1)] * 20)
    with Router.from_yaml(path) as router:
        for _ in range(20):
            assert run_sync(router).result.provider == "primary"
    assert main(["status", str(path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    cells = rows["primary"].split()
    p50, p95 = float(cells[4].rstrip("s")), float(cells[6].rstrip("s"))
    assert 0.1 <= p50 <= p95 and cells[7] == "(20)"
    delay = float(cells[8].rstrip("s"))
    assert delay == pytest.approx(min(p95, 3 * p50), abs=0.006) and cells[9] == "(auto)"
    assert rows["fallback"].split()[4:7] == ["-", "0.50s", "(auto)"]  # no samples: half of first_token


def test_status_with_memory_storage_says_the_state_is_per_process(emu, tmp_path, capsys):
    path = write_config(tmp_path, emu["openai"], emu["anthropic"], "memory", unique())
    assert main(["status", path]) == 0
    out = capsys.readouterr().out
    assert "(per process)" in out and "a fresh process cannot see it" in out


def test_status_with_redis_unreachable_says_so_and_fails(emu, tmp_path, capsys):
    from tests.redis_server import free_port

    path = write_config(tmp_path, emu["openai"], emu["anthropic"], f"redis://127.0.0.1:{free_port()}/0", unique())
    assert main(["status", path]) == 1
    assert "Redis unreachable" in capsys.readouterr().out


def test_check_and_router_say_clearly_when_the_redis_extra_is_missing(emu, tmp_path, capsys, monkeypatch):
    path = write_config(tmp_path, emu["openai"], emu["anthropic"], "redis://127.0.0.1:6379/0", unique())
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now raises ImportError
    assert main(["check", path]) == 1
    assert "pip install 'failover[redis]'" in capsys.readouterr().err
    from failover import ConfigError

    with pytest.raises(ConfigError, match=r"providers\[0\]\.breaker\.storage: .*failover\[redis\]"):
        Router.from_yaml(path)


def test_the_shared_breaker_counts_the_whole_fleet_s_pending_attempts(redis_server):
    """The trip rule runs in Redis: attempts another process sent and that are still waiting for their
    first content keep a run of fast failures from tripping it; once failures are the share of what
    the fleet sent, it opens for everyone."""
    link = RedisLink(redis_server.url)
    prefix = key_prefix(unique(), "p")
    settings = BreakerSettings(fail_max=3, failure_rate=0.5, reset_timeout=60)
    here = Breaker("p", settings, probe_lease=5, shared=RedisBreakerStore(link, prefix))
    there = Breaker("p", settings, probe_lease=5, shared=RedisBreakerStore(link, prefix))
    now = time.monotonic
    try:
        pending = [there.admit(now()) for _ in range(6)]  # sent, no first content yet
        for _ in range(5):  # 5 in a row, but 5 of 11 sent
            assert here.record(here.admit(now()), Verdict.FAILURE, now()).state == "closed"
        judged = here.record(here.admit(now()), Verdict.FAILURE, now())  # 6 of 12: half
        assert judged.state == "open" and here.trips_here == 1
        assert not there.admit(now()).allowed
        assert there.record(pending[0], Verdict.SUCCESS, now()).state == "open"  # a straggler changes nothing
    finally:
        link.close()


def test_async_admission_and_verdicts_use_redis_without_blocking_the_loop(redis_server):
    link = RedisLink(redis_server.url)
    prefix = key_prefix(unique(), "p")
    breaker = Breaker("p", BreakerSettings(fail_max=1, failure_rate=0, reset_timeout=60), probe_lease=5,
                      shared=RedisBreakerStore(link, prefix))

    async def go() -> tuple[str, bool, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        admission = await breaker.aadmit(time.monotonic())
        judged = await breaker.arecord(admission, Verdict.FAILURE, time.monotonic())
        refused = await breaker.aadmit(time.monotonic())
        task.cancel()
        await link.aclose()
        return judged.state, refused.allowed, ticks

    state, allowed, ticks = asyncio.run(go())
    assert state == "open" and not allowed
    assert ticks > 3  # the loop kept running while the three round trips were in flight
    assert redis_server.client().get(f"{prefix}:state") == "open"


def test_one_background_probe_for_the_whole_fleet(emu, kind, fleet, redis_server):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    ns = unique()
    fleet.ask_all("router", "bg", fleet_config(primary, fallback, redis_server.url, ns, fail_max=1,
                                               reset_timeout=0.4))
    primary.down_for(60, steps.server_error(503))
    assert fleet.ask(0, "calls", "bg")[0]["served"] == "fallback"
    tripped_at = time.time()
    primary.reset()  # recovered
    threads = 4
    start = max(time.time() + 0.3, tripped_at + 0.5)
    results = [r for per_process in fleet.ask_all("calls", "bg", threads, start) for r in per_process]
    # No caller was the probe: none saw an error from the primary; a caller that came after the probe
    # closed the breaker may already be served by it.
    assert all(a[1] != "error" for r in results for a in r["attempts"])
    deadline = time.monotonic() + 3
    db = redis_server.client()
    while db.get(f"failover:{ns}:primary:state") != "closed" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert db.get(f"failover:{ns}:primary:state") == "closed"
    probes = [r for r in primary.requests if r.body.get("max_tokens") == 1]
    assert len(probes) == 1 and primary.requests[0] is probes[0]  # one probe, fleet-wide, before any caller
    served = sum(r["served"] == "primary" for r in results)
    assert len(primary.requests) == 1 + served
    again = fleet.ask_all("calls", "bg")
    assert [r[0]["served"] for r in again] == ["primary"] * PROCESSES
