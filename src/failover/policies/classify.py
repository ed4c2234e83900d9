"""Map any failure of an attempt to the error taxonomy (DESIGN §4), which decides retry, failover
and whether the breaker counts it."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import anthropic
import httpx2
import openai

from failover.providers.base import InbandError, MalformedEvent


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # retry the same provider with backoff, then fail over
    SILENT = "silent"  # no answer in time: a silent provider stays silent, fail over at once
    UNUSABLE = "unusable"  # auth, quota, unknown model: fail over at once
    WRONG_FIT = "wrong_fit"  # this request does not fit this provider: fail over, not the provider's fault
    REJECTED = "rejected"  # the request itself is refused: no other provider is tried by default
    CALLER = "caller"  # the caller closed or cancelled


@dataclass(frozen=True, slots=True)
class Failure:
    error_class: ErrorClass
    error_type: str  # short stable name: rate_limit, quota, timeout_idle, cut, ...
    message: str
    status_code: int | None = None
    retry_after: float | None = None
    exception: BaseException | None = None

    @property
    def retryable(self) -> bool:
        return self.error_class is ErrorClass.TRANSIENT

    @property
    def breaker_failure(self) -> bool:
        return self.error_class in (ErrorClass.TRANSIENT, ErrorClass.SILENT, ErrorClass.UNUSABLE)


class Truncated(Exception):
    """The stream ended without its terminal event."""


class AttemptTimeout(Exception):
    """Our own deadline for this attempt passed: `kind` is first_token, idle or total."""

    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__(f"no {'first chunk' if kind == 'first_token' else 'chunk'} within {seconds:g}s"
                         if kind != "total" else f"call deadline of {seconds:g}s reached")
        self.kind = kind
        self.seconds = seconds


_TIMEOUTS = (openai.APITimeoutError, anthropic.APITimeoutError, httpx2.TimeoutException)
_CONNECTION = (openai.APIConnectionError, anthropic.APIConnectionError, httpx2.TransportError)
_STATUS = (openai.APIStatusError, anthropic.APIStatusError)
_TRANSIENT_STATUS = {408: "timeout", 409: "conflict", 429: "rate_limit", 500: "server_error",
                     502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout", 529: "overloaded"}
_UNUSABLE_STATUS = {401: "auth", 402: "quota", 403: "permission", 404: "not_found"}
_QUOTA_CODES = {"insufficient_quota", "billing_error", "billing_hard_limit_reached"}
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_FILTER_CODES = {"content_filter", "content_policy_violation"}
_CONTEXT_PHRASES = ("prompt is too long", "maximum context length", "context window", "too many tokens")
# Anthropic reports a content-filter refusal as a plain invalid_request_error; only the text tells.
_FILTER_PHRASES = ("content filtering policy", "content policy", "usage policy", "safety system")


def _fields(exc: BaseException) -> tuple[str, str, str]:
    """(type, code, message) from an SDK error body: OpenAI's `body` is the inner error object,
    Anthropic's the whole `{"type": "error", "error": {...}}` document."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body["error"] if isinstance(body.get("error"), dict) else body
        return (str(inner.get("type") or ""), str(inner.get("code") or ""), str(inner.get("message") or ""))
    return "", "", str(getattr(exc, "message", "") or exc)


def retry_after(headers: httpx2.Headers | None) -> float | None:
    """`retry-after-ms`, then `retry-after` in seconds or as an HTTP date."""
    if not headers:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_status(exc: BaseException, status: int) -> Failure:
    err_type, code, message = _fields(exc)
    response = getattr(exc, "response", None)
    after = retry_after(response.headers) if response is not None else None
    reason = _one_line(message or err_type or str(exc))
    lowered = message.lower()

    def failure(cls: ErrorClass, name: str) -> Failure:
        return Failure(cls, name, reason, status, after, exc)

    if code in _QUOTA_CODES or err_type in _QUOTA_CODES or "credit balance" in lowered:
        return failure(ErrorClass.UNUSABLE, "quota")
    if status in _UNUSABLE_STATUS:
        return failure(ErrorClass.UNUSABLE, _UNUSABLE_STATUS[status])
    if status == 413:
        return failure(ErrorClass.WRONG_FIT, "too_large")
    if status == 400 and (code in _CONTEXT_CODES or any(p in lowered for p in _CONTEXT_PHRASES)):
        return failure(ErrorClass.WRONG_FIT, "context_length")
    if code in _FILTER_CODES or err_type in _FILTER_CODES or any(p in lowered for p in _FILTER_PHRASES):
        return failure(ErrorClass.REJECTED, "content_filter")
    if status in (400, 422):
        return failure(ErrorClass.REJECTED, "invalid_request")
    if status in _TRANSIENT_STATUS:
        return failure(ErrorClass.TRANSIENT, _TRANSIENT_STATUS[status])
    if status >= 500:
        return failure(ErrorClass.TRANSIENT, "server_error")
    # Any other 4xx says the provider cannot serve us as configured (a wrong base_url, say).
    return failure(ErrorClass.UNUSABLE, f"http_{status}")


def classify(exc: BaseException) -> Failure:
    """The taxonomy class of one attempt's failure, from either SDK or from our own checks."""
    if isinstance(exc, AttemptTimeout):
        cls = ErrorClass.SILENT if exc.kind != "total" else ErrorClass.TRANSIENT
        return Failure(cls, f"timeout_{exc.kind}", str(exc), exception=exc)
    if isinstance(exc, Truncated):
        return Failure(ErrorClass.TRANSIENT, "cut", str(exc) or "stream ended without its terminal event",
                       exception=exc)
    if isinstance(exc, (MalformedEvent, json.JSONDecodeError)):
        return Failure(ErrorClass.TRANSIENT, "malformed_event", _one_line(str(exc)), exception=exc)
    if isinstance(exc, _STATUS):
        return classify_status(exc, exc.status_code)
    if isinstance(exc, _TIMEOUTS):
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, httpx2.ConnectTimeout) or isinstance(cause, httpx2.ConnectTimeout):
            return Failure(ErrorClass.TRANSIENT, "connect_timeout", "connect timed out", exception=exc)
        # Our header wait is bounded by first_token: a provider that says nothing is silent.
        return Failure(ErrorClass.SILENT, "timeout_first_token", "no response headers in time", exception=exc)
    if isinstance(exc, _CONNECTION):
        cause = exc if isinstance(exc, httpx2.TransportError) else (exc.__cause__ or exc.__context__)
        if isinstance(cause, httpx2.ConnectError):
            name = "connection_refused"
        elif isinstance(cause, httpx2.RemoteProtocolError):
            name = "cut"
        else:
            name = "connection_reset"
        return Failure(ErrorClass.TRANSIENT, name, _one_line(str(cause or exc)) or name, exception=exc)
    if isinstance(exc, InbandError):  # an error event inside a 200 stream
        err_type, code, message = _fields(exc)
        if code in _QUOTA_CODES or err_type in _QUOTA_CODES:
            return Failure(ErrorClass.UNUSABLE, "quota", _one_line(message), exception=exc)
        name = code or err_type.removesuffix("_error") or "stream_error"
        return Failure(ErrorClass.TRANSIENT, name, _one_line(message or str(exc)), exception=exc)
    # Anything else (a TypeError from a bad `params:` entry, say) means this provider cannot serve
    # the call as configured; the next one may.
    return Failure(ErrorClass.UNUSABLE, type(exc).__name__, _one_line(str(exc)), exception=exc)
