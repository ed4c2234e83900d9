"""Server-sent events: bytes in, events out, by the WHATWG event-stream rules.

Lines end at CR, LF or CRLF and nowhere else: model text may hold raw U+2028, U+2029 or U+0085 (legal
unescaped in JSON), which `str.splitlines` would wrongly treat as line ends. So lines are split on
bytes, before any decoding, as the spec and the openai SDK's decoder do.

- a line starting with `:` is a comment (keep-alives);
- `field: value` (one optional space after the colon), `field` alone is a field with an empty value;
- `data` lines are joined with `\\n`; `event` sets the type; `id` and `retry` are not needed here;
- a blank line dispatches the event (if it has data); an event left without its blank line when the
  stream ends is dropped, as the spec says;
- a UTF-8 byte order mark at the very start is skipped.

Data is handed on as bytes (`json.loads` reads UTF-8 bytes directly), so the per-event path does
no decoding of its own.
"""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    type: str  # "" when the event had no `event:` field (the spec's "message")
    data: bytes


_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Incremental: `feed(bytes)` returns the events those bytes complete."""

    __slots__ = ("_after_cr", "_buffer", "_data", "_event", "_started")

    def __init__(self) -> None:
        self._buffer = b""  # the incomplete last line of what was fed so far
        self._after_cr = False  # the last byte fed was a CR: an LF right after it ends no new line
        self._data: list[bytes] = []
        self._event = ""
        self._started = False

    def feed(self, chunk: bytes) -> list[Event]:
        if not self._started:
            chunk = self._buffer + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._buffer = chunk  # may still become a byte order mark: wait for more
                return []
            self._started = True
            self._buffer = b""
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM):]
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the second half of a CRLF split across two reads
        self._after_cr = False
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        self._buffer = lines.pop()
        return self._dispatch(lines) if lines else []

    def _dispatch(self, lines: list[bytes]) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            if not line:
                if self._data:
                    data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                    events.append(Event(self._event, data))
                    self._data = []
                self._event = ""
                continue
            if line[0] == 0x3A:  # ":" starts a comment
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
            # id, retry and unknown fields carry nothing a chat stream needs
        return events
