"""Strict JSON from strangers (protocols/bounded_json.py): nesting bounded, duplicate keys and non-finite numbers
refused, whichever way the document arrives; the shortcuts taken for speed change no verdict."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.protocols.bounded_json import (
    MAX_DEPTH,
    DuplicateKey,
    NotFinite,
    TooDeep,
    deeper_than,
    loads,
    loads_with_member_text,
)


def nested(depth: int) -> str:
    return '{"a":' * (depth // 2) + "[" * (depth - depth // 2) + "1" + "]" * (depth - depth // 2) + "}" * (depth // 2)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_nesting_up_to_the_limit_is_read_and_one_level_more_is_refused(as_bytes: bool) -> None:
    for depth, refused in ((MAX_DEPTH, False), (MAX_DEPTH + 1, True)):
        text = nested(depth)
        document = text.encode() if as_bytes else text
        if refused:
            with pytest.raises(TooDeep):
                loads(document)
        else:
            assert loads(document) == json.loads(text)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    document = json.dumps({"text": "[{" * 500, "list": [["]]]"]]})
    assert loads(document) == json.loads(document)


def test_duplicate_keys_non_finite_numbers_and_a_bom_are_refused() -> None:
    with pytest.raises(DuplicateKey):
        loads('{"verdict": "failure", "verdict": "success"}')
    with pytest.raises(DuplicateKey):
        loads(b'[{"a": {"b": 1, "b": 2}}]')
    for bad in ("NaN", "[Infinity]", '{"x": -Infinity}', "1e999"):
        with pytest.raises(NotFinite):
            loads(bad)
    with pytest.raises(json.JSONDecodeError):
        loads("\ufeff{}")
    assert loads('{"a": 1}'.encode("utf-16")) == {"a": 1}  # bytes name their encoding, as json.loads reads them


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet="[]{}\"\\ab", max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=200))
def test_the_same_verdict_as_walking_the_parsed_document(value: object) -> None:
    text = json.dumps(value)
    for limit in (1, 3, 8, MAX_DEPTH):
        parsed = json.loads(text)
        if isinstance(parsed, dict | list) and deeper_than(parsed, limit):
            with pytest.raises(TooDeep):
                loads(text, max_depth=limit)
        else:
            assert loads(text, max_depth=limit) == value


def _verdict(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "read", read()
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, None


_SPANS = st.text(alphabet='{}[],:" \n\\a1tfn-.e', max_size=12)
"""JSON's punctuation and a few letters and digits: torn, glued and repeated members, most of them malformed."""


@settings(max_examples=600, deadline=None)
@given(facts=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                          | st.text(alphabet='{}"\\:,ab', max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                      max_size=3), max_leaves=30),
       between=_SPANS, after=_SPANS, space=st.sampled_from(["", " ", "\n "]))
def test_reading_the_member_text_gives_the_verdict_and_document_of_a_plain_read(
        facts: object, between: str, after: str, space: str) -> None:
    """Whatever follows the opening (more members, a repeated key, a trailing comma, extra data, whitespace
    anywhere), the split read refuses what :func:`loads` refuses and reads what it reads, and the text it returns
    is exactly the member's value as written."""
    member, opening = json.dumps(facts, separators=(",", ":")), '{"action":"register","facts":'
    for text in (opening + space + member + between + after, opening + member + space + ',"iat":1' + between + "}",
                 opening + member + ',"facts":1}', opening + member + "}" + space):
        plain = _verdict(lambda text=text: loads(text))  # type: ignore[misc]
        split = _verdict(lambda text=text: loads_with_member_text(  # type: ignore[misc]
            text.encode(), {"action": "register"}, "facts"))
        assert plain[0] == split[0], text
        if plain[0] == "read":
            document, member_text = split[1]
            assert document == plain[1] and list(document) == list(plain[1])
            if member_text is not None:
                assert text.startswith('{"action":"register","facts":' + member_text)
                assert json.loads(member_text) == plain[1]["facts"]


def test_the_member_text_is_none_when_the_document_opens_otherwise() -> None:
    for text in ('{"facts":{"a":1},"action":"register"}', '{"action": "register","facts":{}}',
                 '{"action":"register","facts": {}}', '{"action":"withdraw","facts":{}}'):
        assert loads_with_member_text(text, {"action": "register"}, "facts") == (loads(text), None)
    assert loads_with_member_text('{"action":"register","facts":{"a":[1, 2]} ,"iat":7}', {"action": "register"},
                                  "facts") == ({"action": "register", "facts": {"a": [1, 2]}, "iat": 7}, '{"a":[1, 2]}')
    with pytest.raises(TooDeep):
        loads_with_member_text('{"action":"register","facts":' + nested(MAX_DEPTH) + "}", {"action": "register"},
                               "facts")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                      "utf-32-le", "utf-32-be"])
def test_bytes_are_decoded_as_json_loads_decodes_them(encoding: str) -> None:
    """The UTF-8 shortcut for documents opening with ``{`` leaves every other encoding to json.detect_encoding."""
    for text in ('{"a":"é"}', "{}", '["x"]', "7"):
        data = text.encode(encoding)
        assert loads(data) == json.loads(data)
        assert loads_with_member_text(data, {"action": "register"}, "facts") == (json.loads(data), None)
    assert loads_with_member_text('{"action":"register","facts":{"b":"é"}}'.encode(encoding), {"action": "register"},
                                  "facts")[0] == {"action": "register", "facts": {"b": "é"}}


def test_each_opening_is_looked_for_as_asked() -> None:
    """The opening written once per (leading members, member) never answers for another pair."""
    text = '{"action":"register","facts":{"a":1},"note":"x"}'
    assert loads_with_member_text(text, {"action": "register"}, "facts")[1] == '{"a":1}'
    assert loads_with_member_text(text, {"action": "withdraw"}, "facts")[1] is None
    assert loads_with_member_text(text, {}, "action")[1] == '"register"'
    assert loads_with_member_text(text, {"action": "register"}, "note")[1] is None
    assert loads_with_member_text(text, {"action": "register"}, "facts")[1] == '{"a":1}'
