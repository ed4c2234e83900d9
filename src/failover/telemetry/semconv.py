"""Every OpenTelemetry name failover uses: GenAI semantic conventions, and failover's own under
`failover.*`. One module, so a rename is one edit and the docs (docs/telemetry.md) have one source."""

from __future__ import annotations

INSTRUMENTATION_NAME = "failover"

# ---------------------------------------------------------------- span names

CALL_SPAN = "failover chat"
OPERATION = "chat"  # gen_ai.operation.name, and the attempt span's name prefix

# ---------------------------------------------------------------- GenAI semantic conventions

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"  # text | json
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"  # opt-in content: the tools offered
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
# opt-in content (capture_content: true)
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
CONTENT_ATTRIBUTES = (GEN_AI_INPUT_MESSAGES, GEN_AI_OUTPUT_MESSAGES, GEN_AI_SYSTEM_INSTRUCTIONS,
                      GEN_AI_TOOL_DEFINITIONS)

SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"

# metrics
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
METRIC_ATTEMPTS = "failover.attempts"
# the bucket boundaries the GenAI conventions advise
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

# ---------------------------------------------------------------- failover's own

FAILOVER_PROVIDER = "failover.provider"  # the YAML name (gen_ai.provider.name is the well-known one)
FAILOVER_ATTEMPT = "failover.attempt"  # ordinal of the attempt within the call, 1-based
FAILOVER_PROVIDER_ATTEMPT = "failover.attempt.provider_attempt"  # number within its provider, 1-based
FAILOVER_OUTCOME = "failover.outcome"  # ok | error | cancelled | skipped | hedged
FAILOVER_BACKOFF_S = "failover.backoff_s"  # slept before this attempt
FAILOVER_BREAKER_STATE = "failover.breaker.state"  # right after this attempt's verdict
FAILOVER_RETRY_REFUSED = "failover.retry.refused"  # why a retry the policy allowed was refused ("budget")
FAILOVER_BREAKER_PROBE = "failover.breaker.probe"  # this attempt is the half-open breaker's probe
FAILOVER_HEDGE = "failover.hedge"  # this attempt was started because the one before it was slow to send content
FAILOVER_PROBE = "failover.probe"  # a background probe's span (no call of a caller)
PROBE_SPAN = "failover probe"
FAILOVER_PREVIOUS_FAILURE = "failover.previous_failure"  # error.type of the attempt before this one
FAILOVER_ERROR_CLASS = "failover.error.class"  # taxonomy class: transient, silent, unusable, ...
FAILOVER_RETRY_AFTER = "failover.retry_after"  # seconds the provider asked us to wait
FAILOVER_CONTINUATION = "failover.continuation"  # this attempt continues text already delivered
FAILOVER_RESUMED = "failover.resumed"  # the call's answer was stitched from more than one attempt
FAILOVER_CANCELLED = "failover.cancelled"  # the caller closed or cancelled the stream
FAILOVER_CHAIN = "failover.providers"  # the configured chain, in order
FAILOVER_SKIPPED = "failover.providers.skipped"  # providers skipped without a request
FAILOVER_ATTEMPTS = "failover.attempts"  # requests sent in the call (skips not counted)
FAILOVER_SKIP_REASON = "failover.skip.reason"  # the human reason a provider was skipped
FAILOVER_SKIP_CODE = "failover.skip.code"  # breaker_open | breaker_half_open | missing_api_key | deadline
FAILOVER_BREAKER_FROM = "failover.breaker.from"
FAILOVER_BREAKER_TO = "failover.breaker.to"

EVENT_SKIPPED = "failover.provider.skipped"
EVENT_BREAKER = "failover.breaker.state_change"
FAILOVER_UNREPRESENTED = "failover.unrepresented"  # content kinds the router did not pass on, "kind=count"
FAILOVER_TOOL_CALLS = "failover.tool_calls"  # tool calls the attempt's answer made (names and arguments: content)
FAILOVER_TOOLS = "failover.request.tools"  # how many tools the request offered
