"""The exceptions callers catch, and `Attempt`, the record of one try that every error carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["ok", "error", "skipped", "hedged"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try on one provider, or one provider skipped without a request.

    `error_type` is a short, stable name (`rate_limit`, `quota`, `timeout_first_token`, `cut`, …) and
    `message` a one-line human reason; neither ever contains a secret.
    """

    provider: str
    model: str
    number: int  # 1-based within this provider (0 for a skipped provider)
    outcome: Outcome
    error_type: str | None = None
    status_code: int | None = None
    message: str | None = None
    retry_after: float | None = None
    started_at: float = 0.0  # wall clock, seconds since the epoch
    duration_s: float = 0.0
    first_chunk_s: float | None = None
    backoff_s: float = 0.0  # slept before this attempt
    error_class: str | None = None  # taxonomy class: transient, silent, unusable, wrong_fit, rejected, caller
    breaker_state: str | None = None  # the provider's breaker right after this attempt's verdict
    # Why a retry on this provider was refused although more attempts were allowed, so the call failed
    # over instead: "budget" (the provider's retry budget was spent, see docs/fleet.md) or
    # "retry_after" (the provider asked to wait longer than retry.max_retry_after).
    retry_refused: str | None = None
    # A hedge: started because the attempt before it was slow to send content. Outcome "hedged": it
    # lost the race to the other one and was cancelled (no breaker verdict, not a failure).
    hedge: bool = False

    def line(self) -> str:
        """One human line: what the demo and the CLI print for each attempt. It shows every number
        behind a decision: the backoff slept before the attempt, the provider's Retry-After, and why
        a retry was refused."""
        where = f"{self.provider}#{self.number}" if self.number else self.provider
        if self.hedge:
            where += " (hedge)"
        parts = [f"{where:<14}", f"{self.outcome:<7}"]
        if self.backoff_s:
            parts.append(f"after {self.backoff_s:.2f}s backoff,")
        if self.outcome == "ok":
            parts.append(f"first chunk {self.first_chunk_s:.3f}s" if self.first_chunk_s is not None else "")
        elif self.outcome == "skipped":
            parts.append(self.message or "")
        elif self.outcome == "hedged":
            parts.append("cancelled: the other attempt sent content first")
        else:
            reason = self.error_type or ""
            if self.status_code:
                reason = f"{reason} ({self.status_code})"
            parts.append(reason)
            if self.message:
                parts.append(f"- {self.message}")
            if self.retry_after is not None:
                parts.append(f"(Retry-After {self.retry_after:g}s)")
            if self.retry_refused == "retry_after":
                parts.append("(retry refused: Retry-After is over max_retry_after)")
            elif self.retry_refused:
                parts.append(f"(retry refused: {self.retry_refused})")
        parts.append(f"[{self.duration_s:.3f}s]")
        if self.breaker_state:
            parts.append(f"breaker={self.breaker_state}")
        return " ".join(p for p in parts if p)


class FailoverError(Exception):
    """Base of every error the router raises; `.attempts` tells what was tried."""

    def __init__(self, message: str, attempts: Sequence[Attempt] = ()) -> None:
        super().__init__(message)
        self.attempts: list[Attempt] = list(attempts)


class ConfigError(FailoverError, ValueError):
    """The YAML file or mapping is invalid. The message names the file, key path and line."""

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None,
                 line: int | None = None) -> None:
        where = ":".join(str(p) for p in (source, line) if p is not None)
        prefix = f"{where}: " if where else ""
        key = f"{path}: " if path else ""
        super().__init__(f"{prefix}{key}{message}")
        self.source = source
        self.path = path
        self.line = line


def attempts_table(attempts: Sequence[Attempt]) -> str:
    return "\n".join("  " + a.line() for a in attempts)


class AllProvidersFailed(FailoverError):
    """No provider could serve. The message is a short table of the attempts; `__cause__` is the last
    real provider error."""

    def __init__(self, reason: str, attempts: Sequence[Attempt] = ()) -> None:
        table = attempts_table(attempts)
        super().__init__(f"{reason}\n{table}" if table else reason, attempts)
        self.reason = reason


class RequestRejected(FailoverError):
    """The request itself was refused (invalid request, content filter). `.reason` is the provider's."""

    def __init__(self, reason: str, attempts: Sequence[Attempt] = (), *, provider: str = "",
                 status_code: int | None = None) -> None:
        super().__init__(f"{provider or 'provider'} rejected the request: {reason}", attempts)
        self.reason = reason
        self.provider = provider
        self.status_code = status_code


class StreamInterrupted(FailoverError):
    """Text was already delivered and the stream could not be continued."""

    def __init__(self, reason: str, partial_text: str, attempts: Sequence[Attempt] = ()) -> None:
        table = attempts_table(attempts)
        msg = f"stream interrupted after {len(partial_text)} characters: {reason}"
        super().__init__(f"{msg}\n{table}" if table else msg, attempts)
        self.reason = reason
        self.partial_text = partial_text
