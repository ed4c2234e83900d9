"""The emulator byte by byte: trickled headers and bodies, a stream closed after a stall, a provider that
echoes the API key, raw line separators inside JSON strings, and chaos mode."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import h11
import httpx2
import openai
import pytest

from failover.emulator import Emulator, Record, steps
from failover.emulator.wire import split_chunks

USER = [{"role": "user", "content": "Hello"}]
KEY = "sk-live-0123456789abcdefSECRET"
SEPARATORS = "line\u2028separator \u2029paragraph next\u0085line done"

_SHARED: list[httpx2.Client] = []


@pytest.fixture(scope="module", autouse=True)
def shared_http_client() -> Iterator[None]:
    _SHARED.append(httpx2.Client())
    yield
    _SHARED.pop().close()


@pytest.fixture
def emu(kind: str) -> Iterator[Emulator]:
    with Emulator(kind) as e:
        yield e


def texts(emu: Emulator, *, key: str = "sk-test", timeout: float = 5.0, seen: list[str] | None = None,
          **params: Any) -> tuple[list[str], bool]:
    """The text chunks of one streamed answer through the sync SDK, and whether the terminal event came."""
    seen = [] if seen is None else seen
    terminal = False
    if emu.kind == "openai":
        client = openai.OpenAI(api_key=key, base_url=emu.base_url, max_retries=0, timeout=timeout,
                               http_client=_SHARED[0])
        with client.chat.completions.create(model="m", messages=USER, stream=True, **params) as s:
            for c in s:
                seen.extend([c.choices[0].delta.content] if c.choices and c.choices[0].delta.content else [])
                terminal = terminal or bool(c.choices and c.choices[0].finish_reason)
    else:
        aclient = anthropic.Anthropic(api_key=key, base_url=emu.base_url, max_retries=0, timeout=timeout,
                                      http_client=_SHARED[0])
        with aclient.messages.create(model="m", max_tokens=1024, messages=USER, stream=True, **params) as s2:
            for e in s2:
                seen.extend([e.delta.text] if e.type == "content_block_delta" else [])
                terminal = terminal or e.type == "message_stop"
    return seen, terminal


def request_bytes(emu: Emulator, body: dict[str, Any], conn: h11.Connection | None = None) -> bytes:
    path = "/v1/chat/completions" if emu.kind == "openai" else "/v1/messages"
    data = json.dumps(body).encode()
    conn = conn or h11.Connection(h11.CLIENT)
    return (conn.send(h11.Request(method="POST", target=path, headers=[
        ("host", "x"), ("x-api-key", "k"), ("content-type", "application/json"), ("content-length", str(len(data)))]))
        or b"") + (conn.send(h11.Data(data=data)) or b"") + (conn.send(h11.EndOfMessage()) or b"")


def timed_response(emu: Emulator) -> list[tuple[float, bytes]]:
    """Every recv() of one streamed response on a raw socket, with its arrival time."""
    body = {"model": "m", "max_tokens": 100, "stream": True, "messages": USER}
    out: list[tuple[float, bytes]] = []
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(request_bytes(emu, body))
        while not b"".join(d for _, d in out).endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            out.append((time.monotonic(), data))
    return out


def head_split(pieces: list[tuple[float, bytes]]) -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]]:
    """The recv()s up to the one that completes the response head, and the rest."""
    got = b""
    for i, (_, data) in enumerate(pieces):
        got += data
        if b"\r\n\r\n" in got:
            return pieces[:i + 1], pieces[i + 1:]
    raise AssertionError("no complete response head")


# ---------------------------------------------------------------- trickles


def test_trickle_headers_on_the_wire(emu: Emulator) -> None:
    interval = 0.005
    emu.script(steps.trickle_headers(interval))
    head, rest = head_split(timed_response(emu))
    size = len(b"".join(d for _, d in head).split(b"\r\n\r\n")[0]) + 4
    assert size > 80
    assert len(head) > size / 4  # the bytes came one by one (a little coalescing under load at most)
    assert head[-1][0] - head[0][0] >= (size - 1) * interval * 0.8
    body = b"".join(d for _, d in head + rest)
    assert b"[DONE]" in body or b"message_stop" in body
    r = emu.wait_for_requests(1)[0]
    assert (r.step, r.status, r.disconnected) == ("trickle_headers", 200, False)


def test_trickle_headers_defeat_a_read_timeout(emu: Emulator) -> None:
    """Every read makes progress: a 0.1 s read timeout never fires though the headers take far longer."""
    emu.script(steps.trickle_headers(0.005))
    t0 = time.monotonic()
    chunks, terminal = texts(emu, timeout=0.1)
    assert "".join(chunks) == emu.answer and terminal
    assert time.monotonic() - t0 >= 0.4


def test_trickle_body_on_the_wire(kind: str) -> None:
    with Emulator(kind, answer="one two") as emu:
        emu.script(steps.trickle_body(0.001))
        head, rest = head_split(timed_response(emu))
        assert len(head) == 1  # the headers came at once
        body = b"".join(d for _, d in rest)
        assert len(body) > 300 and len(rest) > len(body) / 8
        emu.script(steps.trickle_body(0.001))
        chunks, terminal = texts(emu, timeout=0.1)
        assert chunks == ["one ", "two"] and terminal


@pytest.mark.parametrize("which", ["headers", "body"])
def test_trickle_notices_a_hang_up(emu: Emulator, which: str) -> None:
    emu.script(steps.trickle_headers(0.05) if which == "headers" else steps.trickle_body(0.05))

    async def go() -> float:
        if emu.kind == "openai":
            client: Any = openai.AsyncOpenAI(api_key="k", base_url=emu.base_url, max_retries=0, timeout=30)
            call = client.chat.completions.create(model="m", messages=USER, stream=True)
        else:
            client = anthropic.AsyncAnthropic(api_key="k", base_url=emu.base_url, max_retries=0, timeout=30)
            call = client.messages.create(model="m", max_tokens=100, messages=USER, stream=True)

        async def consume() -> None:
            async for _ in await call:
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled = time.monotonic()
        await client.close()
        return cancelled

    cancelled = asyncio.run(go())
    r = emu.wait_for_requests(1)[0]
    assert r.disconnected and r.ended_at is not None and r.ended_at - cancelled < 1.0


def test_trickle_validates_the_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        steps.trickle_headers(-1)


# ---------------------------------------------------------------- stall then close


def test_stall_then_close(emu: Emulator) -> None:
    emu.script(steps.stall_then_close(after=2, seconds=0.3))
    t0 = time.monotonic()
    chunks, terminal = texts(emu)  # a clean end: no error, only the missing terminal event tells
    assert chunks == split_chunks(emu.answer)[:2] and not terminal
    assert time.monotonic() - t0 >= 0.3
    r = emu.wait_for_requests(1)[0]
    assert (r.step, r.chunks_sent, r.disconnected) == ("stall_then_close", 2, False)


def test_stall_then_close_ends_the_body_then_closes(emu: Emulator) -> None:
    emu.script(steps.stall_then_close(after=1, seconds=0.1))
    body = {"model": "m", "max_tokens": 100, "stream": True, "messages": USER}
    conn = h11.Connection(h11.CLIENT)
    events: list[type] = []
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(request_bytes(emu, body, conn))
        while not events or events[-1] is not h11.ConnectionClosed:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif ev is not h11.PAUSED:
                events.append(type(ev))
    assert events[-2:] == [h11.EndOfMessage, h11.ConnectionClosed]  # terminating chunk, then FIN


# ---------------------------------------------------------------- a provider that echoes the key


def error_of(emu: Emulator, **kw: Any) -> Any:
    with pytest.raises((openai.APIError, anthropic.APIStatusError)) as info:
        texts(emu, key=KEY, **kw)
    return info.value


def test_echo_key_http_error(emu: Emulator) -> None:
    emu.script(steps.echo_key())
    e = error_of(emu)
    assert e.status_code == 401
    assert type(e) is (openai.AuthenticationError if emu.kind == "openai" else anthropic.AuthenticationError)
    message = e.body["message"] if emu.kind == "openai" else e.body["error"]["message"]
    assert KEY in message
    if emu.kind == "openai":
        assert message.startswith(f"Incorrect API key provided: {KEY}. You can find your API key at")
    assert_key_not_recorded(emu.wait_for_requests(1)[0])


def assert_key_not_recorded(r: Record) -> None:
    assert KEY not in repr(r) and KEY not in json.dumps(r.body) and KEY not in json.dumps(r.headers)
    assert "***" in r.headers.values()


@pytest.mark.parametrize("prefix_len", [0, 200])
def test_echo_key_position(emu: Emulator, prefix_len: int) -> None:
    emu.script(steps.echo_key(status=403, prefix_len=prefix_len))
    e = error_of(emu)
    assert e.status_code == 403
    message = e.body["message"] if emu.kind == "openai" else e.body["error"]["message"]
    lead = "Incorrect API key provided: " if emu.kind == "openai" else "invalid x-api-key: "
    assert message.index(KEY) == max(prefix_len, len(lead))


def test_echo_key_in_band(emu: Emulator) -> None:
    emu.script(steps.echo_key(after=2))
    seen: list[str] = []
    e = error_of(emu, seen=seen)
    assert len(seen) == 2 and KEY in str(e)
    assert not isinstance(e, openai.APIStatusError) or emu.kind == "anthropic"
    r = emu.wait_for_requests(1)[0]
    assert (r.status, r.chunks_sent) == (200, 2)
    assert_key_not_recorded(r)


def test_echo_key_validates() -> None:
    with pytest.raises(ValueError, match="status"):
        steps.echo_key(status=200)
    with pytest.raises(ValueError, match="prefix_len"):
        steps.echo_key(prefix_len=-3)


# ---------------------------------------------------------------- raw line separators


def test_line_separators_go_raw_and_the_sdks_decode_them(emu: Emulator) -> None:
    emu.script(steps.ok(SEPARATORS), steps.ok(SEPARATORS), steps.ok(SEPARATORS))
    url = emu.base_url + ("/chat/completions" if emu.kind == "openai" else "/v1/messages")
    body = {"model": "m", "max_tokens": 100, "stream": True, "messages": USER}
    with httpx2.stream("POST", url, json=body, headers={"x-api-key": "k"}) as response:
        raw = b"".join(response.iter_raw())
    for char in "\u2028\u2029\u0085":
        assert char.encode() in raw  # raw UTF-8 inside the JSON strings...
        assert f"\\u{ord(char):04x}".encode() not in raw  # ...not a \u escape
    chunks, terminal = texts(emu)
    assert "".join(chunks) == SEPARATORS and terminal
    # Not streamed either: the JSON body carries them raw too, and the SDK still reads them.
    if emu.kind == "openai":
        client = openai.OpenAI(api_key="k", base_url=emu.base_url, max_retries=0, http_client=_SHARED[0])
        got = client.chat.completions.create(model="m", messages=USER).choices[0].message.content
    else:
        aclient = anthropic.Anthropic(api_key="k", base_url=emu.base_url, max_retries=0, http_client=_SHARED[0])
        got = aclient.messages.create(model="m", max_tokens=100, messages=USER).content[0].text
    assert got == SEPARATORS


def test_line_separators_async(emu: Emulator) -> None:
    emu.script(steps.ok(SEPARATORS))

    async def go() -> str:
        if emu.kind == "openai":
            async with openai.AsyncOpenAI(api_key="k", base_url=emu.base_url, max_retries=0) as client:
                s = await client.chat.completions.create(model="m", messages=USER, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
        async with anthropic.AsyncAnthropic(api_key="k", base_url=emu.base_url, max_retries=0) as aclient:
            s2 = await aclient.messages.create(model="m", max_tokens=100, messages=USER, stream=True)
            return "".join([e.delta.text async for e in s2 if e.type == "content_block_delta"])

    assert asyncio.run(go()) == SEPARATORS


def test_non_ascii_text_is_raw_utf8(emu: Emulator) -> None:
    emu.script(steps.ok("café naïve"))
    url = emu.base_url + ("/chat/completions" if emu.kind == "openai" else "/v1/messages")
    r = httpx2.post(url, json={"model": "m", "max_tokens": 10, "messages": USER}, headers={"x-api-key": "k"})
    assert "café naïve".encode() in r.content and b"\\u00e9" not in r.content


# ---------------------------------------------------------------- chaos


def post(emu: Emulator) -> int:
    url = emu.base_url + ("/chat/completions" if emu.kind == "openai" else "/v1/messages")
    return _SHARED[0].post(url, json={"model": "m", "max_tokens": 2, "messages": USER},
                           headers={"x-api-key": "k"}).status_code


def test_chaos_rate_one_faults_every_request_after_the_script(emu: Emulator) -> None:
    emu.script(steps.ok("scripted"))
    emu.chaos(1.0, [steps.server_error(503), steps.rate_limit()], seed=1)
    codes = [post(emu) for _ in range(8)]
    assert codes[0] == 200 and set(codes[1:]) == {503, 429}
    emu.chaos(0, [])
    assert post(emu) == 200
    assert [r.step for r in emu.wait_for_requests(9)][-1] == "ok"


def test_chaos_is_repeatable_with_a_seed(kind: str) -> None:
    runs = []
    for _ in range(2):
        with Emulator(kind) as emu:
            emu.chaos(0.5, [steps.server_error(503)], seed=42)
            runs.append([post(emu) for _ in range(20)])
    assert runs[0] == runs[1] and {200, 503} == set(runs[0])


def test_chaos_is_forgotten_by_reset_and_validated(emu: Emulator) -> None:
    emu.chaos(1.0, [steps.server_error(503)])
    assert post(emu) == 503
    emu.reset()
    assert post(emu) == 200
    with pytest.raises(ValueError, match="rate"):
        emu.chaos(1.5, [steps.hang()])
    with pytest.raises(ValueError, match="at least one"):
        emu.chaos(0.5, [])
    with pytest.raises(TypeError, match="not a step"):
        emu.chaos(0.5, ["hang"])  # type: ignore[list-item]
