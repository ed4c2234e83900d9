"""The error taxonomy (DESIGN §4): what a failure of one attempt means for retry, failover and the
breaker. Providers say what went wrong in neutral terms (`providers.base.Fault`); this module only
decides what that means, so it knows no SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from failover.providers.base import Fault


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # retry the same provider with backoff, then fail over
    SILENT = "silent"  # no answer in time: a silent provider stays silent, fail over at once
    UNUSABLE = "unusable"  # auth, quota, unknown model: fail over at once
    WRONG_FIT = "wrong_fit"  # this request does not fit this provider: fail over, not the provider's fault
    REJECTED = "rejected"  # the request itself is refused: no other provider is tried by default
    LOCAL = "local"  # raised on our side before the request left: fail over, never the provider's fault
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


_TRANSIENT_STATUS = {408: "timeout", 409: "conflict", 429: "rate_limit", 500: "server_error",
                     502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout", 529: "overloaded"}
_UNUSABLE_STATUS = {401: "auth", 402: "quota", 403: "permission", 404: "not_found"}
_QUOTA_CODES = {"insufficient_quota", "billing_error", "billing_hard_limit_reached"}
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_FILTER_CODES = {"content_filter", "content_policy_violation"}
_CONTEXT_PHRASES = ("prompt is too long", "maximum context length", "context window", "too many tokens")
# Anthropic reports a content-filter refusal as a plain invalid_request_error; only the text tells.
_FILTER_PHRASES = ("content filtering policy", "content policy", "usage policy", "safety system")
_QUOTA_PHRASES = ("credit balance",)

# Fault kinds that are not HTTP statuses: (class, error_type).
_KINDS: dict[str, tuple[ErrorClass, str]] = {
    "connect": (ErrorClass.TRANSIENT, "connection_refused"),
    "dns": (ErrorClass.TRANSIENT, "dns"),
    "connect_timeout": (ErrorClass.TRANSIENT, "connect_timeout"),
    # The header wait is bounded by first_token: a provider that says nothing is silent.
    "timeout": (ErrorClass.SILENT, "timeout_first_token"),
    "reset": (ErrorClass.TRANSIENT, "connection_reset"),
    "cut": (ErrorClass.TRANSIENT, "cut"),
    "malformed": (ErrorClass.TRANSIENT, "malformed_event"),
    "local": (ErrorClass.LOCAL, "local_error"),
}


def classify(fault: Fault, exception: BaseException | None = None) -> Failure:
    """The taxonomy class of one attempt's failure."""
    if fault.kind == "status":
        assert fault.status is not None
        return _status(fault, fault.status, exception)
    if fault.kind == "inband":  # an error event inside a 200 stream
        if fault.code in _QUOTA_CODES or fault.type in _QUOTA_CODES:
            return Failure(ErrorClass.UNUSABLE, "quota", fault.message, exception=exception)
        name = fault.code or fault.type.removesuffix("_error") or "stream_error"
        return Failure(ErrorClass.TRANSIENT, name, fault.message, exception=exception)
    error_class, name = _KINDS[fault.kind]
    return Failure(error_class, name, fault.message or name, exception=exception)


def _status(fault: Fault, status: int, exception: BaseException | None) -> Failure:
    code, err_type, lowered = fault.code, fault.type, fault.message.lower()

    def failure(cls: ErrorClass, name: str) -> Failure:
        return Failure(cls, name, fault.message, status, fault.retry_after, exception)

    if code in _QUOTA_CODES or err_type in _QUOTA_CODES or any(p in lowered for p in _QUOTA_PHRASES):
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
