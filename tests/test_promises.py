"""Promises under hostile input and load (issue 9): each test pins one way the router used to break a
promise, through the real SDKs over real sockets to the emulator."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import traceback
import warnings
from typing import Any

import pytest
from tests.conftest import MESSAGES, OTHER, make_router, run_async, run_sync

from failover import AllProvidersFailed, Router, StreamInterrupted
from failover.emulator import Emulator, steps
from failover.redact import Scrubber


def established_to(port: int) -> int:
    """This process's ESTABLISHED TCP connections to 127.0.0.1:`port` (from /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
                count += 1
    return count


# ---- 2. restart: the caller always learns that the answer starts over


def test_restart_after_a_failed_restart_attempt_still_signals_the_discard(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.cut(after=3), steps.server_error(500))
    with make_router(primary, midstream="restart") as router:
        out = call(router)
    assert out.error is None
    restarts = [c for c in out.chunks if c.restart]
    assert len(restarts) == 1
    shown_before = "".join(c.text for c in out.chunks[: out.chunks.index(restarts[0])])
    assert restarts[0].discard == shown_before and len(shown_before) > 0
    after = "".join(c.text for c in out.chunks[out.chunks.index(restarts[0]):])
    assert after == primary.answer == out.result.text
    assert [a.error_type for a in out.attempts] == ["cut", "server_error", None]


def test_restart_that_never_lands_keeps_the_partial_text(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.cut(after=3), steps.server_error(500), steps.server_error(500))
    fallback.script(steps.server_error(500), steps.server_error(500), steps.server_error(500))
    with make_router(primary, fallback, midstream="restart") as router:
        out = call(router)
    assert isinstance(out.error, StreamInterrupted)
    assert out.error.partial_text == out.text and len(out.text) > 0
    assert primary.answer.startswith(out.text)


# ---- 3, 4. keys: scrubbed exactly, whole chains, never ordinary words


def test_short_placeholder_keys_are_not_scrubbed_out_of_words() -> None:
    scrubber = Scrubber(["none", "x", "k", "local"])
    assert not scrubber
    text = "The model `nonexistent-model` does not exist; you exceeded your current quota"
    assert scrubber.scrub(text) == text


def test_scrubbing_covers_the_whole_exception_chain() -> None:
    key = "sk-live-0123456789abcdefABCDEF"
    scrubber = Scrubber([key])
    try:
        try:
            raise ConnectionError(f"upstream said: bad key {key}")
        except ConnectionError as inner:
            raise RuntimeError(f"wrapped {key}") from inner
    except RuntimeError as outer:
        scrubber.scrub_exception(outer)
        printed = "".join(traceback.format_exception(outer))
    assert key not in printed and "***" in printed


# ---- 5. input the router cannot send is the caller's error, never a provider's


def test_a_lone_surrogate_is_a_value_error_before_any_request(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    with make_router(primary, fallback, breaker={"fail_max": 1}) as router:
        for _ in range(5):
            with pytest.raises(ValueError, match=r"messages\[1\]\.content cannot be sent.*surrogate"):
                router.stream([MESSAGES[0], {"role": "user", "content": "hi \ud800 there"}])
        out = call(router)
        assert out.result is not None and out.result.provider == "primary"
        assert router.breaker("primary").state == "closed" and router.breaker("fallback").state == "closed"
    assert len(primary.requests) == 1 and not fallback.requests


# ---- 8. asyncio.run twice, then close: no noise, no connection left open


def test_asyncio_run_twice_then_close_leaves_nothing_established(emu, kind, caplog):
    primary = emu[kind]
    with warnings.catch_warnings():
        # The first loop's transports die with it (its sockets are shut down, not left open); that
        # the garbage collector then finds them unclosed is the loop's own business.
        warnings.simplefilter("ignore", ResourceWarning)
        router = make_router(primary)
        asyncio.run(router.acomplete(MESSAGES))
        asyncio.run(router.acomplete(MESSAGES))
        router.close()
        gc.collect()
    assert established_to(primary.port) == 0
    # no "Task exception was never retrieved ... Event loop is closed" from asyncio
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= 40]


# ---- 9. a shared breaker's Redis never blocks the event loop (tests/test_redis_breaker.py)

# ---- 10. a brownout is not an outage


def test_a_brownout_on_every_provider_still_serves_the_calls(emulators):
    """30 % of attempts fail on every provider, 100 callers at once: retries and failover serve
    them; no breaker opens for a provider that still serves most calls."""
    faults = [steps.server_error(503), steps.rate_limit(), steps.reset(), steps.cut(after=2)]
    emus = [Emulator(kind).start() for kind in ("openai", "anthropic", "openai")]
    try:
        for i, e in enumerate(emus):
            e.chaos(0.3, faults, seed=i)
        providers = [{"name": f"p{i}", "type": e.kind, "model": "m", "api_key": "test-key", "base_url": e.base_url}
                     for i, e in enumerate(emus)]
        config = {"providers": providers, "defaults": {
            "retry": {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.05},
            "timeouts": {"connect": 1.0, "first_token": 2.0, "idle": 2.0, "total": 10.0}}}

        async def go() -> list[Any]:
            async with Router.from_dict(config) as router:
                async def caller() -> list[Any]:  # 100 callers, 3 calls each: steady concurrency
                    return [await run_async(router) for _ in range(3)]

                return [o for got in await asyncio.gather(*[caller() for _ in range(100)]) for o in got]

        outcomes = asyncio.run(go())
    finally:
        for e in emus:
            e.stop()
    served = [o for o in outcomes if o.result is not None]
    assert len(served) >= 297  # ≥ 99 %
    assert all(o.result.text == emus[0].answer for o in served)


# ---- 11. no time wasted on faults that will repeat


def test_the_same_malformed_event_at_the_same_place_is_not_tried_a_third_time(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(*[steps.malformed(after=0)] * 3)
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.result is not None and out.result.provider == "fallback"
    assert [a.error_type for a in out.attempts] == ["malformed_event", "malformed_event", None]
    assert len(primary.requests) == 2


def test_a_failed_probe_moves_on_at_once(emu, kind):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.server_error(503))
    breaker = {"fail_max": 1, "reset_timeout": 0.2, "probe": "request"}  # the caller's request is the probe
    with make_router(primary, fallback, breaker=breaker,
                     retry={"initial_backoff": 0.5, "max_backoff": 0.5}) as router:
        run_sync(router)
        time.sleep(0.25)
        t0 = time.monotonic()
        out = run_sync(router)  # this call carries the probe; it fails
        elapsed = time.monotonic() - t0
    assert out.attempts[0].outcome == "error" and out.attempts[0].breaker_state == "open"
    assert out.result.provider == "fallback"
    assert elapsed < 0.4  # no retry backoff slept on a provider whose breaker just opened again


def test_a_breaker_that_opens_ends_the_retries_there(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(*[steps.server_error(503)] * 3)
    with make_router(primary, fallback, breaker={"fail_max": 2, "failure_rate": 0}) as router:
        out = call(router)
    assert [(a.provider, a.error_type) for a in out.attempts] == [
        ("primary", "unavailable"), ("primary", "unavailable"), ("fallback", None)]
    assert out.attempts[1].breaker_state == "open"


# ---- 12. states readable from the API


def test_a_rejected_reload_is_readable_from_the_router(emu, tmp_path):
    primary = emu["openai"]
    path = tmp_path / "config.yaml"
    entry = f"{{name: p, type: openai, model: m, api_key: k, base_url: '{primary.base_url}'}}"
    path.write_text(f"providers:\n  - {entry}\n")
    with Router.from_yaml(path, watch=True, watch_interval=0.05) as router:
        assert router.last_reload_error is None
        path.write_text("providers: [oops\n")
        deadline = time.monotonic() + 3
        while router.last_reload_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert router.last_reload_error is not None and "config.yaml" in str(router.last_reload_error)
        assert run_sync(router).result.provider == "p"  # still serving the previous config


def test_a_host_that_does_not_resolve_is_labelled_dns(emu):
    entry = {"name": "nowhere", "type": "openai", "model": "m", "api_key": "k",
             "base_url": "http://failover-test.invalid/v1"}
    fallback = {"name": "ok", "type": "anthropic", "model": "m", "api_key": "k", "base_url": emu["anthropic"].base_url}
    with Router.from_dict({"providers": [entry, fallback], "defaults": {"retry": {"max_attempts": 1}}}) as router:
        out = run_sync(router)
    assert out.result is not None and out.result.provider == "ok"
    assert out.attempts[0].error_type == "dns"


def test_every_failure_is_an_allprovidersfailed_with_the_real_cause(emu, kind, call):
    primary = emu[kind]
    primary.script(*[steps.quota()])
    with make_router(primary) as router:
        out = call(router)
    assert isinstance(out.error, AllProvidersFailed)
    assert [a.error_type for a in out.attempts] == ["quota"]
    assert getattr(out.error.__cause__, "status_code", None) in (400, 429)  # the SDK's own error


# ---- 1. no call outlives its deadline, whatever the server does byte by byte


@pytest.mark.parametrize("trickle", ["headers", "body"])
def test_a_server_that_trickles_bytes_cannot_hold_a_call(emu, kind, call, trickle):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    step = steps.trickle_headers(0.2) if trickle == "headers" else steps.trickle_body(0.2)
    primary.script(step)
    with make_router(primary, fallback, timeouts={"first_token": 1.0, "idle": 1.0, "total": 3.0}) as router:
        t0 = time.monotonic()
        out = call(router)
        elapsed = time.monotonic() - t0
    first = out.attempts[0]
    assert first.provider == "primary" and first.error_type in ("timeout_first_token", "timeout_idle")
    assert first.duration_s < 1.5  # the attempt's deadline held although bytes kept coming
    assert elapsed < 3.5  # the call's deadline too


def test_a_trickled_header_wait_is_cut_by_the_call_deadline(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.trickle_headers(0.2))
    with make_router(primary, retry={"max_attempts": 1},
                     timeouts={"connect": 0.5, "first_token": 1.0, "idle": 1.0, "total": 1.0}) as router:
        t0 = time.monotonic()
        out = call(router)
        elapsed = time.monotonic() - t0
    assert isinstance(out.error, AllProvidersFailed)
    assert out.attempts[0].error_type == "timeout_total"
    assert elapsed < 1.6


# ---- 3. a key echoed by a provider never leaves the router


@pytest.mark.parametrize("where", ["status", "inband"])
def test_an_echoed_key_is_scrubbed_everywhere_a_traceback_or_a_span_would_show_it(emu, kind, where):
    key = "sk-test-ECHOED-0123456789abcdefXYZ"
    primary = emu[kind]
    step = steps.echo_key(401, prefix_len=185) if where == "status" else steps.echo_key(prefix_len=185, after=2)
    primary.script(step)
    with make_router(primary, retry={"max_attempts": 1}, primary_opts={"api_key": key}) as router:
        out = run_sync(router)
    assert out.error is not None
    printed = "".join(traceback.format_exception(out.error))  # what logging.exception and trackers print
    assert key[:-1] not in printed and key[1:] not in printed
    for a in out.attempts:
        assert a.message is None or (key[:12] not in a.message and key[-12:] not in a.message)
    assert key[-12:] not in str(out.error) and "***" in printed


# ---- 6. text that looks like line ends to str.splitlines is plain text


def test_raw_line_separators_in_the_answer_arrive_as_text(emu, kind, call):
    primary = emu[kind]
    text = "one\u2028two\u2029three\u0085four \x1cfive"
    primary.script(steps.ok(text))
    with make_router(primary) as router:
        out = call(router)
    assert out.error is None and out.result.text == text
    assert [a.outcome for a in out.attempts] == ["ok"]


# ---- 11. content the router does not represent is counted, never a silent success


def test_thinking_before_the_answer_is_counted_and_the_answer_served(emu, caplog):
    primary = emu["anthropic"]
    primary.script(steps.thinking())
    with make_router(primary) as router:
        out = run_sync(router)
    assert out.result.text == primary.answer
    assert any("does not represent (thinking)" in r.getMessage() for r in caplog.records)


def test_an_answer_of_only_thinking_fails_over(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.only_thinking())
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.summary() == [("primary", "error", "unrepresented_content"), ("fallback", "ok", None)]
    assert out.result.text == fallback.answer


def test_an_unknown_delta_kind_is_counted_not_dropped(emu, kind):
    primary = emu[kind]
    primary.script(steps.unknown_delta())
    with make_router(primary) as router:
        events = []
        router.listeners.append(events.append)
        out = run_sync(router)
    assert out.result.text.endswith(primary.answer)  # the text around the unknown kind is served
    from failover.events import AttemptEnded

    [ended] = [e for e in events if isinstance(e, AttemptEnded)]
    assert ended.decoder.unrepresented and sum(ended.decoder.unrepresented.values()) >= 1


def test_a_stream_that_stalls_and_is_then_closed_moves_to_the_next_provider(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.stall_then_close(after=3, seconds=0.7))  # idle is 1 s: quiet for over half
    with make_router(primary, fallback, midstream="resume") as router:
        out = call(router)
    assert [(a.provider, a.error_type) for a in out.attempts] == [("primary", "stalled"), ("fallback", None)]
    assert out.result.text == primary.answer and len(primary.requests) == 1
