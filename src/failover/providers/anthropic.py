"""Anthropic Messages.

The SDK is imported when a provider of this type is first used, not when failover is imported.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

from failover.providers import anthropic_messages as translate
from failover.providers.base import (
    CallTimeout,
    Decoder,
    Fault,
    InbandError,
    Piece,
    Provider,
    status_fault,
    wrapped_fault,
)
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
    __slots__ = ("_blocks", "_tools")

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, str] = {}  # block index -> type, for blocks that are not text or tool_use
        self._tools: dict[int, int] = {}  # block index -> tool call ordinal

    def event(self, event: Event, out: list[Piece]) -> None:
        body = json.loads(event.data)
        kind = body["type"]
        if kind == "content_block_delta":
            delta = body["delta"]
            kind = delta["type"]
            if kind == "text_delta":
                if delta["text"]:
                    out.append(str(delta["text"]))
            elif kind == "input_json_delta" and body["index"] in self._tools:
                out.append(self.tool_delta(self._tools[body["index"]], None, None, delta["partial_json"]))
            else:
                self.skip(self._blocks.get(body["index"]) or kind)
        elif kind == "content_block_start":
            self._start(body["index"], body["content_block"], out)
        elif kind == "message_start":
            message = body["message"]
            self.model = message.get("model")
            usage = message.get("usage") or {}
            self.input_tokens = usage.get("input_tokens") or 0
            self.output_tokens = usage.get("output_tokens") or 0
        elif kind == "message_delta":
            reason = body["delta"].get("stop_reason")
            self.finish_reason = FINISH_REASONS.get(reason, reason)
            self.refusal_is_text = reason == "refusal"
            self.output_tokens = (body.get("usage") or {}).get("output_tokens") or self.output_tokens
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error" or event.type == "error":
            raise InbandError(body)

    def _start(self, index: int, block: dict[str, Any], out: list[Piece]) -> None:
        kind = block["type"]
        if kind == "text":
            if block.get("text"):
                out.append(str(block["text"]))
        elif kind == "tool_use":
            ordinal = self._tools[index] = len(self._tools)
            given = block.get("input")
            out.append(self.tool_delta(ordinal, block["id"], block["name"], json.dumps(given) if given else ""))
        else:
            self._blocks[index] = kind
            self.skip(kind)


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
        """The request translated to the Messages API: YAML `params`, then the call's parameters, then
        the call's `extra` for this provider."""
        body: dict[str, Any] = dict(self.config.params)
        body.update(model=self.model, stream=True,
                    max_tokens=request.max_tokens or self.config.max_tokens or DEFAULT_MAX_TOKENS,
                    messages=translate.messages(request.conversation))
        system = request.system
        if system is not None:
            body["system"] = system
        sampling = [name for name in ("temperature", "top_p") if getattr(request, name) is not None]
        if sampling and not self._accepts(*sampling):
            _warn_dropped(f"{' and '.join(sampling)} is not a Messages API parameter of anthropic "
                          f"{self.sdk().__version__}")
        else:
            for name in sampling:
                body[name] = getattr(request, name)
        if request.seed is not None:
            _warn_dropped("seed has no counterpart in the Messages API (OpenAI documents it as best effort too)")
        if any(m.name for m in request.messages):
            _warn_dropped("a message `name` has no counterpart in the Messages API")
        if request.stop is not None:
            body["stop_sequences"] = list(request.stop)
        if request.user is not None:
            body["metadata"] = {**body.get("metadata", {}), "user_id": request.user}
        if request.tools:
            body["tools"] = [translate.tool(t) for t in request.tools]
        choice = translate.tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
        if request.response_format is not None:
            body["output_config"] = {**body.get("output_config", {}),
                                     "format": translate.output_format(request.response_format)}
        body.update(request.extra_for(self.name, self.kind))
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


def _warn_dropped(what: str) -> None:
    # A developer passed something this API cannot carry: say so in code terms (Python's default
    # filter shows it once per place), and serve the call without it rather than failing it.
    warnings.warn(f"{what}: Anthropic providers are sent the call without it", UserWarning, stacklevel=2)
