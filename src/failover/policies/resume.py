"""Continuing a broken stream: the continuation request, and the seam between what the caller
already has and what the continuation sends.

The continuation may pick up exactly where the cut was, repeat the last words, or start over from
the beginning (models often do). `Seam` holds back the continuation's first characters until it can
tell which, then drops the repeated part, so the caller never sees text twice.
"""

from __future__ import annotations

from failover.request import Message, Request

# An overlap shorter than this is more likely a coincidence ("the", a comma) than a repeat; a
# continuation that starts over from the very beginning is recognised at any length.
MIN_OVERLAP = 12


def continuation(request: Request, delivered: str, *, prefill: bool, prompt: str) -> Request:
    """The original request plus the delivered text as the assistant's turn.

    With prefill the model continues that turn itself; otherwise a short user message asks for the
    rest. Providers reject a prefill that ends in whitespace, so it is trimmed (the seam restores
    the spacing).
    """
    partial = delivered.rstrip() if prefill else delivered
    if prefill:
        return request.extended(Message("assistant", partial))
    return request.extended(Message("assistant", partial), Message("user", prompt))


def _starts(delivered: str, head: str) -> list[int]:
    """Positions in `delivered` where a repeat could begin: 0 (a full restart at any length) and
    every tail of at least MIN_OVERLAP characters that begins like `head`."""
    starts = [0]
    probe = head[:MIN_OVERLAP]
    last = len(delivered) - MIN_OVERLAP
    j = delivered.find(probe, 1)
    while 0 < j <= last:
        starts.append(j)
        j = delivered.find(probe, j + 1)
    return starts


def overlap(delivered: str, head: str, final: bool) -> int | None:
    """How many leading characters of `head` (the continuation so far) repeat `delivered`; None
    while more text is needed to decide."""
    if not head:
        return None if not final else 0
    n = len(delivered)
    for j in _starts(delivered, head):  # ascending, so the first full match is the largest overlap
        k = n - j
        m = min(k, len(head))
        if delivered[j:j + m] != head[:m]:
            continue
        if m == k:
            return k  # head repeats delivered[j:] whole
        if not final:
            return None  # head is still consistent with repeating delivered[j:]: wait for more
    return 0


class Seam:
    """Filters the continuation's text until the overlap is known, then passes it through.

    A prefill must not end in whitespace, so the model may put back the trailing space the caller
    already has: when nothing was repeated, that space is dropped once.
    """

    __slots__ = ("_delivered", "_held", "_space", "done")

    def __init__(self, delivered: str) -> None:
        self._delivered = delivered
        self._space = delivered[len(delivered.rstrip()):]
        self._held = ""
        self.done = False

    def feed(self, text: str, final: bool = False) -> str:
        """New continuation text in; the part the caller should see out ("" while holding back)."""
        if self.done:
            return text
        self._held += text
        cut = overlap(self._delivered, self._held, final)
        if cut is None:
            return ""
        rest = self._held[cut:]
        if not final and (not rest or (cut == 0 and self._space.startswith(rest))):
            return ""  # nothing new yet, or only part of the spacing: decide on the next text
        if cut == 0 and self._space and rest.startswith(self._space):
            rest = rest[len(self._space):]
        self._held = ""
        self.done = True
        return rest

    def flush(self) -> str:
        """The stream ended: whatever is still held back is decided now."""
        return "" if self.done else self.feed("", final=True)
