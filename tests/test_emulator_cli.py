"""Fault specs (`parse_faults`) and `python -m failover.emulator`: both emulators, a config, Ctrl-C."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
import yaml

from failover import Router
from failover.emulator import Emulator, parse_faults, steps
from failover.emulator.__main__ import main
from failover.emulator.faults import STEPS

USER = [{"role": "user", "content": "Hello"}]


# ---------------------------------------------------------------- parse_faults


@pytest.mark.parametrize(("spec", "expected"), [
    ("503x2,ok", [("server_error", {"openai": 503}), ("server_error", {"openai": 503}), ("ok", {})]),
    ("rate_limit:retry_after=1", [("rate_limit", {"headers": (("retry-after", "1"),)})]),
    ("cut:after=3", [("cut", {"after": 3, "how": "close"})]),
    ("cut:3,how=reset", [("cut", {"after": 3, "how": "reset"})]),
    ("hang", [("hang", {})]),
    ("stall:after=5,seconds=3", [("stall", {"after": 5, "seconds": 3.0})]),
    ("stall:after=5,seconds=250ms,ok", [("stall", {"after": 5, "seconds": 0.25}), ("ok", {})]),
    ("quota", [("quota", {})]),
    ("tool_calls", [("tool_calls", {})]),
    ("429:retry_after=2", [("status", {"openai": 429, "headers": (("retry-after", "2"),)})]),
    ("404", [("status", {"openai": 404})]),
    ("echo_key:status=403,prefix_len=190,after=2", [("echo_key", {"after": 2})]),
    (" hangx2 , ok ", [("hang", {}), ("hang", {}), ("ok", {})]),
    ("", []),
])
def test_parse_faults(spec: str, expected: list[tuple[str, dict[str, Any]]]) -> None:
    faults = parse_faults(spec)
    assert faults.down is None
    assert [s.name for s in faults.steps] == [name for name, _ in expected]
    for step, (_, attrs) in zip(faults.steps, expected, strict=True):
        for attr, value in attrs.items():
            got = getattr(step, attr)
            assert (got.status if attr == "openai" else got) == value


def test_parse_faults_down_window() -> None:
    faults = parse_faults("down:10s,cut:after=3")
    assert faults.down == 10.0 and [s.name for s in faults.steps] == ["cut"]
    assert parse_faults("down:1500ms").down == 1.5


def test_every_step_has_a_spec_name() -> None:
    assert set(STEPS) == {name for name in steps.__all__ if name.islower()} - {"status"}  # status: a number
    needs_args = {"slow_first": "1", "slow_headers": "1", "cut": "1", "stall": "1", "malformed": "1",
                  "inband_error": "1", "stall_then_close": "1,seconds=1", "trickle_headers": "0.1",
                  "trickle_body": "0.1"}
    for name in STEPS:
        spec = f"{name}:{needs_args[name]}" if name in needs_args else name
        assert [s.name for s in parse_faults(spec).steps] == [name]


@pytest.mark.parametrize(("spec", "token", "problem"), [
    ("503x2,explode", "explode", "unknown step 'explode'"),
    ("cut:after=three", "cut:after=three", "'three' is not a whole number"),
    ("stall:after=1,bogus=2", "stall:after=1,bogus=2", "stall has no argument 'bogus' (it takes after, seconds)"),
    ("600", "600", "600 is not an HTTP error status"),
    ("down", "down", "down needs a duration"),
    ("down:1s,down:2s", "down:2s", "only one down window"),
    ("slow_first:soon", "slow_first:soon", "'soon' is not a duration"),
    ("cut:how=explode,after=1", "cut:how=explode,after=1", "how must be 'close' or 'reset'"),
    ("hangx0", "hangx0", "a repeat count must be at least 1"),
    ("hang:3", "hang:3", "only the first argument may be given without a name"),
    ("cut:after=1,after=2", "cut:after=1,after=2", "argument 'after' given twice"),
])
def test_parse_faults_names_the_bad_token(spec: str, token: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_faults(spec)
    assert f"bad token {token!r}" in str(info.value) and problem in str(info.value)


def test_parse_faults_empty_token() -> None:
    with pytest.raises(ValueError, match="empty token"):
        parse_faults("503,,ok")


def test_faults_apply_to_an_emulator() -> None:
    with Emulator("openai") as emu:
        parse_faults("down:0.3s,429x1,ok").apply(emu)
        client = openai.OpenAI(api_key="k", base_url=emu.base_url, max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=USER)
        time.sleep(0.35)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m", messages=USER)
        assert client.chat.completions.create(model="m", messages=USER).choices[0].finish_reason == "stop"
        client.close()
        assert [r.status for r in emu.wait_for_requests(3)] == [503, 429, 200]


# ---------------------------------------------------------------- the command line


class Cli:
    """`python -m failover.emulator` in a child process, read until it serves."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "failover.emulator", "--chunk-delay", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        assert self.proc.stderr is not None
        while not self.err or self.err[-1] != "serving until Ctrl-C":
            line = self.proc.stderr.readline()
            assert line, f"the emulator exited early: {self.err}"
            self.err.append(line.rstrip("\n"))

    def urls(self) -> dict[str, str]:
        return {line.split()[0]: line.split(" on ")[1].split()[0] for line in self.err if " emulator on " in line}

    def interrupt(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def cli() -> Iterator[list[Cli]]:
    started: list[Cli] = []
    yield started
    for c in started:
        c.kill()


def test_cli_writes_a_config_a_router_can_use(cli: list[Cli], tmp_path: pathlib.Path) -> None:
    config = tmp_path / "emulators.yaml"
    c = Cli("--openai-fault", "quota", "--answer", "hello from the emulator", "--config-out", str(config))
    cli.append(c)
    assert f"config written to {config}" in c.err
    assert c.err[0].startswith("openai emulator on http://127.0.0.1:") and c.err[0].endswith("(faults: quota)")
    router = Router.from_yaml(config)
    try:
        with router.stream(USER) as s:
            text = "".join(chunk.text for chunk in s)
            result = s.result
    finally:
        router.close()
    assert text == "hello from the emulator"
    assert result is not None and result.provider == "anthropic"  # the quota fault sent it to the fallback
    code, out, err = c.interrupt()
    assert (code, out) == (130, "")
    assert err.strip().splitlines() == ["emulators stopped"]  # one line, no traceback


def test_cli_faults_chaos_and_the_config_on_stdout(cli: list[Cli]) -> None:
    c = Cli("--anthropic-fault", "503", "--chaos", "1", "--chaos-faults", "429")
    cli.append(c)
    urls = c.urls()
    body = {"model": "m", "max_tokens": 5, "messages": USER}
    codes = [httpx2.post(urls["anthropic"] + "/v1/messages", json=body, headers={"x-api-key": "k"}).status_code
             for _ in range(3)]
    assert codes == [503, 429, 429]  # the script first, then chaos on every request
    assert httpx2.post(urls["openai"] + "/chat/completions", json=body,
                       headers={"authorization": "Bearer k"}).status_code == 429
    code, out, _ = c.interrupt()
    assert code == 130
    config = yaml.safe_load(out)
    assert [(p["name"], p["type"], p["api_key"], p["base_url"]) for p in config["providers"]] == [
        ("openai", "openai", "emulator", urls["openai"]), ("anthropic", "anthropic", "emulator", urls["anthropic"])]


@pytest.mark.parametrize(("args", "problem"), [
    (["--openai-fault", "503,explode"], "--openai-fault: fault spec '503,explode': bad token 'explode'"),
    (["--chaos", "2"], "--chaos: the rate must be between 0 and 1"),
    (["--chaos", "0.5", "--chaos-faults", "down:1s"], "--chaos-faults: a down window is not a chaos fault"),
    (["--chunk-delay", "-1"], "--chunk-delay: must be >= 0"),
])
def test_cli_refuses_bad_arguments(args: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    assert info.value.code == 2 and problem in err and out == ""
