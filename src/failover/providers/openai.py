"""OpenAI Chat Completions (and any OpenAI-compatible server through `base_url`)."""

from __future__ import annotations

import threading
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

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        self._aclient: openai.AsyncOpenAI | None = None

    @property
    def base_url(self) -> str:
        return self.config.base_url or DEFAULT_BASE_URL

    def _client_kwargs(self) -> dict[str, Any]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        # max_retries=0: ours is the only retry loop (SDK retries would multiply attempts).
        return {"api_key": key, "base_url": self.base_url, "max_retries": 0}

    def _sync(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(**self._client_kwargs())
            return self._client

    def _async(self) -> openai.AsyncOpenAI:
        with self._lock:
            if self._aclient is None:
                self._aclient = openai.AsyncOpenAI(**self._client_kwargs())
            return self._aclient

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
        stream = self._sync().chat.completions.create(**self._body(request), timeout=timeout.for_sdk())
        return cast(SyncEvents, stream)

    async def aopen(self, request: Request, timeout: CallTimeout) -> AsyncEvents:
        stream = await self._async().chat.completions.create(**self._body(request), timeout=timeout.for_sdk())
        return cast(AsyncEvents, stream)

    def decoder(self) -> Decoder:
        return OpenAIDecoder()

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
