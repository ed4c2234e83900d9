"""How a call ends, as values: the caller's `Result`, and the `FailoverError` that says why not.

Pure functions of what the planner kept (the transcript, the attempts, the failures): the planner
decides when a call ends, these say what the caller gets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from failover.errors import AllProvidersFailed, Attempt, FailoverError, StreamInterrupted
from failover.types import Result, Usage

if TYPE_CHECKING:
    from failover.attempt import LiveAttempt, Transcript
    from failover.policies.classify import Failure

SUMMARY = 200  # characters of a provider's message kept in an Attempt


def summary(text: str) -> str:
    """One line of at most SUMMARY characters (scrub first: a cut must never split a secret)."""
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY else text[: SUMMARY - 1] + "…"


def result(transcript: Transcript, attempts: list[Attempt], last: LiveAttempt | None,
           served: list[LiveAttempt], finish_reason: str | None) -> Result:
    """The caller's Result: `last` served it, `served` are the attempts whose text it kept."""
    text = transcript.text
    usage = Usage(sum(a.decoder.input_tokens for a in served), sum(a.decoder.output_tokens for a in served))
    if last is None:
        return Result(text, "", "", usage, finish_reason, list(attempts), transcript.resumed)
    decoder = last.decoder
    return Result(
        text=text, provider=last.name, model=decoder.model or last.model, usage=usage,
        finish_reason=finish_reason, attempts=list(attempts), resumed=transcript.resumed,
        tool_calls=decoder.tool_calls(), refusal=decoder.refusal or (text if decoder.refusal_is_text else None))


def interrupted(cut: Failure, transcript: Transcript, attempts: list[Attempt],
                reason: str | None = None) -> StreamInterrupted:
    why = f"{cut.error_type}: {cut.message}" + (f" ({reason})" if reason else "")
    error = StreamInterrupted(why, transcript.text, attempts)
    error.__cause__ = cut.exception  # the original cut, never a later continuation's refusal
    return error


def given_up(reason: str | None, transcript: Transcript, attempts: list[Attempt], cut: Failure | None,
             last_failure: Failure | None) -> FailoverError:
    """No attempt is left to make: a StreamInterrupted when the caller has part of an answer,
    AllProvidersFailed (naming each provider's fate, the last real error as its cause) otherwise."""
    if transcript.delivered and cut is not None:
        return interrupted(cut, transcript, attempts, reason or "no provider could continue")
    if reason is None:
        tried = [a for a in attempts if a.outcome == "error"]
        if not tried:
            skipped = "; ".join(f"{a.provider}: {a.message}" for a in attempts)
            reason = f"no provider available ({skipped})"
        else:
            reason = f"all providers failed; last error: {tried[-1].provider}: {tried[-1].error_type}"
    error = AllProvidersFailed(reason, attempts)
    if last_failure is not None:
        error.__cause__ = last_failure.exception
    return error
