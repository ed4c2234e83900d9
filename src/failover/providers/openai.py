"""OpenAI Chat Completions (and any OpenAI-compatible server through `base_url`)."""

from __future__ import annotations

import json
from typing import Any

import openai

from failover.providers.base import CallTimeout, Decoder, InbandError, MalformedEvent, Provider
from failover.request import Request

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIDecoder(Decoder):
    __slots__ = ()

    def dispatch(self, event: str, data: str) -> str:
        if data == "[DONE]":
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
            return (delta.get("content") or "") if delta else ""
        if chunk.get("error"):
            raise InbandError(chunk)
        usage = chunk.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens") or 0
            self.output_tokens = usage.get("completion_tokens") or 0
        elif choices is None:
            raise MalformedEvent(f"unexpected event without choices: {data[:120]}")
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

    def streaming(self, client: Any, request: Request, timeout: CallTimeout) -> Any:
        return client.chat.completions.with_streaming_response.create(**self._body(request),
                                                                      timeout=timeout.for_sdk())

    def decoder(self) -> Decoder:
        return OpenAIDecoder()
