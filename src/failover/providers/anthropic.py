"""Anthropic Messages."""

from __future__ import annotations

import threading
from typing import Any, cast

import anthropic

from failover.providers.base import AsyncEvents, CallTimeout, Decoder, Provider, SyncEvents
from failover.request import Request

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 1024

# Anthropic's stop reasons in the vocabulary callers already handle (OpenAI's finish_reason).
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicDecoder(Decoder):
    __slots__ = ()

    def feed(self, event: Any) -> str:
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            return delta.text if delta.type == "text_delta" else ""
        if kind == "message_start":
            message = event.message
            self.model = message.model
            self.input_tokens = message.usage.input_tokens or 0
            self.output_tokens = message.usage.output_tokens or 0
        elif kind == "message_delta":
            reason = event.delta.stop_reason
            self.finish_reason = FINISH_REASONS.get(reason, reason)
            self.output_tokens = event.usage.output_tokens or self.output_tokens
        elif kind == "message_stop":
            self.complete = True
        return ""


class AnthropicProvider(Provider):
    kind = "anthropic"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._client: anthropic.Anthropic | None = None
        self._aclient: anthropic.AsyncAnthropic | None = None

    @property
    def base_url(self) -> str:
        return self.config.base_url or DEFAULT_BASE_URL

    def _client_kwargs(self) -> dict[str, Any]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        # max_retries=0: one retry loop, ours; and the SDK obeys any Retry-After, even 600 s.
        # open_telemetry=False: we make one CLIENT span per attempt ourselves; the SDK's own span and
        # its traceparent injection would duplicate it and leak our trace ids to the provider.
        return {"api_key": key, "base_url": self.base_url, "max_retries": 0, "open_telemetry": False}

    def _sync(self) -> anthropic.Anthropic:
        with self._lock:
            if self._client is None:
                self._client = anthropic.Anthropic(**self._client_kwargs())
            return self._client

    def _async(self) -> anthropic.AsyncAnthropic:
        with self._lock:
            if self._aclient is None:
                self._aclient = anthropic.AsyncAnthropic(**self._client_kwargs())
            return self._aclient

    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.config.params)
        body.update(model=self.model, stream=True,
                    max_tokens=request.max_tokens or self.config.max_tokens or DEFAULT_MAX_TOKENS,
                    messages=[{"role": m.role, "content": m.content} for m in request.conversation])
        system = request.system
        if system is not None:
            body["system"] = system
        for name in ("temperature", "top_p"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.stop is not None:
            body["stop_sequences"] = list(request.stop)
        return body

    def open(self, request: Request, timeout: CallTimeout) -> SyncEvents:
        stream = self._sync().messages.create(**self._body(request), timeout=timeout.for_sdk())
        return cast(SyncEvents, stream)

    async def aopen(self, request: Request, timeout: CallTimeout) -> AsyncEvents:
        stream = await self._async().messages.create(**self._body(request), timeout=timeout.for_sdk())
        return cast(AsyncEvents, stream)

    def decoder(self) -> Decoder:
        return AnthropicDecoder()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        # Forget the async client: it belongs to the event loop it ran on, and a later
        # asyncio.run() in the same process needs a fresh one.
        client, self._aclient = self._aclient, None
        if client is not None:
            await client.close()
        self.close()
