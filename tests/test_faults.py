"""Every fault family, for both provider types, sync and async: through the real SDKs over real
sockets to the emulator. `kind` is the type of the primary provider; the fallback is the other."""

from __future__ import annotations

import itertools

import pytest
from tests.conftest import OTHER, make_router

from failover import AllProvidersFailed, RequestRejected, StreamInterrupted
from failover.emulator import steps


def gaps(records: list) -> list[float]:
    return [b.time - a.time for a, b in itertools.pairwise(records)]


def test_healthy_stream(emu, kind, call):
    primary = emu[kind]
    with make_router(primary, emu[OTHER[kind]]) as router:
        out = call(router)
    assert out.error is None
    assert out.text == primary.answer
    assert out.result.text == out.text
    assert out.result.provider == "primary"
    assert out.result.finish_reason == "stop"
    assert out.result.usage.output_tokens > 0 and out.result.usage.input_tokens > 0
    assert out.summary() == [("primary", "ok", None)]
    assert len(out.texts) > 5  # streamed in pieces, not one blob


def test_rate_limit_retry_after_is_honoured(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.rate_limit(retry_after=0.4))
    with make_router(primary, emu[OTHER[kind]]) as router:
        out = call(router)
    assert out.result is not None and out.result.provider == "primary"
    assert out.summary() == [("primary", "error", "rate_limit"), ("primary", "ok", None)]
    assert out.attempts[0].retry_after == pytest.approx(0.4)
    assert gaps(primary.requests)[0] >= 0.4
    assert out.attempts[1].backoff_s >= 0.4


def test_retry_after_ms_is_honoured(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.rate_limit(retry_after_ms=300))
    with make_router(primary, emu[OTHER[kind]]) as router:
        out = call(router)
    assert out.result.provider == "primary"
    assert gaps(primary.requests)[0] >= 0.3


def test_retry_after_longer_than_allowed_fails_over_at_once(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.rate_limit(retry_after=30))
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert len(primary.requests) == 1
    assert out.attempts[0].duration_s < 1.0


def test_persistent_rate_limit_backs_off_then_fails_over(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(*[steps.rate_limit() for _ in range(3)])
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert out.result.text == fallback.answer
    assert [a.error_type for a in out.attempts] == ["rate_limit"] * 3 + [None]
    assert len(primary.requests) == 3 and len(fallback.requests) == 1


def test_quota_is_not_retried(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.quota())
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert out.summary()[0] == ("primary", "error", "quota")
    assert len(primary.requests) == 1


def test_server_error_once_is_retried_on_the_same_provider(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.server_error(500))
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.result.provider == "primary"
    assert out.summary() == [("primary", "error", "server_error"), ("primary", "ok", None)]
    assert len(fallback.requests) == 0


def test_persistent_503_fails_over_within_the_retry_budget(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.server_error(503))
    with make_router(primary, fallback, retry={"max_attempts": 2}) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert len(primary.requests) == 2
    assert out.attempts[0].status_code == 503


def test_reset_before_headers_is_retried(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.reset())
    with make_router(primary, emu[OTHER[kind]]) as router:
        out = call(router)
    assert out.result.provider == "primary"
    assert out.attempts[0].error_class == "transient"
    assert out.attempts[0].error_type in ("connection_reset", "cut")


def test_silent_provider_fails_over_after_first_token_without_retry(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.hang(), steps.hang())
    with make_router(primary, fallback, timeouts={"first_token": 0.4}) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert out.summary()[0] == ("primary", "error", "timeout_first_token")
    assert len(primary.requests) == 1  # a silent provider stays silent: not retried
    assert 0.35 <= out.attempts[0].duration_s < 1.0


def test_no_first_chunk_after_headers_fails_over(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.slow_first(3.0))
    with make_router(primary, fallback, timeouts={"first_token": 0.4}) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert out.summary()[0] == ("primary", "error", "timeout_first_token")
    assert 0.35 <= out.attempts[0].duration_s < 1.0


def test_slow_first_chunk_under_the_limit_is_answered(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.slow_first(0.3))
    with make_router(primary, emu[OTHER[kind]], timeouts={"first_token": 1.0}) as router:
        out = call(router)
    assert out.result.provider == "primary"
    assert out.result.attempts[0].first_chunk_s >= 0.3


def test_context_length_fails_over_without_retry(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.context_length())
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert out.summary()[0] == ("primary", "error", "context_length")
    assert len(primary.requests) == 1


@pytest.mark.parametrize("fault", ["bad_request", "content_filter"])
def test_rejected_request_is_not_retried_or_failed_over(emu, kind, call, fault):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    step = steps.bad_request("messages.0.content: unsupported value") if fault == "bad_request" \
        else steps.content_filter()
    primary.script(step)
    with make_router(primary, fallback) as router:
        out = call(router)
    assert isinstance(out.error, RequestRejected)
    assert out.error.provider == "primary" and out.error.status_code == 400
    expected = "unsupported value" if fault == "bad_request" else ""
    assert expected in out.error.reason
    assert out.error.__cause__ is not None
    assert len(out.error.attempts) == 1 and len(primary.requests) == 1 and len(fallback.requests) == 0
    assert out.error.attempts[0].error_type == ("invalid_request" if fault == "bad_request" else "content_filter")


def test_rejected_request_fails_over_when_the_yaml_allows_it(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.content_filter())
    with make_router(primary, fallback, failover_on_reject=True) as router:
        out = call(router)
    assert out.result.provider == "fallback"


@pytest.mark.parametrize("step", ["auth", "forbidden", "not_found", "payment_required"])
def test_unusable_provider_fails_over_without_retry(emu, kind, call, step):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(getattr(steps, step)())
    with make_router(primary, fallback) as router:
        out = call(router)
    assert out.result.provider == "fallback"
    assert out.attempts[0].error_class == "unusable"
    assert len(primary.requests) == 1


def test_inband_error_before_any_text_is_retried(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.inband_error(after=0))
    with make_router(primary, emu[OTHER[kind]]) as router:
        out = call(router)
    assert out.result.provider == "primary"
    assert out.attempts[0].error_class == "transient"
    assert out.text == primary.answer


def test_missing_terminal_event_before_text_is_retried(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.no_terminal(after=0))
    with make_router(primary, emu[OTHER[kind]]) as router:
        out = call(router)
    assert out.summary() == [("primary", "error", "cut"), ("primary", "ok", None)]


def test_stream_without_terminal_event_is_never_a_success(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.no_terminal())
    with make_router(primary, emu[OTHER[kind]], midstream="raise") as router:
        out = call(router)
    assert isinstance(out.error, StreamInterrupted)
    assert out.error.partial_text == primary.answer == out.text
    assert out.error.attempts[-1].error_type == "cut"


def test_malformed_event_is_handled(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.malformed(after=0))
    with make_router(primary, emu[OTHER[kind]]) as router:
        out = call(router)
    assert out.result.provider == "primary"
    assert out.attempts[0].error_type == "malformed_event"
    assert out.text == primary.answer


@pytest.mark.parametrize("how", ["close", "reset"])
def test_cut_after_text_raises_stream_interrupted_in_raise_mode(emu, kind, call, how):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.script(steps.cut(after=3, how=how))
    with make_router(primary, fallback, midstream="raise") as router:
        out = call(router)
    assert isinstance(out.error, StreamInterrupted)
    assert out.error.partial_text == out.text and len(out.texts) == 3
    assert primary.answer.startswith(out.text)
    assert len(fallback.requests) == 0  # raise: nothing is sent after the cut
    assert out.error.__cause__ is not None


def test_stall_after_text_is_cut_at_idle(emu, kind, call):
    primary = emu[kind]
    primary.script(steps.stall(after=2))
    with make_router(primary, emu[OTHER[kind]], timeouts={"idle": 0.4}, midstream="raise") as router:
        out = call(router)
    assert isinstance(out.error, StreamInterrupted)
    assert out.error.attempts[-1].error_type == "timeout_idle"
    assert 0.35 <= out.error.attempts[-1].duration_s < 1.5
    assert len(out.texts) == 2


def test_total_deadline_bounds_backoff(emu, kind, call):
    primary, fallback = emu[kind], emu[OTHER[kind]]
    primary.down_for(60, steps.rate_limit(retry_after=0.6))
    fallback.down_for(60, steps.rate_limit(retry_after=0.6))
    with make_router(primary, fallback, timeouts={"total": 1.0, "first_token": 0.5},
                     retry={"max_attempts": 5}) as router:
        out = call(router)
    assert isinstance(out.error, AllProvidersFailed)
    total = sum(a.duration_s + a.backoff_s for a in out.error.attempts)
    assert total < 1.3
    assert out.error.__cause__ is not None
