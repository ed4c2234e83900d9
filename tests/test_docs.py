"""Every code block and command of README.md, docs/*.md and benchmarks/README.md runs as written,
against the emulated providers, so the documentation cannot drift from the code.

The rules a block follows (its language, and the words after it: `needs=redis`, `needs=otlp`,
`no-run`) are in docs/cli.md, "Documentation blocks". Each block runs in a fresh directory whose
`config.yaml` is the repository's with every provider's commented `# base_url:` line made real and
pointed at the session's emulators (line numbers stay the same), and with fake API keys set.
`failover` commands run in this process through `failover.cli.main` (fast), except those that
install a global OpenTelemetry SDK (`--trace`, `--otlp`, blocks that need an OTLP receiver) or run
in the background, which run as child processes.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from failover.cli import command_parsers, main
from failover.config import parse_config
from failover.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
KEYS = {"OPENAI_API_KEY": "sk-docs-test-openai-0123456789", "ANTHROPIC_API_KEY": "sk-ant-docs-test-0123456789"}
NEEDS = {"redis", "otlp"}
# Pacing meant for people: the test runs these at full speed unless the line sets the option itself.
FULL_SPEED = {"demo": ["--chunk-delay", "0", "--reset-timeout", "0.5"], "try": ["--chunk-delay", "0"]}
# Commands that stand for a service a block's `needs` provides in the test.
STANDS_IN = {"docker"}


# ---------------------------------------------------------------- reading the documents


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    words: tuple[str, ...]
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def needs(self) -> set[str]:
        needs = {n for w in self.words if w.startswith("needs=") for n in w.removeprefix("needs=").split(",")}
        assert needs <= NEEDS, f"{self.name}: unknown needs {needs - NEEDS} (known: {sorted(NEEDS)})"
        return needs

    @property
    def runs(self) -> bool:
        return "no-run" not in self.words


FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```|~~~)(?P<info>.*)$")


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].split()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i].lstrip())
            i += 1
        assert i < len(lines), f"{path}:{start}: unclosed code block"
        out.append(Block(path, start, info[0] if info else "", tuple(info[1:]), "\n".join(body) + "\n"))
        i += 1
    return out


ALL = [b for path in DOCS for b in blocks(path)]


def test_the_documents_have_blocks_of_every_kind() -> None:
    langs = {b.lang for b in ALL}
    assert {"python", "sh", "yaml", "text", ""} <= langs
    unknown = {b.name: b.lang for b in ALL if b.lang not in RUNNERS}
    assert not unknown, f"blocks in a language the docs test does not run: {unknown}"


# ---------------------------------------------------------------- the workspace a block runs in


@dataclass
class Workspace:
    dir: Path
    env: dict[str, str]
    collector: Any = None  # the OTLP receiver of a block that needs one
    background: list[tuple[list[str], subprocess.Popen[str], int]] = field(default_factory=list)

    def stop_background(self) -> None:
        for args, proc, expected in self.background:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
            assert proc.returncode == expected, f"failover {shlex.join(args)} (background): exit " \
                f"{proc.returncode}, expected {expected}\n{out}\n{err}"


def emulated_config(urls: dict[str, str], storage: str | None) -> str:
    """The repository's config.yaml, each provider's `# base_url:` line made real (same line numbers)."""
    out, provider, done = [], None, set()
    for line in (ROOT / "config.yaml").read_text(encoding="utf-8").split("\n"):
        m = re.match(r"^\s*- name: (\S+)", line)
        if m:
            provider = m[1]
        m = re.match(r"^(\s+)# base_url: \S+", line)
        if m and provider in urls and provider not in done:
            line, _ = f"{m[1]}base_url: {urls[provider]}", done.add(provider)
        if storage and re.match(r"^\s+storage: memory\b", line):
            line = line.replace("storage: memory", f"storage: {storage}", 1)
        out.append(line)
    assert done == set(urls), f"config.yaml has no commented `# base_url:` line for {set(urls) - done}"
    return "\n".join(out)


class _Metrics:
    """The OTLP metrics service, handing what arrives to the same collector as the traces."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def Export(self, request: Any, context: Any) -> Any:
        return self.collector.Export(request, context)


@contextlib.contextmanager
def otlp_receiver() -> Iterator[tuple[Any, str]]:
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    from tests.test_telemetry import Collector

    metrics = type("MetricsService", (_Metrics, metrics_service_pb2_grpc.MetricsServiceServicer), {})
    coll = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(coll, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(metrics(coll), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield coll, f"http://127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(5)


@pytest.fixture
def workspace(request: pytest.FixtureRequest, emu: dict[str, Emulator], tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    block: Block = request.param
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("OTEL_")}
    env.update(KEYS)
    storage = None
    with contextlib.ExitStack() as stack:
        if "redis" in block.needs:
            storage = request.getfixturevalue("redis_server").url
            env["REDIS_URL"] = storage
        coll = None
        if "otlp" in block.needs:
            coll, endpoint = stack.enter_context(otlp_receiver())
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        urls = {name: e.base_url for name, e in emu.items()}
        (tmp_path / "config.yaml").write_text(emulated_config(urls, storage), encoding="utf-8")
        for key in [k for k in os.environ if k.endswith("_API_KEY") or k.startswith("OTEL_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)
        ws = Workspace(tmp_path, env, coll)
        try:
            yield ws
        finally:
            for _, proc, _ in ws.background:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()


# ---------------------------------------------------------------- the runners


def run_python(block: Block, ws: Workspace) -> None:
    tree = ast.parse(block.text, filename=block.name)  # a SyntaxError (top-level await in sync code) fails here
    excerpt = any(isinstance(n, ast.Constant) and n.value is Ellipsis for n in ast.walk(tree))
    if excerpt or not block.runs:  # placeholders: only the imports can run
        tree.body = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        assert tree.body or excerpt, f"{block.name}: a no-run python block with nothing to check"
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(tree, block.name, "exec"), {"__name__": "__docs__"})


def run_yaml(block: Block, ws: Workspace) -> None:
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), f"{block.name}: a YAML block must be a mapping"
    if "providers" not in data:  # a fragment: merged into a one-provider config
        data = {"providers": [{"name": "p", "type": "openai", "model": "m", "api_key": "k"}], **data}
    parse_config(data, source=block.name)


def run_text(block: Block, ws: Workspace) -> None:
    for line in block.text.split("\n"):
        if line.startswith("$ "):
            run_command(line[2:], block, ws)


def run_sh(block: Block, ws: Workspace) -> None:
    for line in shell_lines(block.text):
        run_command(line, block, ws)


RUNNERS = {"python": run_python, "yaml": run_yaml, "text": run_text, "": run_text, "sh": run_sh}


def shell_lines(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.split("\n") if line.strip() and not line.lstrip().startswith("#")]


def run_command(line: str, block: Block, ws: Workspace) -> None:
    words = shlex.split(line, comments=True)
    m = re.search(r"#\s*exit (\d+)\s*$", line)
    expected = int(m[1]) if m else 0
    background = words[-1] == "&"
    words = [w for w in words if w != "&"]
    head, rest = words[0], words[1:]
    where = f"{block.name}: `{line.strip()}`"
    if head == "failover":
        check_options(rest, where)
        if block.runs:
            run_failover(rest, expected, background, block, ws, where)
    elif head == "make":
        done = subprocess.run(["make", "-n", *rest], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{where}: make -n says: {done.stderr}"
    elif head == "pip":
        check_pip(rest, where)
    elif head in ("python", "python3") or head.endswith("/python"):
        assert rest[:1] == ["-m"], f"{where}: python lines run a module (-m)"
        import importlib.util

        assert importlib.util.find_spec(rest[1]) is not None, f"{where}: no module {rest[1]}"
    elif head in STANDS_IN and block.needs:
        pass  # the block's `needs` started the service this command stands for
    else:
        assert not block.runs, f"{where}: the docs test cannot run {head!r} (use needs=..., or no-run)"


def check_options(args: list[str], where: str) -> None:
    """The command and each of its options exist (the arguments may be placeholders)."""
    if args[:1] in (["--version"], ["--help"], ["-h"]):
        return
    commands = command_parsers()
    assert args and args[0] in commands, f"{where}: no command {args[:1]} (commands: {sorted(commands)})"
    known = {"-h", *re.findall(r"--[a-z][a-z-]*", commands[args[0]].format_help())}
    if args[0] == "emulate":  # the emulator's own options are passed through
        known |= set(re.findall(r"--[a-z][a-z-]*", emulator_help()))
    options = {a.split("=")[0] for a in args[1:] if a.startswith("-")}
    assert options <= known, f"{where}: no option {sorted(options - known)} for failover {args[0]}"


def emulator_help() -> str:
    from failover.emulator.__main__ import main as emulator_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        emulator_main(["--help"])
    return out.getvalue()


def run_failover(args: list[str], expected: int, background: bool, block: Block, ws: Workspace, where: str) -> None:
    pacing = FULL_SPEED.get(args[0], []) if args else []
    for option, value in zip(pacing[::2], pacing[1::2], strict=True):
        if not any(a == option or a.startswith(option + "=") for a in args):
            args = [*args, option, value]
    argv = [sys.executable, "-m", "failover.cli", *args]
    if background:
        proc = subprocess.Popen(argv, cwd=ws.dir, env=ws.env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        ws.background.append((args, proc, 130 if expected == 0 else expected))
        ready = _config_out(args)
        deadline = time.monotonic() + 30
        while not (ready is not None and (ws.dir / ready).exists()) and proc.poll() is None:
            assert time.monotonic() < deadline, f"{where}: not ready after 30 s"
            if ready is None:
                assert proc.stderr is not None
                if "serving" in proc.stderr.readline():
                    break
            time.sleep(0.02)
        assert proc.poll() is None, f"{where}: ended at once: {proc.communicate()}"
        return
    if "--trace" in args or "--otlp" in args or block.needs & {"otlp"}:
        done = subprocess.run(argv, cwd=ws.dir, env=ws.env, capture_output=True, text=True, timeout=120)
        code, out = done.returncode, done.stdout + done.stderr
    else:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                code = main(args)
            except SystemExit as e:  # --help, --version, usage errors
                code = e.code if isinstance(e.code, int) else 1
        out = buffer.getvalue()
    assert code == expected, f"{where}: exit {code}, expected {expected}\n{out}"


def _config_out(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--config-out":
            return args[i + 1]
        if a.startswith("--config-out="):
            return a.split("=", 1)[1]
    return None


def check_pip(args: list[str], where: str) -> None:
    assert args[:1] == ["install"], f"{where}: only `pip install` is documented"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = set(project["optional-dependencies"])
    for spec in (a for a in args[1:] if not a.startswith("-")):
        m = re.fullmatch(r"(?P<name>[\w.-]+)(\[(?P<extras>[\w,-]+)\])?", spec)
        assert m is not None, f"{where}: cannot read {spec!r}"
        assert m["name"] in (project["name"], "."), f"{where}: {m['name']!r} is not this package"
        wanted = set((m["extras"] or "").split(",")) - {""}
        assert wanted <= extras, f"{where}: no extra {sorted(wanted - extras)} in pyproject.toml"


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("workspace", ALL, ids=[b.name for b in ALL], indirect=True)
def test_block_runs_as_written(workspace: Workspace, request: pytest.FixtureRequest) -> None:
    block: Block = request.node.callspec.params["workspace"]
    try:
        RUNNERS[block.lang](block, workspace)
    finally:
        workspace.stop_background()
    if "otlp" in block.needs:
        assert workspace.collector.spans(), f"{block.name}: nothing reached the OTLP receiver"


INLINE = re.compile(r"(?<!`)`(failover [^`]+)`(?!`)")
NOT_COMMANDS = {"chat"}  # `failover chat`: the call span's name


def test_inline_commands_name_real_options() -> None:
    seen = 0
    for path in DOCS:
        for m in INLINE.finditer(path.read_text(encoding="utf-8")):
            text = m[1]
            second = text.split()[1]
            if any(c in text for c in "[<…|") or "..." in text or second in NOT_COMMANDS or second.isupper():
                continue  # a synopsis with placeholders (COMMAND, [FILE], ...), or a span's name
            check_options(shlex.split(text)[1:], f"{path.relative_to(ROOT)}: `{text}`")
            seen += 1
    assert seen >= 10


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_relative_links_and_anchors_exist() -> None:
    checked = 0
    for path in DOCS:
        for m in LINK.finditer(path.read_text(encoding="utf-8")):
            target = m[1]
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.relative_to(ROOT)}: link to {target}: no such file"
            assert ROOT in dest.parents or dest == ROOT, f"{path.relative_to(ROOT)}: {target} is outside the repository"
            if anchor:
                assert anchor in anchors(dest), f"{path.relative_to(ROOT)}: link to {target}: no such heading"
            checked += 1
    assert checked >= 20
