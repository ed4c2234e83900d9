"""OpenAI Chat Completions (and any OpenAI-compatible server through `base_url`)."""

from __future__ import annotations

from typing import Any, cast

import openai

from failover.providers.base import AsyncEvents, CallTimeout, Decoder, MalformedEvent, Provider, SyncEvents
from failover.request import Request

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIDecoder(Decoder):
    __slots__ = ()

    def feed(self, event: Any) -> str:
        choices = event.choices
        if choices:
            choice = choices[0]
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
                self.complete = True
                self.model = event.model
            delta = choice.delta
            return (delta.content or "") if delta is not None else ""
        if event.usage is not None:
            self.input_tokens = event.usage.prompt_tokens or 0
            self.output_tokens = event.usage.completion_tokens or 0
            return ""
        if choices is None:  # the SDK builds chunks without validation: an unknown frame lands here
            raise MalformedEvent(f"unexpected event without choices: {str(event)[:120]}")
        return ""


class OpenAIProvider(Provider):
    kind = "openai"
    default_base_url = DEFAULT_BASE_URL
    sdk_client = openai.OpenAI
    sdk_async_client = openai.AsyncOpenAI
    sdk_create = openai.resources.chat.completions.Completions.create

    def _body(self, request: Request) -> dict[str, Any]:
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

    def open(self, request: Request, timeout: CallTimeout) -> SyncEvents:
        stream = self.sync_client().chat.completions.create(**self._body(request), timeout=timeout.for_sdk())
        return cast(SyncEvents, stream)

    async def aopen(self, request: Request, timeout: CallTimeout) -> AsyncEvents:
        stream = await self.async_client().chat.completions.create(**self._body(request), timeout=timeout.for_sdk())
        return cast(AsyncEvents, stream)

    def decoder(self) -> Decoder:
        return OpenAIDecoder()
