"""Anthropic Messages.

The SDK is imported when a provider of this type is first used, not when failover is imported.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

from failover.providers.base import CallTimeout, Decoder, Fault, InbandError, Provider, status_fault, wrapped_fault
from failover.providers.sse import Event
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
    "pause_turn": "stop",
}


class AnthropicDecoder(Decoder):
    __slots__ = ("_blocks",)

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, str] = {}  # index -> type of the content blocks that are not text

    def event(self, event: Event) -> str:
        body = json.loads(event.data)
        kind = body["type"]
        if kind == "content_block_delta":
            delta = body["delta"]
            if delta["type"] == "text_delta":
                return str(delta["text"])
            self.skip(self._blocks.get(body["index"]) or delta["type"])
            return ""
        if kind == "content_block_start":
            block_type = body["content_block"]["type"]
            if block_type != "text":
                self._blocks[body["index"]] = block_type
                self.skip(block_type)
        elif kind == "message_start":
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
        elif kind == "error" or event.type == "error":
            raise InbandError(body)
        return ""


class AnthropicProvider(Provider):
    kind = "anthropic"
    default_base_url = DEFAULT_BASE_URL

    @classmethod
    def sdk(cls) -> Any:
        import anthropic

        return anthropic

    @classmethod
    def create_function(cls) -> Callable[..., Any]:
        create: Callable[..., Any] = cls.sdk().resources.messages.Messages.create
        return create

    def _make_client(self, sdk: Any, http: Any, *, sync: bool) -> Any:
        # The SDK obeys any Retry-After, even 600 s: max_retries=0 (set by the base) matters here.
        # open_telemetry=False: we make one CLIENT span per attempt ourselves; the SDK's own span and
        # its traceparent injection would duplicate it and leak our trace ids to the provider.
        factory = sdk.Anthropic if sync else sdk.AsyncAnthropic
        return factory(**self.client_kwargs(), http_client=http, open_telemetry=False)

    def body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.config.params)
        body.update(model=self.model, stream=True,
                    max_tokens=request.max_tokens or self.config.max_tokens or DEFAULT_MAX_TOKENS,
                    messages=[{"role": m.role, "content": m.content} for m in request.conversation])
        system = request.system
        if system is not None:
            body["system"] = system
        sampling = [name for name in ("temperature", "top_p") if getattr(request, name) is not None]
        if sampling and not self._accepts(*sampling):
            _warn_sampling_dropped(sampling, self.sdk().__version__)
        else:
            for name in sampling:
                body[name] = getattr(request, name)
        if request.stop is not None:
            body["stop_sequences"] = list(request.stop)
        return body

    def _accepts(self, *names: str) -> bool:
        return all(name in self.accepted_params() for name in names)

    def streaming(self, client: Any, request: Request, timeout: CallTimeout) -> Any:
        return client.messages.with_streaming_response.create(**self.body(request), timeout=timeout.for_sdk())

    def decoder(self) -> Decoder:
        return AnthropicDecoder()

    def sdk_fault(self, exc: BaseException) -> Fault | None:
        anthropic = self.sdk()
        if isinstance(exc, anthropic.APIStatusError):
            return status_fault(exc, exc.status_code)
        if isinstance(exc, anthropic.APITimeoutError):
            return wrapped_fault(exc, "timeout")
        if isinstance(exc, anthropic.APIConnectionError):
            return wrapped_fault(exc, "connect")
        return None


def _warn_sampling_dropped(names: list[str], version: str) -> None:
    # A developer passed a parameter this SDK's Messages API does not have: say so in code terms (the
    # warnings filter shows it once per place), and serve the call without it rather than failing.
    warnings.warn(f"anthropic {version}: {' and '.join(names)} is not a Messages API parameter of this SDK; "
                  "the call is sent to Anthropic providers without it", UserWarning, stacklevel=2)
