"""Broken streams (DESIGN §6): resume without duplicated or lost text, restart, raise.

Both provider types as the broken one and as the continuing one, sync and async, through the real
SDKs against the emulator. `kind` is the primary's type; the fallback is the other type.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tests.conftest import MESSAGES, OTHER, make_router, provider_entry, run_sync

from failover import StreamInterrupted
from failover.emulator import steps

CUTS = {
    "close": lambda after: steps.cut(after=after, how="close"),
    "reset": lambda after: steps.cut(after=after, how="reset"),
    "inband_error": lambda after: steps.inband_error(after=after),
    "malformed": lambda after: steps.malformed(after=after),
    "no_terminal": lambda after: steps.no_terminal(after=after),
}


def words(text: str) -> int:
    return len(text.split())


def assert_one_coherent_answer(out, answer: str) -> None:
    assert out.error is None, out.error
    assert out.text == answer  # nothing repeated at the seam, nothing lost
    assert out.result.text == out.text


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_cut_resumes_on_the_same_provider(emu, kind, call, cut):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(CUTS[cut](3))
    with make_router(primary, fallback, midstream="resume") as router:
        out = call(router)
    assert_one_coherent_answer(out, primary.answer)
    assert out.result.resumed is True
    assert out.result.provider == "primary"
    assert [a.outcome for a in out.attempts] == ["error", "ok"]
    assert out.attempts[0].error_class == "transient"
    first, second = primary.requests
    assert not first.continuation and second.continuation
    assert len(fallback.requests) == 0


def test_stall_resumes_on_the_next_provider_at_once(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.stall(after=3))
    with make_router(primary, fallback, midstream="resume", timeouts={"idle": 0.3}) as router:
        out = call(router)
    assert_one_coherent_answer(out, primary.answer)
    assert out.summary() == [("primary", "error", "timeout_idle"), ("fallback", "ok", None)]
    assert len(primary.requests) == 1  # a silent provider is not retried
    assert fallback.requests[0].continuation
    assert out.result.resumed and out.result.provider == "fallback"
    assert {c.provider for c in out.chunks} == {"primary", "fallback"}


@pytest.mark.parametrize("after", ["one", "most"])
def test_cut_early_and_late_fails_over_to_the_other_type(emu, kind, call, after):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    n = 1 if after == "one" else words(primary.answer) - 2
    primary.script(steps.cut(after=n))
    with make_router(primary, fallback, midstream="resume", retry={"max_attempts": 1}) as router:
        out = call(router)
    assert_one_coherent_answer(out, primary.answer)
    assert [c.provider for c in out.chunks][:n] == ["primary"] * n
    assert out.result.provider == "fallback" and out.result.resumed


def test_naive_continuation_that_starts_over_is_not_duplicated(emu, kind, call, continuation_modes):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    fallback.continuation = "naive"
    primary.script(steps.cut(after=5))
    with make_router(primary, fallback, midstream="resume", retry={"max_attempts": 1}) as router:
        out = call(router)
    assert_one_coherent_answer(out, primary.answer)
    assert fallback.requests[0].continuation


def test_prefill_only_where_the_provider_supports_it(emu, kind, continuation_modes):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.cut(after=3), steps.cut(after=3))
    prompt = "Bitte fahre genau dort fort, wo du aufgehört hast."
    with make_router(primary, fallback, midstream="resume", retry={"max_attempts": 1},
                     fallback_opts={"supports_prefill": True}, continue_prompt=prompt) as router:
        prefilled = run_sync(router)
    assert_one_coherent_answer(prefilled, primary.answer)
    last = fallback.requests[-1].body["messages"][-1]
    assert last["role"] == "assistant"
    assert not (last["content"] if isinstance(last["content"], str) else last["content"][0]["text"]).endswith(" ")

    with make_router(primary, fallback, midstream="resume", retry={"max_attempts": 1},
                     continue_prompt=prompt) as router:
        asked = run_sync(router)
    assert_one_coherent_answer(asked, primary.answer)
    messages = fallback.requests[-1].body["messages"]
    assert messages[-1] == {"role": "user", "content": prompt}
    assert messages[-2]["role"] == "assistant"


def test_rejected_continuation_never_hides_the_original_cut(emu, kind, call, continuation_modes):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    fallback.reject_prefill = True
    primary.script(steps.cut(after=3, how="reset"))
    with make_router(primary, fallback, midstream="resume", retry={"max_attempts": 1},
                     fallback_opts={"supports_prefill": True}) as router:
        out = call(router)
    assert isinstance(out.error, StreamInterrupted)
    assert out.error.partial_text == out.text and words(out.text) == 3
    assert [a.error_type for a in out.error.attempts] == ["connection_reset", "continuation_rejected"]
    cause = out.error.__cause__
    assert cause is not None and "400" not in str(cause)  # the cut, not the prefill refusal
    assert "connection_reset" in str(out.error)


def test_rejected_continuation_moves_on_to_the_next_provider(emu, kind, call, continuation_modes):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    fallback.reject_prefill = True
    primary.script(steps.cut(after=3))
    third = provider_entry("third", primary)  # takes the continuation as a user turn
    with make_router(primary, fallback, midstream="resume", retry={"max_attempts": 1},
                     fallback_opts={"supports_prefill": True}, more=[third]) as router:
        out = call(router)
    assert_one_coherent_answer(out, primary.answer)
    assert [a.error_type for a in out.attempts] == ["cut", "continuation_rejected", None]
    assert out.result.provider == "third"


def test_a_continuation_cut_again_is_resumed_again(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.cut(after=3), steps.cut(after=4))
    with make_router(primary, fallback, midstream="resume") as router:
        out = call(router)
    assert_one_coherent_answer(out, primary.answer)
    assert [a.outcome for a in out.attempts] == ["error", "error", "ok"]
    assert [r.continuation for r in primary.requests] == [False, True, True]


def test_deadline_reached_while_resuming_is_a_clean_interruption(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.cut(after=3), steps.hang())
    fallback.script(steps.hang())
    with make_router(primary, fallback, midstream="resume",
                     timeouts={"total": 1.0, "first_token": 0.8, "connect": 0.5}) as router:
        t0 = time.monotonic()
        out = call(router)
        elapsed = time.monotonic() - t0
    assert isinstance(out.error, StreamInterrupted)
    assert out.error.partial_text == out.text and words(out.text) == 3
    assert elapsed < 1.6
    assert out.error.__cause__ is not None


def test_caller_closing_during_a_resume_closes_the_continuation(emu, kind):
    primary = emu[kind]
    primary.script(steps.cut(after=2), steps.ok(chunk_delay=0.05))
    with make_router(primary, midstream="resume") as router:
        with router.stream(MESSAGES) as stream:
            for chunk in stream:
                if chunk.text and len(stream.attempts) == 1:  # the continuation is delivering
                    break
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and primary.requests[-1].ended_at is None:
            time.sleep(0.01)
        assert primary.requests[-1].continuation and primary.requests[-1].disconnected
        assert stream.attempts[-1].error_type == "cancelled"


def test_caller_cancelling_during_a_resume_async(emu, kind):
    primary = emu[kind]
    primary.script(steps.cut(after=2), steps.ok(chunk_delay=0.05))

    async def go(router) -> list[str]:
        seen: list[str] = []

        async def consume() -> None:
            async with router.astream(MESSAGES) as stream:
                async for chunk in stream:
                    seen.append(chunk.text)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await router.aclose()
        return seen

    with make_router(primary, midstream="resume") as router:
        seen = asyncio.run(go(router))
    assert 2 < len(seen) < words(primary.answer)
    assert "".join(seen) == primary.answer[: len("".join(seen))]
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and primary.requests[-1].ended_at is None:
        time.sleep(0.01)
    assert primary.requests[-1].disconnected


def test_restart_signals_the_discarded_text(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.cut(after=3))
    with make_router(primary, fallback, midstream="restart") as router:
        out = call(router)
    assert out.error is None
    partial = "".join(out.texts[:3])
    restarts = [c for c in out.chunks if c.restart]
    assert len(restarts) == 1 and restarts[0] is out.chunks[3]
    assert restarts[0].discard == partial and restarts[0].text
    assert out.result.text == primary.answer  # the new answer only
    assert "".join(out.texts[3:]) == primary.answer
    assert out.result.resumed is False
    assert not primary.requests[-1].continuation


def test_structured_output_is_never_stitched(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.cut(after=3))
    fmt = {"response_format": {"type": "json_object"}} if kind == "openai" else {"metadata": {"user_id": "u"}}
    with make_router(primary, midstream="resume", primary_opts={"params": fmt}) as router:
        out = call(router)
    if kind == "openai":
        assert any(c.restart for c in out.chunks)
        assert not primary.requests[-1].continuation and out.result.resumed is False
        # the emulator answers json_object with a JSON document
        assert json.loads(out.result.text) == {"answer": primary.answer}
    else:  # no structured-output param: stitched as usual
        assert out.result.resumed is True
        assert out.result.text == primary.answer


def test_usage_counts_the_serving_attempts(emu, kind):
    primary = emu[kind]
    primary.script(steps.cut(after=3))
    with make_router(primary, midstream="resume") as router:
        stitched = run_sync(router)
        whole = run_sync(router)
    assert stitched.result.usage.input_tokens >= whole.result.usage.input_tokens > 0
    assert stitched.result.usage.output_tokens > 0
