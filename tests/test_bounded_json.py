"""Strict JSON from strangers (protocols/bounded_json.py): nesting bounded, duplicate keys and non-finite numbers
refused, whichever way the document arrives; the shortcuts taken for speed change no verdict."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.protocols.bounded_json import MAX_DEPTH, DuplicateKey, NotFinite, TooDeep, deeper_than, loads


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
