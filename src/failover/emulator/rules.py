"""Each API's rules for a chat request: refuse what the real API refuses, with its 400 and its wording.

A router that translates requests between the two protocols gets its mistakes back as the real API
would return them (a tool result that answers no call, an image in the other API's shape, a parameter
the API does not have), instead of a test that passes against a lenient fake. Only the first problem
is reported, as the APIs do. The rules, per API:

OpenAI Chat Completions: `model` and a non-empty `messages` array; roles system, developer, user,
assistant, tool; content a string or parts (user: text/image_url/input_audio/file, assistant:
text/refusal, others text); an `image_url` part needs an http(s) URL or a `data:image/...;base64,` URL;
an assistant message's `tool_calls` need `id`, `function.name` and string `function.arguments`, and must
be followed by `tool` messages answering each id; a `tool` message must answer an id of the assistant
message before its run of tool messages; `tools` entries `{"type": "function", "function": {"name",
"parameters"?}}`; `tool_choice` only with tools ("none" / "auto" / "required" / a named function);
`response_format` of type text, json_object or json_schema (with a `name`); `stream_options` only when
streaming; no parameter the API does not have. (The API's demand that json_object messages mention "json"
is not checked: the existing router tests send json_object without it.)

Anthropic Messages: `model`, `max_tokens` (an integer >= 1) and `messages`; roles user and assistant only
(the system prompt is the top-level `system`, a string or text blocks); content a non-empty string or
blocks of text (non-empty), image, document, tool_use, tool_result, or thinking / redacted_thinking
(assistant turns only); tool_use only from the assistant, tool_result only from the user; every
`tool_result.tool_use_id` answers a `tool_use` of the message just before, and every `tool_use` followed
by another message is answered in it; image `source` `{type: base64, media_type: image/jpeg|png|gif|webp,
data}` or `{type: url, url}`; `tools` entries need `name` and `input_schema` of type object (versioned
server tools such as `web_search_20250305` pass unchecked); `tool_choice` `{type: auto|any|none}` or
`{type: tool, name}` with optional `disable_parallel_tool_use`, only with tools; `stop_sequences` a list
of strings; `output_config.format` `{type: json_schema, schema}`; no parameter the API does not have.
"""

from __future__ import annotations

from typing import Any

from failover.emulator.rules_anthropic import check_anthropic
from failover.emulator.rules_openai import check_openai
from failover.emulator.wire import ErrorShape, Kind, Refused


def check(kind: Kind, body: dict[str, Any]) -> ErrorShape | None:
    """The API's 400 for this request body, or None when the API would accept it."""
    try:
        (check_openai if kind == "openai" else check_anthropic)(body)
    except Refused as refused:
        return refused.shape
    return None
