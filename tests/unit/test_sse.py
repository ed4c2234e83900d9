"""SSE framing (providers/sse.py) against the WHATWG event-stream rules, as tables."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from failover.providers.sse import Event, SSEDecoder

E = Event


def events(*chunks: bytes) -> list[Event]:
    decoder = SSEDecoder()
    out: list[Event] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


@pytest.mark.parametrize(("stream", "expected"), [
    # line endings: LF, CRLF and CR all end a line, and nothing else does
    (b"data: a\n\n", [E("", b"a")]),
    (b"data: a\r\n\r\n", [E("", b"a")]),
    (b"data: a\r\r", [E("", b"a")]),
    (b"data: a\r\n\n", [E("", b"a")]),
    ("data: {\"t\": \"x\u2028y\u2029z\u0085w\"}\n\n".encode(), [E("", "{\"t\": \"x\u2028y\u2029z\u0085w\"}".encode())]),
    (b"data: a\x0bb\x0cc\x1cd\n\n", [E("", b"a\x0bb\x0cc\x1cd")]),  # other str.splitlines separators too
    # fields
    (b"event: message_start\ndata: {}\n\n", [E("message_start", b"{}")]),
    (b"data:no-space\n\n", [E("", b"no-space")]),
    (b"data:  two spaces\n\n", [E("", b" two spaces")]),  # only one space is removed
    (b"data\n\n", [E("", b"")]),  # a data field without a value: an event with empty data
    (b"data: a\ndata: b\n\n", [E("", b"a\nb")]),
    (b": keep-alive\n\ndata: a\n\n", [E("", b"a")]),
    (b"id: 7\nretry: 100\ndata: a\n\n", [E("", b"a")]),
    (b"unknown: x\ndata: a\n\n", [E("", b"a")]),
    (b"event: ping\n\n", []),  # no data: nothing to dispatch
    (b"event: x\n\ndata: a\n\n", [E("", b"a")]),  # the event type does not outlive its blank line
    # the end of the stream
    (b"data: a\n\ndata: b\n", [E("", b"a")]),  # an event without its blank line is dropped
    (b"data: a", []),
    # a byte order mark at the very start is skipped, anywhere else it is data
    (b"\xef\xbb\xbfdata: a\n\n", [E("", b"a")]),
    (b"data: \xef\xbb\xbfa\n\n", [E("", b"\xef\xbb\xbfa")]),
])
def test_framing(stream: bytes, expected: list[Event]) -> None:
    assert events(stream) == expected


def test_data_field_without_value_counts_as_a_line() -> None:
    # `data` alone appends an empty line: with another data line it shows as a newline.
    assert events(b"data\ndata: x\n\n") == [E("", b"\nx")]


@given(st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=4, max_size=4),
       st.lists(st.integers(0, 40), max_size=6))
def test_any_split_of_the_bytes_gives_the_same_events(endings: list[bytes], cuts: list[int]) -> None:
    a, b, c, d = endings
    assume(not (b == b"\r" and c == b"\n"))  # that pair is one CRLF, not a blank line
    stream = b"event: e" + a + b"data: 1" + b + c + b": c" + d + b"data: 2\r\n\r\n"
    whole = events(stream)
    points = sorted({min(x, len(stream)) for x in cuts})
    pieces = [stream[i:j] for i, j in zip([0, *points], [*points, len(stream)], strict=True)]
    assert events(*pieces) == whole == [E("e", b"1"), E("", b"2")]


def test_a_crlf_split_across_two_reads_is_one_line_end() -> None:
    assert events(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [E("", b"a\nb")]


def test_a_bom_split_across_reads_is_still_skipped() -> None:
    assert events(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [E("", b"a")]
