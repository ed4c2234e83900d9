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
    Piece,
    Provider,
    status_fault,
    wrapped_fault,
)
from failover.providers.sse import Event
from failover.request import Image, Message, OutputFormat, Request, Text, Tool

DEFAULT_BASE_URL = "https://api.openai.com/v1"

class OpenAIDecoder(Decoder):
    __slots__ = ()

    def event(self, event: Event, out: list[Piece]) -> None:
        data = event.data
        if data == b"[DONE]":
            return
        chunk = json.loads(data)
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                text = delta.get("content")
                if text:
                    out.append(text)
                if text is None or len(delta) > 1:
                    self._other(delta, out)
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
                self.complete = True
                self.model = chunk.get("model")
            return
        if chunk.get("error"):
            raise InbandError(chunk)
        usage = chunk.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens") or 0
            self.output_tokens = usage.get("completion_tokens") or 0
        elif choices is None:
            raise MalformedEvent(f"unexpected event without choices: {data[:120].decode('utf-8', 'replace')}")

    def _other(self, delta: dict[str, Any], out: list[Piece]) -> None:
        for key, value in delta.items():
            if not value or key in ("role", "content"):
                continue
            if key == "tool_calls":
                for item in value:
                    function = item.get("function") or {}
                    out.append(self.tool_delta(item["index"], item.get("id"), function.get("name"),
                                               function.get("arguments") or ""))
            elif key == "refusal":
                self.refusal = (self.refusal or "") + value
            else:  # reasoning_content, audio, a field a later API adds: counted, never silently lost
                self.skip(key)


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
        """The request in OpenAI's Chat Completions shapes (which the router's request already is):
        YAML `params`, then the call's parameters, then the call's `extra` for this provider."""
        body: dict[str, Any] = dict(self.config.params)
        body.update(model=self.model, stream=True, stream_options={"include_usage": True},
                    messages=[_message(m) for m in request.messages])
        max_tokens = request.max_tokens or self.config.max_tokens
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        for name in ("temperature", "top_p", "seed", "user", "parallel_tool_calls"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.stop is not None:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice_name is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice_name}}
        elif request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.response_format is not None:
            body["response_format"] = _response_format(request.response_format)
        body.update(request.extra_for(self.name, self.kind))
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


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if isinstance(m.content, str):
        out["content"] = m.content if m.content or not m.tool_calls else None
    else:
        out["content"] = [{"type": "text", "text": p.text} if isinstance(p, Text) else _image(p) for p in m.content]
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [call.as_message_part() for call in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _image(image: Image) -> dict[str, Any]:
    spec: dict[str, Any] = {"url": image.url}
    if image.detail is not None:
        spec["detail"] = image.detail
    return {"type": "image_url", "image_url": spec}


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters)}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _response_format(fmt: OutputFormat) -> dict[str, Any]:
    if fmt.kind == "json_object":
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": fmt.name or "answer", "schema": dict(fmt.schema or {"type": "object"})}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}
