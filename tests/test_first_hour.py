"""A new user's first hour (issue 14): the package and command start fast, `failover try` and
`failover emulate` reproduce the failure stories without keys, `failover check` says what would go
wrong, every attempt line shows the numbers behind its decision, Ctrl-C is quiet, and the package
installs with its types and version."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import make_router, run_sync

import failover
from failover import Attempt, Router
from failover.cli import main
from failover.emulator import Emulator, steps

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"OPENAI_API_KEY": "sk-first-hour-openai-000000", "ANTHROPIC_API_KEY": "sk-first-hour-anthropic-00"}
HEAVY = ("openai", "anthropic", "httpx2", "redis", "pybreaker", "failover.router", "failover.providers")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("OTEL_")}
    return {**env, **extra}


def modules_after(code: str) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; the top-level modules it imported and what it printed."""
    probe = f"import sys, json, contextlib, io\nout = io.StringIO()\nwith contextlib.redirect_stdout(out):\n" \
            f"    try:\n        {code}\n    except SystemExit as e:\n        code = e.code\n" \
            "print(json.dumps({'modules': sorted(sys.modules), 'out': out.getvalue()}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          env=child_env(**KEYS), timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


# ---------------------------------------------------------------- start-up: what each entry point imports


def test_import_failover_imports_nothing_heavy() -> None:
    got = modules_after("import failover")
    assert heavy(got["modules"]) == [] and "pydantic" not in got["modules"]


def test_help_and_check_import_no_sdk_no_http_client_no_redis() -> None:
    helped = modules_after("from failover.cli import main; main(['--help'])")
    assert "stream" in helped["out"] and "try" in helped["out"]
    assert heavy(helped["modules"]) == [] and "pydantic" not in helped["modules"]
    checked = modules_after("from failover.cli import main; main(['check', 'config.yaml'])")
    assert "providers, in failover order" in checked["out"]
    assert heavy(checked["modules"]) == []


def test_public_names_resolve_to_their_modules_lazily() -> None:
    from failover import errors, router, types

    for name in failover.__all__:
        value = getattr(failover, name)
        if name != "__version__":
            home = {"Router": router}.get(name) or (errors if hasattr(errors, name) else types)
            assert value is getattr(home, name)
    assert set(failover.__all__) <= set(dir(failover))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = failover.Nope  # type: ignore[attr-defined]


def test_version_is_one_number_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    assert failover.__version__ == importlib.metadata.version("failover")
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"failover {failover.__version__}\n"


def test_the_wheel_carries_types_license_and_version_and_builds_without_warnings(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300, env=child_env())
    assert done.returncode == 0, done.stderr
    build_log = done.stdout + done.stderr
    assert "deprecated" not in build_log.lower() and "SetuptoolsDeprecationWarning" not in build_log
    [wheel] = tmp_path.glob("failover-*.whl")
    assert wheel.name.startswith(f"failover-{failover.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "failover/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert {"Provides-Extra: telemetry", "Provides-Extra: redis"} <= set(metadata.splitlines())


# ---------------------------------------------------------------- failover check


def test_check_warns_about_a_missing_key_and_fails_only_when_strict(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("OPENAI_API_KEY", KEYS["OPENAI_API_KEY"])
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["check", "config.yaml"]) == 0
    assert "warning: 1 provider has no API key and will be skipped: anthropic" in capsys.readouterr().err
    assert main(["check", "config.yaml", "--strict"]) == 1


def redis_config(tmp_path: Path, emu: dict[str, Emulator], storage: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"providers": [
        {"name": kind, "type": kind, "model": "m", "api_key": "k", "base_url": e.base_url} for kind, e in emu.items()],
        "defaults": {"breaker": {"storage": storage}}}))
    return str(path)


def test_check_says_when_redis_is_unreachable_and_fails_when_strict(emu, tmp_path, capsys) -> None:
    from tests.redis_server import free_port

    path = redis_config(tmp_path, emu, f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0")
    assert main(["check", path]) == 0
    err = capsys.readouterr().err
    assert "warning: breaker storage redis://" in err and "is unreachable" in err
    assert "hunter2-secret" not in err  # the password is masked
    assert main(["check", path, "--strict"]) == 1


def test_check_with_a_reachable_redis_is_clean(emu, tmp_path, capsys, redis_server) -> None:
    path = redis_config(tmp_path, emu, redis_server.url)
    assert main(["check", path, "--strict"]) == 0
    assert "warning" not in capsys.readouterr().err


# ---------------------------------------------------------------- failover try


def fast_config(tmp_path: Path, **defaults: Any) -> str:
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump({
        "providers": [{"name": "primary", "type": "openai", "model": "gpt-4o", "api_key": "${NOT_SET_ANYWHERE}"},
                      {"name": "backup", "type": "anthropic", "model": "claude", "api_key": "${NOT_SET_EITHER}",
                       "breaker": {"storage": "redis://127.0.0.1:1/0"}}],
        "defaults": {"retry": {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.02}, **defaults}}))
    return str(path)


def test_try_runs_the_config_against_emulators_with_faults_and_no_keys(tmp_path, capsys) -> None:
    code = main(["try", "--config", fast_config(tmp_path), "--fault", "primary=503x3", "--chunk-delay", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines()]
    assert [line.split()[0] for line in lines if line.split()[:1] and "#" in line.split()[0]] == [
        "primary#1", "primary#2", "primary#3", "backup#1"]
    assert "served by backup" in out and "1 of 1 calls served" in out
    assert "requests each emulated provider received: primary 3, backup 1" in out
    assert "faults: 503x3" in out and "max_attempts=3" in out  # the settings behind the decisions are shown


def test_try_set_overrides_a_setting_for_the_run(tmp_path, capsys) -> None:
    config = fast_config(tmp_path)
    assert main(["try", "--config", config, "--fault", "primary=503x3", "--chunk-delay", "0",
                 "--set", "providers.primary.retry.max_attempts=1", "--calls", "2"]) == 0
    out = capsys.readouterr().out
    assert "primary#2" not in out and "requests each emulated provider received: primary 2, backup 2" in out


def test_try_reports_the_breaker_opening_after_the_attempt_that_caused_it(tmp_path, capsys) -> None:
    config = fast_config(tmp_path, breaker={"fail_max": 2, "reset_timeout": 60})
    assert main(["try", "--config", config, "--fault", "primary=down:60s", "--calls", "2", "--chunk-delay", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    opened = next(i for i, line in enumerate(lines) if "breaker primary: closed -> open" in line)
    assert "primary#2" in lines[opened - 1] and "breaker=open" in lines[opened - 1]
    assert "opened after 2 consecutive failures" in lines[opened]
    assert any("primary" in line and "skipped breaker open" in line for line in lines[opened:])


def test_try_exits_1_when_a_call_fails_and_2_on_bad_options(tmp_path, capsys) -> None:
    config = fast_config(tmp_path)
    assert main(["try", "--config", config, "--fault", "primary=auth", "--fault", "backup=quota"]) == 1
    assert "AllProvidersFailed" in capsys.readouterr().out
    assert main(["try", "--config", config, "--fault", "nobody=503"]) == 2
    assert "no provider named 'nobody'; providers: primary, backup" in capsys.readouterr().err
    assert main(["try", "--config", config, "--fault", "primary=bogus"]) == 2
    assert "unknown step 'bogus'" in capsys.readouterr().err
    assert main(["try", "--config", config, "--set", "providers.nobody.model=x"]) == 2
    assert "no entry 'nobody' in providers" in capsys.readouterr().err
    assert main(["try", "--config", config, "--set", "defaults.retry.max_attempts=0"]) == 2
    assert "defaults.retry.max_attempts" in capsys.readouterr().err


def test_try_without_a_config_uses_the_built_in_chain(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["try", "--fault", "openai=cut:after=3", "--chunk-delay", "0",
                 "--set", "defaults.retry.initial_backoff=0", "--set", "defaults.retry.max_backoff=0"]) == 0
    out = capsys.readouterr().out
    assert "<built-in: openai, anthropic>" in out
    assert "nothing repeated or lost: yes" in out  # a cut answer continued, checked against the whole answer


def test_try_tools_shows_a_tool_call_started_over_never_stitched(tmp_path, capsys) -> None:
    config = fast_config(tmp_path)
    assert main(["try", "--config", config, "--tools", "--chunk-delay", "0",
                 "--fault", "primary=tool_calls:after=2,503x2"]) == 0
    out = capsys.readouterr().out
    assert "[backup starts the answer over (chunk.restart)" in out
    assert 'result.tool_calls: get_weather({"city": "Paris"})' in out and "finish_reason=tool_calls" in out


# ---------------------------------------------------------------- failover emulate


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_emulate_serves_the_faults_writes_a_config_and_stops_on_ctrl_c(tmp_path) -> None:
    out = tmp_path / "emulators.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "failover.cli", "emulate", "--fault", "openai=503",
                             "--fault", "openai=quota", "--chunk-delay", "0", "--config-out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        wait_for(out, proc)
        with Router.from_yaml(out) as router:
            result = router.complete([{"role": "user", "content": "Hello"}])
        assert [(a.provider, a.outcome, a.error_type) for a in result.attempts] == [
            ("openai", "error", "unavailable"), ("openai", "error", "quota"), ("anthropic", "ok", None)]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err.splitlines()[-1] == "emulators stopped" and "Traceback" not in err


def test_emulate_rejects_a_bad_fault_by_name(capsys) -> None:
    assert main(["emulate", "--fault", "gemini=503"]) == 2
    assert "no provider named 'gemini'; providers: openai, anthropic" in capsys.readouterr().err
    assert main(["emulate", "--fault", "openai=503x"]) == 2
    assert "--fault openai=503x" in capsys.readouterr().err


# ---------------------------------------------------------------- Ctrl-C, attempt lines


def test_ctrl_c_in_stream_exits_130_with_one_line(emu, tmp_path) -> None:
    primary = emu["openai"]
    primary.script(steps.stall(after=3))  # silent until the client hangs up
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"providers": [{"name": "openai", "type": "openai", "model": "m",
                                                     "api_key": "k", "base_url": primary.base_url}]}))
    proc = subprocess.Popen([sys.executable, "-m", "failover.cli", "stream", "Hello", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    assert proc.stdout is not None
    received = b""
    while len(received.split()) < 3:
        received += os.read(proc.stdout.fileno(), 1024)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err.decode() == "failover: interrupted\n"
    assert (received + out).endswith(b"\n")  # the half-written answer's line is ended


def test_attempt_line_shows_backoff_retry_after_and_why_a_retry_was_refused() -> None:
    waited = Attempt("openai", "gpt-4o", 2, "ok", first_chunk_s=0.012, duration_s=0.31, backoff_s=1.004,
                     breaker_state="closed")
    assert waited.line() == "openai#2       ok      after 1.00s backoff, first chunk 0.012s [0.310s] breaker=closed"
    refused = Attempt("openai", "gpt-4o", 1, "error", error_type="rate_limit", status_code=429, message="slow down",
                      retry_after=30.0, duration_s=0.004, retry_refused="retry_after")
    assert refused.line() == ("openai#1       error   rate_limit (429) - slow down (Retry-After 30s) "
                              "(retry refused: Retry-After is over max_retry_after) [0.004s]")


def test_a_retry_after_over_the_maximum_is_said_on_the_attempt(emu, kind) -> None:
    from tests.conftest import OTHER

    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.rate_limit(retry_after=30))  # max_retry_after is 2 s in the tests' defaults
    with make_router(primary, fallback) as router:
        out = run_sync(router)
    first, second = out.attempts
    assert (first.retry_after, first.retry_refused) == (30.0, "retry_after")
    assert "(Retry-After 30s) (retry refused: Retry-After is over max_retry_after)" in first.line()
    assert second.provider == "fallback" and second.outcome == "ok"


def test_a_retry_after_within_the_maximum_is_slept_and_shown(emu, kind) -> None:
    primary = emu[kind]
    primary.script(steps.rate_limit(retry_after=0.2))
    with make_router(primary) as router:
        out = run_sync(router)
    first, second = out.attempts
    assert first.retry_after == 0.2 and first.retry_refused is None and "(Retry-After 0.2s)" in first.line()
    assert second.backoff_s >= 0.2 and f"after {second.backoff_s:.2f}s backoff" in second.line()
