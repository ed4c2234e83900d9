"""URL checks as a table, and against httpx2 (the HTTP client of the installed openai and anthropic SDKs):
what the check accepts, the client parses."""

from __future__ import annotations

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from failover.config.fields import check_url

HTTP = ("http", "https")


@pytest.mark.parametrize(
    "url",
    ["http://localhost:11434/v1", "https://api.openai.com/v1", "http://127.0.0.1:1", "http://[::1]:8080/v1",
     "http://user:p%40ss@host:65535/x?y=1#z", "https://xn--bcher-kva.example/v1", "http://a_b.internal/"],
)
def test_accepted(url: str) -> None:
    assert check_url(url, "base_url", HTTP).hostname
    httpx2.URL(url)  # and the SDKs' client agrees


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("localhost:8080", "must be an http:// or https:// URL"),
        ("ftp://host/", "must be an http:// or https:// URL"),
        ("http://", "must be an http:// or https:// URL"),
        ("http://host:99999/", "invalid port"),
        ("http://host:0/", "invalid port"),
        ("http://host:-1/", "invalid port"),
        ("http://host:port/", "invalid port"),
        ("http://[::1/", "no valid host"),
        ("http://[1.2.3.4]/", "no valid host"),
        ("http://:80/", "no valid host"),
        ("http://256.1.1.1/", "no valid host"),
        ("http://a/b c", "spaces, control or non-ASCII"),
        ("http://a/\x00", "spaces, control or non-ASCII"),
        ("http://bücher.example/", "spaces, control or non-ASCII"),
        ("http://a\tb/", "spaces, control or non-ASCII"),
        ("http://a%00b/", "no valid host"),
    ],
)
def test_refused(url: str, fragment: str) -> None:
    with pytest.raises(PydanticCustomError) as info:
        check_url(url, "base_url", HTTP)
    assert fragment in str(info.value) and "base_url" in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("htps:/[]@%.-_~?#0123456789abcxyz: \t\x00é"), max_size=30)
       .map(lambda tail: "http://" + tail))
def test_whatever_the_check_accepts_the_client_parses(url: str) -> None:
    try:
        check_url(url, "base_url", HTTP)
    except PydanticCustomError:
        return
    parsed = httpx2.URL(url)
    assert parsed.host and parsed.scheme == "http"
