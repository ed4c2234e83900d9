"""OpenAI Chat Completions (and any OpenAI-compatible server through `base_url`).

The SDK is imported when a provider of this type is first used, not when failover is imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from failover.providers.base import (
    CallTimeout,
    Decoder,
    Fault,
    InbandError,
    MalformedEvent,
    Provider,
    status_fault,
    wrapped_fault,
)
from failover.providers.sse import Event
from failover.request import Request

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Delta fields that carry content the router does not represent; `role` and `content` are read,
# the rest of a delta (a null refusal, an empty tool_calls list...) carries nothing.
_UNREPRESENTED = ("refusal", "tool_calls", "function_call", "reasoning_content", "reasoning", "audio")


class OpenAIDecoder(Decoder):
    __slots__ = ()

    def event(self, event: Event) -> str:
        data = event.data
        if data == b"[DONE]":
            return ""
        chunk = json.loads(data)
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
                self.complete = True
                self.model = chunk.get("model")
            delta = choice.get("delta")
            if not delta:
                return ""
            text = delta.get("content")
            if text is None or len(delta) > 1:
                self._other(delta)
            return text or ""
        if chunk.get("error"):
            raise InbandError(chunk)
        usage = chunk.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens") or 0
            self.output_tokens = usage.get("completion_tokens") or 0
        elif choices is None:
            raise MalformedEvent(f"unexpected event without choices: {data[:120].decode('utf-8', 'replace')}")
        return ""

    def _other(self, delta: dict[str, Any]) -> None:
        for key, value in delta.items():
            if key not in ("role", "content") and value:
                self.skip(key if key in _UNREPRESENTED else f"delta.{key}")


class OpenAIProvider(Provider):
    kind = "openai"
    default_base_url = DEFAULT_BASE_URL

    @classmethod
    def sdk(cls) -> Any:
        import openai

        return openai

    @classmethod
    def create_function(cls) -> Callable[..., Any]:
        create: Callable[..., Any] = cls.sdk().resources.chat.completions.Completions.create
        return create

    def _make_client(self, sdk: Any, http: Any, *, sync: bool) -> Any:
        factory = sdk.OpenAI if sync else sdk.AsyncOpenAI
        return factory(**self.client_kwargs(), http_client=http)

    def body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.config.params)
        body.update(model=self.model, stream=True, stream_options={"include_usage": True},
                    messages=[{"role": m.role, "content": m.content} for m in request.messages])
        max_tokens = request.max_tokens or self.config.max_tokens
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        for name in ("temperature", "top_p"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.stop is not None:
            body["stop"] = list(request.stop)
        return body

    def streaming(self, client: Any, request: Request, timeout: CallTimeout) -> Any:
        return client.chat.completions.with_streaming_response.create(**self.body(request),
                                                                      timeout=timeout.for_sdk())

    def decoder(self) -> Decoder:
        return OpenAIDecoder()

    def sdk_fault(self, exc: BaseException) -> Fault | None:
        openai = self.sdk()
        if isinstance(exc, openai.APIStatusError):
            return status_fault(exc, exc.status_code)
        if isinstance(exc, openai.APITimeoutError):
            return wrapped_fault(exc, "timeout")
        if isinstance(exc, openai.APIConnectionError):
            return wrapped_fault(exc, "connect")
        return None
