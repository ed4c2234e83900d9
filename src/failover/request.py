"""The caller's request, validated once before any provider is contacted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Request:
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None

    @property
    def system(self) -> str | None:
        """All system messages joined: Anthropic takes them as one top-level `system` parameter."""
        parts = [m.content for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    @property
    def conversation(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.role != "system")

    def extended(self, *messages: Message) -> Request:
        return replace(self, messages=self.messages + messages)


def sendable(text: str, where: str) -> None:
    """A `ValueError` for text no provider can be sent: JSON bodies are UTF-8, and a lone surrogate
    (say, from a badly decoded file) has no UTF-8 form. Caught here, it never reaches an attempt,
    so it is the caller's error and never a provider's failure."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where} cannot be sent: {e.reason} at position {e.start} "
                         f"({text[e.start]!r}); UTF-8 text only") from None


def build_request(messages: Iterable[Mapping[str, Any]], *, max_tokens: int | None = None,
                  temperature: float | None = None, top_p: float | None = None,
                  stop: str | Iterable[str] | None = None) -> Request:
    """Validate OpenAI-style message dicts; `ValueError` names the first bad message before any request."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {type(m).__name__}")
        extra = set(m) - {"role", "content", "name"}
        if extra:
            raise ValueError(f"messages[{i}] has unsupported keys {sorted(extra)}; only role and content")
        role, content = m.get("role"), m.get("content")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string, got {type(content).__name__}")
        sendable(content, f"messages[{i}].content")
        out.append(Message(role, content))
    if not any(m.role == "user" for m in out):
        raise ValueError("messages must contain at least one user message")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    for name, value, upper in (("temperature", temperature, 2.0), ("top_p", top_p, 1.0)):
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value <= upper):
            raise ValueError(f"{name} must be a number between 0 and {upper}, got {value!r}")
    stops: tuple[str, ...] | None
    if stop is None:
        stops = None
    elif isinstance(stop, str):
        stops = (stop,)
    else:
        stops = tuple(stop)
        if not all(isinstance(s, str) for s in stops):
            raise ValueError("stop must be a string or a list of strings")
    for i, s in enumerate(stops or ()):
        sendable(s, f"stop[{i}]")
    return Request(tuple(out), max_tokens, temperature, top_p, stops)
