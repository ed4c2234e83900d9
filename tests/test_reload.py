"""Live config reload (docs/fleet.md): `Router.from_yaml(path, watch=True)` and `router.reload()`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from tests.conftest import FAST_DEFAULTS, MESSAGES, OTHER, provider_entry, run_async, run_sync

from failover import ConfigError, Router
from failover.emulator import steps

WATCH = 0.05  # seconds between two looks at the file


def chain(emu: dict[str, Any], order: list[str], **defaults: Any) -> dict[str, Any]:
    """Providers named after their emulator kind, in `order`."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in FAST_DEFAULTS.items()}
    for key, value in defaults.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return {"providers": [provider_entry(name, emu[name]) for name in order], "defaults": merged}


def write(path: Any, config: dict[str, Any] | str) -> None:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the router did not pick up the edit"
        time.sleep(0.01)


def test_watch_applies_a_valid_edit_to_new_calls(emu, tmp_path):
    path = tmp_path / "config.yaml"
    write(path, chain(emu, ["openai", "anthropic"]))
    with Router.from_yaml(path, watch=True, watch_interval=WATCH) as router:
        assert run_sync(router).result.provider == "openai"
        old = router.config
        write(path, chain(emu, ["anthropic", "openai"]))
        wait_for(lambda: router.config is not old)
        assert [r.name for r in router.routes] == ["anthropic", "openai"]
        assert run_sync(router).result.provider == "anthropic"


def test_watch_works_for_async_callers(emu, tmp_path):
    path = tmp_path / "config.yaml"
    write(path, chain(emu, ["openai", "anthropic"]))

    async def app() -> list[str]:
        router = Router.from_yaml(path, watch=True, watch_interval=WATCH)
        try:
            served = [(await run_async(router)).result.provider]
            old = router.config
            write(path, chain(emu, ["anthropic", "openai"]))
            while router.config is old:  # the event loop keeps running while the watcher reloads
                await asyncio.sleep(0.01)
            served.append((await run_async(router)).result.provider)
            return served
        finally:
            await router.aclose()

    assert asyncio.run(app()) == ["openai", "anthropic"]


def test_a_bad_edit_is_logged_and_the_last_good_config_keeps_serving(emu, tmp_path, caplog):
    path = tmp_path / "config.yaml"
    write(path, chain(emu, ["openai", "anthropic"]))
    caplog.set_level(logging.ERROR, logger="failover")
    with Router.from_yaml(path, watch=True, watch_interval=WATCH) as router:
        good = router.config
        bad = chain(emu, ["anthropic", "openai"])
        bad["defaults"]["retry"]["max_attempts"] = 0
        write(path, bad)
        wait_for(lambda: any("reload rejected" in r.getMessage() for r in caplog.records))
        [record] = [r for r in caplog.records if "reload rejected" in r.getMessage()]
        assert record.name == "failover" and record.levelno == logging.ERROR
        assert "defaults.retry.max_attempts" in record.getMessage() and str(path) in record.getMessage()
        assert router.config is good
        assert run_sync(router).result.provider == "openai"

        write(path, "providers: [unclosed\n")  # not even YAML: rejected the same way, logged once
        wait_for(lambda: len([r for r in caplog.records if "reload rejected" in r.getMessage()]) == 2)
        time.sleep(5 * WATCH)
        assert len([r for r in caplog.records if "reload rejected" in r.getMessage()]) == 2
        assert router.config is good

        write(path, chain(emu, ["anthropic", "openai"]))  # fixed: applied
        wait_for(lambda: router.config is not good)
        assert run_sync(router).result.provider == "anthropic"


def test_explicit_reload_raises_on_a_bad_file_and_keeps_the_config(emu, tmp_path):
    path = tmp_path / "config.yaml"
    write(path, chain(emu, ["openai", "anthropic"]))
    with Router.from_yaml(path) as router:
        good, routes = router.config, router.routes
        write(path, chain(emu, ["openai", "anthropic"], timeouts={"first_token": 50.0}))  # above total
        with pytest.raises(ConfigError, match=r"first_token"):
            router.reload()
        assert router.config is good and router.routes is routes
        write(path, chain(emu, ["anthropic"]))
        assert [p.name for p in router.reload().providers] == ["anthropic"]
        assert run_sync(router).result.provider == "anthropic"
    with pytest.raises(RuntimeError, match="not built from a file"), \
            Router.from_dict(chain(emu, ["openai"])) as plain:
        plain.reload()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_in_flight_finishes_on_the_config_it_started_with(emu, tmp_path, mode):
    path = tmp_path / "config.yaml"
    write(path, chain(emu, ["openai", "anthropic"]))
    emu["openai"].script(steps.ok("The answer that was already streaming when the file changed.", chunk_delay=0.05))
    router = Router.from_yaml(path)
    old_provider = router.routes[0].provider

    def remove_openai() -> None:
        write(path, chain(emu, ["anthropic"]))
        router.reload()

    if mode == "sync":
        with router:
            with router.stream(MESSAGES) as stream:
                chunks = [next(iter(stream))]
                old_client = old_provider._client
                remove_openai()  # the provider serving this stream is gone from the new config
                chunks.extend(stream)
            result = stream.result
            after = run_sync(router)
    else:
        async def go() -> tuple[list[Any], Any, Any]:
            try:
                async with router.astream(MESSAGES) as stream:
                    it = aiter(stream)
                    got = [await anext(it)]
                    remove_openai()
                    got.extend([c async for c in it])
                return got, stream.result, await run_async(router)
            finally:
                await router.aclose()

        chunks, result, after = asyncio.run(go())
    assert {c.provider for c in chunks} == {"openai"} and len(chunks) > 2
    assert result.provider == "openai" and result.text == "".join(c.text for c in chunks)
    assert [a.outcome for a in result.attempts] == ["ok"]
    assert after.result.provider == "anthropic"
    # Retired by the reload, closed with the router (async: the loop's client is closed and forgotten).
    if mode == "sync":
        assert old_client is not None and old_client.is_closed()
    else:
        assert old_provider._aclients == {}


def test_breaker_state_survives_a_reload_and_takes_new_settings(emu, tmp_path, kind):
    path = tmp_path / "config.yaml"
    other = OTHER[kind]
    write(path, chain(emu, [kind, other], breaker={"fail_max": 2, "reset_timeout": 30}, retry={"max_attempts": 1}))
    emu[kind].down_for(60, steps.server_error(503))
    with Router.from_yaml(path) as router:
        run_sync(router)
        run_sync(router)
        breaker = router.breaker(kind)
        assert breaker.state == "open"
        budget = router.routes[0].budget
        edited = chain(emu, [other, kind], breaker={"fail_max": 7, "reset_timeout": 30},
                       retry={"max_attempts": 1})
        write(path, edited)
        router.reload()
        assert router.breaker(kind) is breaker and breaker.state == "open"
        assert breaker.settings.fail_max == 7
        assert router.routes[1].budget is budget  # the retry budget's history stays too
        # A provider whose client settings are unchanged keeps its SDK client (and connections).
        write(path, chain(emu, [kind, other], breaker={"fail_max": 7, "reset_timeout": 30},
                          retry={"max_attempts": 1}))
        provider = router.routes[1].provider
        router.reload()
        assert router.routes[0].provider is provider
        outcome = run_sync(router)
        assert outcome.attempts[0].outcome == "skipped" and "breaker open" in outcome.attempts[0].message
        assert len(emu[kind].requests) == 2  # nothing more reached the tripped provider


def test_close_stops_the_watcher(emu, tmp_path):
    path = tmp_path / "config.yaml"
    write(path, chain(emu, ["openai"]))
    router = Router.from_yaml(path, watch=True, watch_interval=WATCH)
    watcher = router._watcher
    assert watcher is not None and watcher.running
    router.close()
    assert not watcher.running
    write(path, chain(emu, ["anthropic"]))
    time.sleep(3 * WATCH)
    assert [r.name for r in router.routes] == ["openai"]
