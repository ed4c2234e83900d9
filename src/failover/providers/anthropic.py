"""Anthropic Messages."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import anthropic

from failover.providers.base import CallTimeout, Decoder, InbandError, Provider
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


@functools.cache
def _warn_sampling_dropped() -> None:
    # The Messages API of this SDK has no temperature or top_p: sending them would fail every call.
    logging.getLogger("failover").warning(
        "anthropic: temperature and top_p are not Messages API parameters in anthropic %s; not sent",
        anthropic.__version__)


class AnthropicDecoder(Decoder):
    __slots__ = ()

    def dispatch(self, event: str, data: str) -> str:
        body = json.loads(data)
        kind = body["type"]
        if kind == "content_block_delta":
            delta = body["delta"]
            return str(delta["text"]) if delta["type"] == "text_delta" else ""
        if kind == "message_start":
            message = body["message"]
            self.model = message.get("model")
            usage = message.get("usage") or {}
            self.input_tokens = usage.get("input_tokens") or 0
            self.output_tokens = usage.get("output_tokens") or 0
        elif kind == "message_delta":
            reason = body["delta"].get("stop_reason")
            self.finish_reason = FINISH_REASONS.get(reason, reason)
            self.output_tokens = (body.get("usage") or {}).get("output_tokens") or self.output_tokens
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error" or event == "error":
            raise InbandError(body)
        return ""


class AnthropicProvider(Provider):
    kind = "anthropic"
    default_base_url = DEFAULT_BASE_URL
    sdk_client = anthropic.Anthropic
    sdk_async_client = anthropic.AsyncAnthropic
    sdk_create = anthropic.resources.messages.Messages.create

    def client_kwargs(self) -> dict[str, Any]:
        # The SDK obeys any Retry-After, even 600 s: max_retries=0 (set by the base) matters here.
        # open_telemetry=False: we make one CLIENT span per attempt ourselves; the SDK's own span and
        # its traceparent injection would duplicate it and leak our trace ids to the provider.
        return {**super().client_kwargs(), "open_telemetry": False}

    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.config.params)
        body.update(model=self.model, stream=True,
                    max_tokens=request.max_tokens or self.config.max_tokens or DEFAULT_MAX_TOKENS,
                    messages=[{"role": m.role, "content": m.content} for m in request.conversation])
        system = request.system
        if system is not None:
            body["system"] = system
        if request.temperature is not None or request.top_p is not None:
            _warn_sampling_dropped()
        if request.stop is not None:
            body["stop_sequences"] = list(request.stop)
        return body

    def streaming(self, client: Any, request: Request, timeout: CallTimeout) -> Any:
        return client.messages.with_streaming_response.create(**self._body(request), timeout=timeout.for_sdk())

    def decoder(self) -> Decoder:
        return AnthropicDecoder()
