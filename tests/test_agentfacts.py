"""protocols/agentfacts.py validators: the shortcuts taken for speed accept and refuse exactly what the full checks
do."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from guildnet.protocols.agentfacts import Endpoints, _check_url


def _by_urlsplit(value: str) -> bool:
    """The endpoint check as it was before its shortcut: ``urlsplit`` reads an http(s) scheme and a host."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and len(value) <= 2048


def _verdict(value: str) -> bool:
    try:
        _check_url(value)
    except ValueError:
        return False
    return True


_URLISH = st.text(alphabet="hHtps:/.-[]?#@%19aZ \t\n\x00é", max_size=24)


@settings(max_examples=1500, deadline=None)
@given(scheme=st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "http:/", "https:", " http://", ""]),
       host=_URLISH, rest=_URLISH)
def test_an_endpoint_is_accepted_exactly_when_urlsplit_reads_an_http_url(scheme: str, host: str, rest: str) -> None:
    value = scheme + host + rest
    assert _verdict(value) == _by_urlsplit(value), value


@pytest.mark.parametrize(("value", "accepted"), [
    ("https://agents.example/echo/a2a", True), ("http://127.0.0.1:8080/a2a?x=[1]#f", True),
    ("http://[::1]:8080/a2a", True), ("HTTPS://agents.example", True), ("https://bücher.example/a2a", True),
    ("https://user:pw@agents.example/", True), ("https://", False), ("https:///path", False),
    ("ftp://agents.example/", False), ("https://[::1/a2a", False), ("agents.example/a2a", False),
    ("https://agents.example/" + "a" * 2048, False),
])
def test_endpoint_examples(value: str, accepted: bool) -> None:
    assert _verdict(value) is accepted is _by_urlsplit(value)
    if not accepted:
        with pytest.raises(ValidationError, match=r"absolute http|Invalid IPv6"):
            Endpoints(a2a=value)
