"""The emulator through the real SDKs over real sockets: every step, both provider kinds, sync and async.

The exception each SDK raises per fault is asserted here on purpose: classification code elsewhere is
written against exactly these classes, so an SDK upgrade that changes them should fail loudly here.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import h11
import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.emulator import PREFILL_MESSAGE, Emulator, Record, steps
from failover.emulator.wire import split_chunks

KINDS = ["openai", "anthropic"]
USER = [{"role": "user", "content": "Hello"}]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Overrides the conftest check without its per-test gc.collect() (0.1 s each, half this file's time):
    these tests close every client explicitly, so nothing here waits on the garbage collector."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("failover")]
    for t in leaked:
        t.join(timeout=2.0)
    assert not [t.name for t in leaked if t.is_alive()], "emulator threads left behind"


_SHARED: list[httpx2.Client] = []


@pytest.fixture(scope="module", autouse=True)
def shared_http_client() -> Iterator[None]:
    """One connection pool under every sync SDK client here: building a client's own pool costs 20 ms."""
    _SHARED.append(httpx2.Client(limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20)))
    yield
    _SHARED.pop().close()


def openai_client(emu: Emulator, timeout: float = 5.0) -> openai.OpenAI:
    # Never closed on its own: closing an SDK client closes the shared pool too.
    return openai.OpenAI(api_key="sk-test", base_url=emu.base_url, max_retries=0, timeout=timeout,
                         http_client=_SHARED[0])


def anthropic_client(emu: Emulator, timeout: float = 5.0) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=emu.base_url, max_retries=0, timeout=timeout,
                               http_client=_SHARED[0])


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emu(kind: str) -> Iterator[Emulator]:
    with Emulator(kind) as e:
        yield e


@dataclass
class Seen:
    """What a caller saw of one stream, the same for both SDKs."""

    texts: list[str] = field(default_factory=list)
    finish: str | None = None
    terminal: bool = False  # OpenAI: a finish_reason arrived; Anthropic: message_stop arrived
    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.texts)


def _openai_chunk(seen: Seen, chunk: Any) -> None:
    seen.model = chunk.model
    if chunk.usage is not None:
        seen.input_tokens, seen.output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
    for choice in chunk.choices or []:
        if choice.delta.content:
            seen.texts.append(choice.delta.content)
        if choice.finish_reason:
            seen.finish, seen.terminal = choice.finish_reason, True


def _anthropic_event(seen: Seen, ev: Any) -> None:
    if ev.type == "message_start":
        seen.model, seen.input_tokens = ev.message.model, ev.message.usage.input_tokens
    elif ev.type == "content_block_delta":
        seen.texts.append(ev.delta.text)
    elif ev.type == "message_delta":
        seen.finish, seen.output_tokens = ev.delta.stop_reason, ev.usage.output_tokens
    elif ev.type == "message_stop":
        seen.terminal = True


def stream(emu: Emulator, messages: list[dict[str, Any]] | None = None, *, timeout: float = 5.0,
           seen: Seen | None = None, **params: Any) -> Seen:
    """One streamed request through the sync SDK; SDK exceptions propagate, `seen` keeps what came before."""
    seen = Seen() if seen is None else seen
    messages = messages or USER
    if emu.kind == "openai":
        with openai_client(emu, timeout).chat.completions.create(
                model="gpt-test", messages=messages, stream=True,
                stream_options={"include_usage": True}, **params) as s:
            for chunk in s:
                _openai_chunk(seen, chunk)
    else:
        params.setdefault("max_tokens", 1024)
        with anthropic_client(emu, timeout).messages.create(model="claude-test", messages=messages, stream=True,
                                                            **params) as s2:
            for ev in s2:
                _anthropic_event(seen, ev)
    return seen


async def astream(emu: Emulator, *, timeout: float = 10.0, seen: Seen | None = None,
                  client: Any = None) -> Seen:
    seen = Seen() if seen is None else seen
    if emu.kind == "openai":
        oc = client or openai.AsyncOpenAI(api_key="sk-test", base_url=emu.base_url, max_retries=0, timeout=timeout)
        s = await oc.chat.completions.create(model="gpt-test", messages=USER, stream=True,
                                             stream_options={"include_usage": True})
        async with s:
            async for chunk in s:
                _openai_chunk(seen, chunk)
    else:
        ac = client or anthropic.AsyncAnthropic(api_key="k", base_url=emu.base_url, max_retries=0, timeout=timeout)
        s2 = await ac.messages.create(model="claude-test", max_tokens=1024, messages=USER, stream=True)
        async with s2:
            async for ev in s2:
                _anthropic_event(seen, ev)
    if client is None:
        await (oc if emu.kind == "openai" else ac).close()
    return seen


def only(emu: Emulator) -> Record:
    (record,) = emu.wait_for_requests(1)
    return record


# ---------------------------------------------------------------- healthy answers


def test_healthy_stream(emu: Emulator) -> None:
    seen = stream(emu)
    assert seen.text == emu.answer
    assert seen.texts == split_chunks(emu.answer) and len(seen.texts) > 30
    assert seen.terminal and seen.finish == ("stop" if emu.kind == "openai" else "end_turn")
    assert (seen.input_tokens, seen.output_tokens) == (5, len(seen.texts))
    r = only(emu)
    assert seen.model == r.model == ("gpt-test" if emu.kind == "openai" else "claude-test")
    assert r.path == ("/v1/chat/completions" if emu.kind == "openai" else "/v1/messages")
    assert (r.step, r.status, r.chunks_sent, r.disconnected, r.continuation) == ("ok", 200, len(seen.texts), False,
                                                                                False)
    assert r.ended_at is not None and r.ended_at >= r.time
    assert r.headers["authorization"] == "***" and "sk-" not in json.dumps(r.headers)
    assert r.body["messages"] == USER and r.body["stream"] is True


def test_healthy_stream_async(emu: Emulator) -> None:
    seen = asyncio.run(astream(emu))
    assert seen.text == emu.answer and seen.terminal
    assert seen.output_tokens == len(seen.texts)


def test_custom_answer_usage_and_pacing(kind: str) -> None:
    with Emulator(kind, answer="one two three", chunk_delay=0.05, usage=(11, 99)) as emu:
        t0 = time.monotonic()
        seen = stream(emu)
        assert time.monotonic() - t0 >= 0.15
    assert seen.texts == ["one ", "two ", "three"]
    assert (seen.input_tokens, seen.output_tokens) == (11, 99)


def test_ok_step_overrides_text_and_delay(emu: Emulator) -> None:
    emu.script(steps.ok("custom words here", chunk_delay=0.0))
    assert stream(emu).text == "custom words here"
    assert stream(emu).text == emu.answer  # the script is empty again: the default answer


def test_max_tokens_stops_with_length(emu: Emulator) -> None:
    key = "max_tokens" if emu.kind == "anthropic" else "max_completion_tokens"
    seen = stream(emu, **{key: 4})
    assert seen.texts == split_chunks(emu.answer)[:4]
    assert seen.finish == ("length" if emu.kind == "openai" else "max_tokens") and seen.terminal


def test_non_streaming(emu: Emulator) -> None:
    if emu.kind == "openai":
        c = openai_client(emu).chat.completions.create(model="m", messages=USER)
        assert (c.choices[0].message.content, c.choices[0].finish_reason) == (emu.answer, "stop")
        assert c.usage is not None and c.usage.prompt_tokens == 5
    else:
        m = anthropic_client(emu).messages.create(model="m", max_tokens=3, messages=USER)
        assert m.content[0].text == "".join(split_chunks(emu.answer)[:3])
        assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3


def test_keep_alive_serves_several_requests_on_one_connection(emu: Emulator) -> None:
    path = "/v1/chat/completions" if emu.kind == "openai" else "/v1/messages"
    body = json.dumps({"model": "m", "max_tokens": 3, "stream": True, "messages": USER}).encode()
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(conn.send(h11.Request(method="POST", target=path, headers=[
                ("host", "x"), ("x-api-key", "k"), ("content-type", "application/json"),
                ("content-length", str(len(body)))])) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            status, data = 0, b""
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif isinstance(ev, h11.Response):
                    status = ev.status_code
                    assert (b"transfer-encoding", b"chunked") in list(ev.headers)
                elif isinstance(ev, h11.Data):
                    data += ev.data
                elif isinstance(ev, h11.EndOfMessage):
                    break
            assert status == 200 and (b"[DONE]" in data or b"message_stop" in data)
            conn.start_next_cycle()
    assert len(emu.wait_for_requests(3)) == 3


def test_auth_headers(emu: Emulator) -> None:
    url = emu.base_url + ("/chat/completions" if emu.kind == "openai" else "/v1/messages")
    body = {"model": "m", "max_tokens": 2, "messages": USER}
    missing = httpx2.post(url, json=body)
    assert missing.status_code == 401
    if emu.kind == "openai":
        assert missing.json()["error"]["code"] == "invalid_api_key"
    else:
        assert missing.json()["error"]["type"] == "authentication_error"
    assert httpx2.post(url, json=body, headers={"x-api-key": "secret"}).status_code == 200
    assert httpx2.post(url, json=body, headers={"authorization": "Bearer secret"}).status_code == 200
    records = emu.wait_for_requests(3)
    assert [r.step for r in records] == ["auth", "ok", "ok"]
    assert records[1].headers["x-api-key"] == "***" and records[2].headers["authorization"] == "***"


def test_unknown_path_is_404(emu: Emulator) -> None:
    r = httpx2.get(f"http://127.0.0.1:{emu.port}/v1/models", headers={"x-api-key": "k"})
    assert r.status_code == 404 and only(emu).step == "route"


# ---------------------------------------------------------------- HTTP error steps

# factory, openai (class, status, type, code), anthropic (class, status, type)
ERRORS: list[tuple[Any, tuple[type[Exception], int, str, str | None], tuple[type[Exception], int, str]]] = [
    (steps.rate_limit, (openai.RateLimitError, 429, "requests", "rate_limit_exceeded"),
     (anthropic.RateLimitError, 429, "rate_limit_error")),
    (steps.quota, (openai.RateLimitError, 429, "insufficient_quota", "insufficient_quota"),
     (anthropic.BadRequestError, 400, "billing_error")),
    (steps.context_length, (openai.BadRequestError, 400, "invalid_request_error", "context_length_exceeded"),
     (anthropic.BadRequestError, 400, "invalid_request_error")),
    (steps.content_filter, (openai.BadRequestError, 400, "invalid_request_error", "content_policy_violation"),
     (anthropic.BadRequestError, 400, "invalid_request_error")),
    (steps.bad_request, (openai.BadRequestError, 400, "invalid_request_error", None),
     (anthropic.BadRequestError, 400, "invalid_request_error")),
    (steps.overloaded, (openai.InternalServerError, 503, "server_error", None),
     (anthropic.OverloadedError, 529, "overloaded_error")),
    (steps.server_error, (openai.InternalServerError, 500, "server_error", None),
     (anthropic.InternalServerError, 500, "api_error")),
    (lambda: steps.server_error(503), (openai.InternalServerError, 503, "server_error", None),
     (anthropic.ServiceUnavailableError, 503, "api_error")),
    (steps.auth, (openai.AuthenticationError, 401, "invalid_request_error", "invalid_api_key"),
     (anthropic.AuthenticationError, 401, "authentication_error")),
    (steps.forbidden, (openai.PermissionDeniedError, 403, "invalid_request_error", "model_not_allowed"),
     (anthropic.PermissionDeniedError, 403, "permission_error")),
    (steps.not_found, (openai.NotFoundError, 404, "invalid_request_error", "model_not_found"),
     (anthropic.NotFoundError, 404, "not_found_error")),
    (steps.payment_required, (openai.APIStatusError, 402, "billing_error", "payment_required"),
     (anthropic.PaymentRequiredError, 402, "billing_error")),
    (lambda: steps.status(413), (openai.APIStatusError, 413, "invalid_request_error", None),
     (anthropic.ContentTooLargeError, 413, "request_too_large")),
    (lambda: steps.status(422, error_type="weird", message="nope", code_field="c"),
     (openai.UnprocessableEntityError, 422, "weird", "c"), (anthropic.UnprocessableEntityError, 422, "weird")),
]


@pytest.mark.parametrize(("factory", "oa", "an"), ERRORS, ids=lambda v: getattr(v, "__name__", None))
def test_error_steps(emu: Emulator, factory: Any, oa: Any, an: Any) -> None:
    emu.script(factory())
    with pytest.raises(openai.APIStatusError if emu.kind == "openai" else anthropic.APIStatusError) as info:
        stream(emu)
    e: Any = info.value
    if emu.kind == "openai":
        cls, status, etype, code = oa
        assert (e.body["type"], e.body["code"]) == (etype, code)
        assert e.request_id.startswith("req_")
    else:
        cls, status, etype = an
        assert e.body["type"] == "error" and e.body["error"]["type"] == etype and e.type == etype
        assert e.body["request_id"] == e.request_id
    assert type(e) is cls and e.status_code == status
    r = only(emu)
    assert (r.status, r.chunks_sent) == (status, 0) and r.step == factory().name


def test_error_bodies_carry_provider_messages(emu: Emulator) -> None:
    emu.script(steps.quota(), steps.context_length(), steps.not_found())
    messages = []
    for _ in range(3):
        with pytest.raises(openai.APIStatusError if emu.kind == "openai" else anthropic.APIStatusError) as info:
            stream(emu)
        messages.append(str(info.value))
    if emu.kind == "openai":
        assert "You exceeded your current quota" in messages[0]
        assert "The model `gpt-test` does not exist" in messages[2]
    else:
        assert "credit balance is too low" in messages[0]
        assert "prompt is too long: 250000 tokens > 200000 maximum" in messages[1]
        assert "model: claude-test" in messages[2]


def test_retry_after_headers(emu: Emulator) -> None:
    emu.script(steps.rate_limit(retry_after=1.5), steps.rate_limit(retry_after_ms=250),
               steps.status(503, retry_after=2))
    got = []
    for _ in range(3):
        with pytest.raises(openai.APIStatusError if emu.kind == "openai" else anthropic.APIStatusError) as info:
            stream(emu)
        h = info.value.response.headers
        got.append((h.get("retry-after"), h.get("retry-after-ms")))
    assert got == [("1.5", None), (None, "250"), ("2", None)]


# ---------------------------------------------------------------- transport faults

CONNECTION = (openai.APIConnectionError, anthropic.APIConnectionError)


def test_reset_before_response(emu: Emulator) -> None:
    emu.script(steps.reset())
    with pytest.raises(CONNECTION) as info:
        stream(emu)
    assert not isinstance(info.value, (openai.APITimeoutError, anthropic.APITimeoutError))
    assert isinstance(info.value.__cause__, httpx2.ReadError)
    r = only(emu)
    assert (r.step, r.status) == ("reset", None)


def test_hang_times_out_and_sees_the_hang_up(emu: Emulator) -> None:
    emu.script(steps.hang())
    t0 = time.monotonic()
    with pytest.raises((openai.APITimeoutError, anthropic.APITimeoutError)):
        stream(emu, timeout=0.3)
    assert time.monotonic() - t0 < 2.0
    r = only(emu)
    assert r.disconnected and r.status is None and r.ended_at is not None
    assert r.ended_at - r.time < 1.0  # the hang-up ended the handler, not some server-side timeout


def test_slow_first_sends_headers_at_once(emu: Emulator) -> None:
    emu.script(steps.slow_first(0.2))
    t0 = time.monotonic()
    seen = stream(emu, timeout=1.0)
    assert seen.text == emu.answer and time.monotonic() - t0 >= 0.2
    # Headers came at once: a read timeout shorter than the delay fires inside the body, not before it.
    emu.script(steps.slow_first(0.2))
    with pytest.raises(openai.APITimeoutError if emu.kind == "openai" else httpx2.ReadTimeout):
        stream(emu, timeout=0.1)


def test_slow_headers(emu: Emulator) -> None:
    emu.script(steps.slow_headers(0.2))
    t0 = time.monotonic()
    assert stream(emu).text == emu.answer
    assert time.monotonic() - t0 >= 0.2
    emu.script(steps.slow_headers(0.2))
    with pytest.raises((openai.APITimeoutError, anthropic.APITimeoutError)):  # before headers: the SDKs wrap it
        stream(emu, timeout=0.1)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_cut(emu: Emulator, how: str) -> None:
    emu.script(steps.cut(after=3, how=how))
    seen = Seen()
    cause = httpx2.RemoteProtocolError if how == "close" else httpx2.ReadError
    if emu.kind == "openai":
        with pytest.raises(openai.APIConnectionError) as info:
            stream(emu, seen=seen)
        assert isinstance(info.value.__cause__, cause)
    else:  # the Anthropic SDK lets httpx2's errors out of the iteration unwrapped
        with pytest.raises(cause) as info2:
            stream(emu, seen=seen)
        if how == "close":
            assert "incomplete chunked read" in str(info2.value)
    assert seen.texts == split_chunks(emu.answer)[:3] and not seen.terminal
    r = only(emu)
    assert (r.step, r.status, r.chunks_sent, r.disconnected) == ("cut", 200, 3, False)


def test_cut_validates_how() -> None:
    with pytest.raises(ValueError, match="how"):
        steps.cut(1, how="explode")


def test_stall_forever_is_a_read_timeout(emu: Emulator) -> None:
    emu.script(steps.stall(after=2))
    seen = Seen()
    with pytest.raises(openai.APITimeoutError if emu.kind == "openai" else httpx2.ReadTimeout):
        stream(emu, timeout=0.3, seen=seen)
    assert len(seen.texts) == 2
    r = only(emu)
    assert r.disconnected and r.chunks_sent == 2


def test_stall_for_a_while_then_continues(emu: Emulator) -> None:
    emu.script(steps.stall(after=2, seconds=0.2))
    t0 = time.monotonic()
    seen = stream(emu, timeout=2.0)
    assert seen.text == emu.answer and seen.terminal and time.monotonic() - t0 >= 0.2


def test_malformed_event(emu: Emulator) -> None:
    # Neither SDK wraps this: json.JSONDecodeError comes straight out of the iteration.
    emu.script(steps.malformed(after=2))
    seen = Seen()
    with pytest.raises(json.JSONDecodeError):
        stream(emu, seen=seen)
    assert len(seen.texts) == 2 and not seen.terminal


@pytest.mark.parametrize("after", [3, None])
def test_no_terminal(emu: Emulator, after: int | None) -> None:
    emu.script(steps.no_terminal(after))
    seen = stream(emu)  # ends "successfully": only the missing terminal event tells
    assert seen.texts == split_chunks(emu.answer)[:after]
    assert not seen.terminal and seen.finish is None
    assert only(emu).disconnected is False


def test_inband_error(emu: Emulator) -> None:
    emu.script(steps.inband_error(after=2), steps.inband_error(after=0, error_type="api_error"))
    seen = Seen()
    if emu.kind == "openai":
        with pytest.raises(openai.APIError) as info:
            stream(emu, seen=seen)
        assert not isinstance(info.value, openai.APIStatusError)  # no status_code at all
        assert (info.value.type, info.value.code) == ("server_error", "server_error")
    else:
        with pytest.raises(anthropic.APIStatusError) as info2:
            stream(emu, seen=seen)
        assert type(info2.value) is anthropic.APIStatusError
        assert (info2.value.status_code, info2.value.type) == (200, "overloaded_error")
    assert len(seen.texts) == 2
    with pytest.raises((openai.APIError, anthropic.APIStatusError)) as info3:
        stream(emu)
    assert getattr(info3.value, "type", None) == "api_error"


@pytest.mark.parametrize("fault", ["cut", "stall", "inband", "no_terminal"])
def test_faults_async(emu: Emulator, fault: str) -> None:
    step = {"cut": steps.cut(2, how="reset"), "stall": steps.stall(2), "inband": steps.inband_error(2),
            "no_terminal": steps.no_terminal(2)}[fault]
    emu.script(step)
    seen = Seen()
    expected: dict[str, tuple[type[BaseException], ...]] = {
        "cut": (openai.APIConnectionError, httpx2.ReadError),
        "stall": (openai.APITimeoutError, httpx2.ReadTimeout),
        "inband": (openai.APIError, anthropic.APIStatusError),
    }
    if fault in expected:
        with pytest.raises(expected[fault]):
            asyncio.run(astream(emu, timeout=0.3, seen=seen))
    else:
        asyncio.run(astream(emu, seen=seen))
    assert len(seen.texts) == 2 and not seen.terminal


# ---------------------------------------------------------------- continuation


def _continue(emu: Emulator, partial: str, *, then_user: bool, blocks: bool = False) -> list[dict[str, Any]]:
    content: Any = [{"type": "text", "text": partial}] if blocks else partial
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}] if emu.kind == "openai" else []
    messages += [*USER, {"role": "assistant", "content": content}]
    if then_user:
        messages.append({"role": "user", "content": "Continue exactly where you stopped."})
    return messages


@pytest.mark.parametrize("then_user", [False, True])
def test_continuation_smart(emu: Emulator, then_user: bool) -> None:
    partial = "".join(split_chunks(emu.answer)[:5])  # ends in a space, which the match ignores
    seen = stream(emu, _continue(emu, partial, then_user=then_user, blocks=emu.kind == "anthropic"))
    assert seen.texts[0].startswith(" ")  # the whitespace after the stripped prefix comes first
    assert partial.rstrip() + seen.text == emu.answer and seen.terminal
    assert only(emu).continuation


def test_continuation_naive_starts_over(kind: str) -> None:
    with Emulator(kind, continuation="naive") as emu:
        seen = stream(emu, _continue(emu, emu.answer[:30], then_user=True))
        assert seen.text == emu.answer and only(emu).continuation


def test_not_a_continuation(emu: Emulator) -> None:
    seen = stream(emu, _continue(emu, "Something else entirely", then_user=True))
    assert seen.text == emu.answer and not only(emu).continuation


def test_reject_prefill(kind: str) -> None:
    with Emulator(kind, reject_prefill=True) as emu:
        emu.script(steps.ok("scripted"))
        with pytest.raises(openai.BadRequestError if kind == "openai" else anthropic.BadRequestError) as info:
            stream(emu, _continue(emu, emu.answer[:20], then_user=False))
        assert PREFILL_MESSAGE in str(info.value)
        # A continuation that ends with a user message is fine, and the rejection consumed no step.
        assert stream(emu, _continue(emu, emu.answer[:20], then_user=True)).text == "scripted"
        assert [(r.step, r.status) for r in emu.wait_for_requests(2)] == [("bad_request", 400), ("ok", 200)]


# ---------------------------------------------------------------- down windows, records, lifecycle


def test_down_for_takes_precedence_then_recovers(emu: Emulator) -> None:
    emu.script(steps.ok("after the outage"))
    emu.down_for(0.2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError if emu.kind == "openai" else anthropic.InternalServerError) as e:
            stream(emu)
        assert e.value.status_code == 503
    time.sleep(0.25)
    assert stream(emu).text == "after the outage"  # the script was not consumed during the window
    assert stream(emu).text == emu.answer
    assert [r.status for r in emu.wait_for_requests(4)] == [503, 503, 200, 200]


def test_down_for_with_a_custom_step(emu: Emulator) -> None:
    emu.down_for(5, steps.reset())
    with pytest.raises(CONNECTION):
        stream(emu)
    emu.reset()
    assert emu.requests == []
    assert stream(emu).text == emu.answer


def test_client_closing_early_is_seen(emu: Emulator) -> None:
    emu.script(steps.ok(chunk_delay=0.05))
    seen = Seen()
    if emu.kind == "openai":
        s = openai_client(emu).chat.completions.create(model="m", messages=USER, stream=True)
        for chunk in s:
            _openai_chunk(seen, chunk)
            if len(seen.texts) == 2:
                break
        s.close()
    else:
        s2 = anthropic_client(emu).messages.create(model="m", max_tokens=100, messages=USER,
                                                   stream=True)
        for ev in s2:
            _anthropic_event(seen, ev)
            if len(seen.texts) == 2:
                break
        s2.close()
    closed = time.monotonic()
    r = only(emu)
    assert r.disconnected and r.ended_at is not None and r.ended_at - closed < 1.0
    assert 2 <= r.chunks_sent < len(split_chunks(emu.answer))


def test_async_cancel_is_seen(emu: Emulator) -> None:
    emu.script(steps.slow_first(5.0))

    async def go() -> None:
        task = asyncio.ensure_future(astream(emu))
        deadline = time.monotonic() + 5
        while not emu.requests and time.monotonic() < deadline:  # cancel once the request is being served
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert only(emu).disconnected


def test_200_concurrent_async_streams(kind: str) -> None:
    answer = "Twelve short words keep two hundred parallel SDK streams quick to parse here."
    with Emulator(kind, answer=answer, chunk_delay=0.02) as emu:
        async def go() -> list[Seen]:
            limits = httpx2.Limits(max_connections=250, max_keepalive_connections=250)
            if kind == "openai":
                client: Any = openai.AsyncOpenAI(api_key="k", base_url=emu.base_url, max_retries=0, timeout=20,
                                                 http_client=openai.DefaultAsyncHttpxClient(limits=limits))
            else:
                client = anthropic.AsyncAnthropic(api_key="k", base_url=emu.base_url, max_retries=0, timeout=20,
                                                  http_client=anthropic.DefaultAsyncHttpxClient(limits=limits))
            async with client:
                return await asyncio.gather(*[astream(emu, client=client) for _ in range(200)])

        results = asyncio.run(go())
        assert all(s.text == emu.answer and s.terminal for s in results)
        records = emu.wait_for_requests(200)
        assert len(records) == 200
        # They really overlapped: every request had arrived before the first one ended.
        assert max(r.time for r in records) < min(r.ended_at for r in records if r.ended_at)


def test_wait_for_requests_times_out() -> None:
    with Emulator("openai") as emu, pytest.raises(TimeoutError):
        emu.wait_for_requests(1, timeout=0.05)


def test_stop_aborts_open_connections_and_leaves_nothing_behind() -> None:
    before = {t.ident for t in threading.enumerate()}
    emu = Emulator("anthropic").start()
    port = emu.port
    emu.script(steps.hang())
    errors: list[BaseException] = []

    def call() -> None:
        try:
            stream(emu, timeout=10)
        except BaseException as e:
            errors.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while not emu.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    emu.stop()
    caller.join(5)
    assert time.monotonic() - t0 < 2.0 and not caller.is_alive()
    assert errors and isinstance(errors[0], (anthropic.APIConnectionError, httpx2.TransportError))
    assert {t.ident for t in threading.enumerate()} <= before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    emu.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = emu.base_url


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Emulator("gemini")
    with pytest.raises(ValueError):
        Emulator("openai", continuation="clever")
    with Emulator("openai") as emu, pytest.raises(TypeError):
        emu.script("ok")


@given(st.text(alphabet=" \n\tab.é", max_size=40))
def test_split_chunks_round_trips(text: str) -> None:
    chunks = split_chunks(text)
    assert "".join(chunks) == text
    assert all(c.strip() for c in chunks) or len(chunks) <= 1
