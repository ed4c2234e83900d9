"""The `failover` command as an operator runs it: a real process, real files, the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from failover.emulator import steps

ROOT = Path(__file__).resolve().parent.parent


def failover(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run([sys.executable, "-m", "failover.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=timeout, cwd=ROOT)


def test_check_reports_missing_keys_by_name_and_fails_when_none_is_usable():
    out = failover("check", "config.yaml")
    assert out.returncode == 1
    assert "MISSING: $OPENAI_API_KEY is not set" in out.stdout
    assert "MISSING: $ANTHROPIC_API_KEY is not set" in out.stdout
    assert "no provider has an API key" in out.stderr


def test_check_prints_the_resolved_chain_with_keys_masked():
    secret = "sk-test-abcdefghijklmnopqrstuvwxyz123456"
    out = failover("check", "config.yaml", env={"OPENAI_API_KEY": secret, "ANTHROPIC_API_KEY": "sk-ant-xyz"})
    assert out.returncode == 0, out.stderr
    assert secret not in out.stdout + out.stderr
    assert "3456" in out.stdout  # the last four characters identify the key
    lines = out.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "openai" in line and "gpt-4o" in line)
    second = next(i for i, line in enumerate(lines) if "anthropic" in line and "claude" in line)
    assert first < second


def test_check_names_file_key_path_and_line_of_an_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  - name: a\n    type: openai\n    model: m\n    api_key: k\n"
                   "    retry:\n      max_attempts: 0\n")
    out = failover("check", str(bad))
    assert out.returncode == 2
    assert f"{bad}:7" in out.stderr and "providers[0].retry.max_attempts" in out.stderr


def test_stream_streams_through_the_chain_and_prints_attempts(tmp_path: Path, emu):
    primary, fallback = emu["openai"], emu["anthropic"]
    primary.script(steps.quota())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"providers": [
        {"name": "openai", "type": "openai", "model": "gpt-4o", "api_key": "${KEY_A}", "base_url": primary.base_url},
        {"name": "anthropic", "type": "anthropic", "model": "claude-sonnet-4-5", "api_key": "${KEY_B}",
         "base_url": fallback.base_url},
    ]}))
    out = failover("stream", "Hello", "--config", str(config), env={"KEY_A": "a", "KEY_B": "b"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == fallback.answer.strip()
    assert "openai#1" in out.stderr and "quota (429)" in out.stderr
    assert "anthropic#1" in out.stderr and "ok" in out.stderr


def test_stream_reports_the_real_reason_when_nothing_can_serve(tmp_path: Path, emu):
    primary = emu["openai"]
    primary.script(steps.auth())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"providers": [
        {"name": "openai", "type": "openai", "model": "gpt-4o", "api_key": "k", "base_url": primary.base_url}]}))
    out = failover("stream", "Hello", "--config", str(config))
    assert out.returncode == 1
    assert "AllProvidersFailed" in out.stderr and "auth (401)" in out.stderr


def test_demo_tells_the_whole_failover_story():
    out = failover("demo", "--chunk-delay", "0", "--reset-timeout", "0.5", timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "rate_limit (429)" in text
    assert "breaker openai: closed -> open" in text
    assert "skipped breaker open" in text
    assert "breaker openai: half-open -> closed" in text
    served = [line.split("served by ")[1].split()[0] for line in text.splitlines() if "served by" in line]
    assert served[0] == "openai" and "anthropic" in served and served[-2] == "openai"
    assert "timeout_idle" in text and served[-1] == "anthropic"  # scene 7: stalled, continued elsewhere
    assert "resumed (Result.resumed): one answer from 2 provider(s)" in text
    assert "nothing repeated or lost: yes" in text


def test_demo_shows_every_number_it_claims():
    out = failover("demo", "--chunk-delay", "0", "--reset-timeout", "0.5", timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    # its settings, since they differ from config.yaml's
    assert "max_attempts=2" in text and "fail_max=3 reset_timeout=0.5s" in text and "idle=2s" in text
    scene2 = text[text.index("== 2."):text.index("== 3.")]
    assert "(Retry-After 1s)" in scene2 and "after 1.0" in scene2  # the wait it was told, and that it slept it
    scene3 = text[text.index("== 3."):text.index("== 4.")].splitlines()
    assert "call 1 of 2" in scene3[1] and any("call 2 of 2" in line for line in scene3)
    opened = next(i for i, line in enumerate(scene3) if "breaker openai: closed -> open" in line)
    assert "openai#1" in scene3[opened - 1] and "breaker=open" in scene3[opened - 1]  # after its cause
    assert "opened after 3 consecutive failures" in scene3[opened]
    assert "During the outage 5 calls were made and OpenAI received 3 requests" in text
    assert "10 requests: the breaker kept 7 of them away" in text
    scene7 = text[text.index("== 7."):text.index("== 8.")]
    assert "starts the answer over" in scene7 and "result.tool_calls: get_weather" in scene7
    assert "get_weather says: 21 °C, sunny" in scene7  # the next turn, on OpenAI, with Anthropic's tool-call id
    assert "Next: `failover try" in text and "docs/telemetry.md" in text
