"""What a caller receives: `Chunk` per piece of text, `Result` once the stream is over."""

from __future__ import annotations

from dataclasses import dataclass, field

from failover.errors import Attempt


# Not frozen: a frozen dataclass costs ~0.5 µs more to build, and one is built per chunk.
@dataclass(slots=True)
class Chunk:
    """New text from the provider that is serving now. Treat it as a value: do not modify it.

    `restart` is true on the one chunk that tells a consumer, in `midstream: restart` mode, to discard
    everything received so far (`discard` holds that text) because the answer starts over.
    """

    text: str
    provider: str
    model: str
    restart: bool = False
    discard: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    text: str
    provider: str
    model: str
    usage: Usage
    finish_reason: str | None
    attempts: list[Attempt] = field(default_factory=list)
    resumed: bool = False
