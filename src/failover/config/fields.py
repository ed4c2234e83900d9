"""The value types of the schema and the checks behind them.

Each type carries a `Rule`: the constraint as the generated reference (`reference.py`) prints it,
written next to the validator that enforces it, so the documented rule and the check cannot drift.
Messages never embed the offending value: the loader appends it when it may be shown (not for a
value read from `${VAR}`, never for `api_key`).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationInfo
from pydantic_core import PydanticCustomError

from failover.config.problems import kind_of

# Every duration is capped: a longer one is a mistake (milliseconds written as seconds) and turns
# into an OverflowError in the timers of every call.
MAX_SECONDS = 86_400.0
# Counts beyond this are nonsense for every count here, and keep JSON and pybreaker arithmetic sane.
MAX_COUNT = 1_000_000_000
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
NAME_RULE = "letters, digits, `_`, `.`, `-`"

# The pydantic error type of a rule between two fields. Its ctx names the fields (so the loader can
# point at the one the user wrote) and holds the message without values (for values from ${VAR}).
CROSS_FIELD = "failover_cross_field"


@dataclass(frozen=True, slots=True)
class Rule:
    """Annotated metadata: a constraint in words, for the reference. Pydantic ignores it."""

    text: str


def cross_field(message: str, plain: str, *fields: str) -> PydanticCustomError:
    return PydanticCustomError(CROSS_FIELD, message, {"fields": fields, "plain": plain})


def _not_bool(value: Any) -> Any:
    # YAML turns `yes`/`on`/`true` into bools and pydantic's lax mode would read them as 1:
    # `max_attempts: yes` must be an error, not one attempt.
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "Input should be a number, not a boolean")
    return value


def _bool_only(value: Any) -> Any:
    # Bools, or strings (a `${VAR}` always yields one); never numbers, where 2 would silently be True.
    if isinstance(value, bool | str):
        return value
    raise PydanticCustomError("bool_type", "Input should be true or false")


def _at_most_a_day(value: float) -> float:
    if value > MAX_SECONDS:
        raise PydanticCustomError(
            "seconds_cap",
            "must be at most 86400 seconds (one day): a longer wait is almost certainly a unit mistake, "
            "and timers cannot hold it",
        )
    return value


def _name(value: str, info: ValidationInfo) -> str:
    # Names appear in metrics, span attributes, log lines and Redis keys: keep them plain tokens.
    if not NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "name", "{what} may only contain letters, digits, '_', '.' and '-'", {"what": info.field_name})
    return value


def _non_empty(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "{what} must not be empty", {"what": info.field_name})
    return value


def _one_line(value: str, info: ValidationInfo) -> str:
    _non_empty(value, info)
    if not value.isprintable():
        raise PydanticCustomError(
            "printable", "{what} must be one line of printable text (no control characters)", {"what": info.field_name})
    return value


def _url_error(kind: str, message: str, what: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message, {"what": what})


def check_url(value: str, what: str, schemes: tuple[str, ...], kind: str = "url", shape: str = "") -> SplitResult:
    """The parts of a URL that the HTTP clients (httpx, redis-py, gRPC) will accept as they are.

    Checked here because each of them fails only when the first call connects, on every call.
    """
    shape = shape or f"{what} must be an http:// or https:// URL"
    if any(c <= " " or c >= "\x7f" for c in value):
        raise _url_error(kind, "{what} may not contain spaces, control or non-ASCII characters "
                               "(percent-encode them; write a non-ASCII host name in its xn-- form)", what)
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket
        raise _url_error(kind, "{what} has no valid host name", what) from None
    try:
        port = parts.port
    except ValueError:
        raise _url_error(kind, "{what} has an invalid port (a number from 1 to 65535)", what) from None
    if parts.scheme not in schemes or not parts.netloc:
        raise _url_error(kind, shape, what)
    if not host or not _valid_host(host, bracketed="[" in parts.netloc):
        raise _url_error(kind, "{what} has no valid host name", what)
    if port == 0:
        raise _url_error(kind, "{what} has an invalid port (a number from 1 to 65535)", what)
    return parts


_HOST = re.compile(r"[A-Za-z0-9._~-]+")
_IPV4_SHAPE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


def _valid_host(host: str, *, bracketed: bool) -> bool:
    try:
        if bracketed:
            return ipaddress.ip_address(host).version == 6
        if _IPV4_SHAPE.fullmatch(host):
            ipaddress.IPv4Address(host)
            return True
    except ValueError:
        return False
    return _HOST.fullmatch(host) is not None


def _http_url(value: str, info: ValidationInfo) -> str:
    check_url(value, info.field_name or "url", ("http", "https"))
    return value


def _header_safe(value: SecretStr) -> SecretStr:
    # httpx encodes header values as ASCII: any other character fails every call, deep in the SDK.
    if not all(" " <= c <= "~" for c in value.get_secret_value()):
        raise PydanticCustomError(
            "api_key", "api_key may only contain printable ASCII characters (it is sent in an HTTP header)")
    return value


def json_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Where and why `value` cannot be sent as JSON (the SDKs serialise params into the request body)."""
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        return None if value.bit_length() <= 128 else f"{path or 'the value'} is an integer too large to send"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or 'the value'} is not a finite number"
    if isinstance(value, Mapping | list | tuple) and depth > 64:
        return f"{path} is nested too deeply"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path or 'params'} has a key that is {kind_of(key)}, not a string"
            found = json_problem(item, f"{path}.{key}" if path else key, depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = json_problem(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    return f"{path} is {kind_of(value)}, not a JSON value (quote it to make it a string)"


Count = Annotated[int, BeforeValidator(_not_bool), Rule("integer")]
Number = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False), Rule("number")]
Seconds = Annotated[
    float, BeforeValidator(_not_bool), Field(allow_inf_nan=False), AfterValidator(_at_most_a_day),
    Rule("seconds"),
]
Flag = Annotated[bool, BeforeValidator(_bool_only), Rule("`true` or `false`")]
Name = Annotated[str, AfterValidator(_name), Rule(NAME_RULE)]
Text = Annotated[str, AfterValidator(_non_empty), Rule("non-empty string")]
OneLine = Annotated[str, AfterValidator(_one_line), Rule("non-empty, one line")]
HttpUrl = Annotated[str, AfterValidator(_http_url), Rule("http(s) URL with a valid host and port")]
HeaderSecret = Annotated[SecretStr, AfterValidator(_header_safe), Rule("string, printable ASCII")]
