"""The fast RFC 8785 canonicaliser writes exactly what the reference ``rfc8785`` package writes, and refuses (by
handing over) what RFC 8785 refuses."""

from __future__ import annotations

import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.protocols.canonical import canonical_json

_scalars = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_same_bytes_as_the_reference(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize("number", [0.0, -0.0, 1.0, -1.5, 2e-05, 1e-07, 1.5e-08, 1e-6, 123.456, 0.001, 1e16, 1e21,
                                    1.5e300, 5e-324, 2**53 + 0.0, 9007199254740993.0, 0.1 + 0.2, 1e20, 123e18])
def test_numbers_as_ecmascript_writes_them(number: float) -> None:
    assert canonical_json([number]) == rfc8785.dumps([number])


@pytest.mark.parametrize("value", [{"x": math.nan}, [math.inf], 2**53 + 1, {1: "a"}, b"bytes", "\ud800"])
def test_what_rfc8785_refuses_is_refused(value: Any) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(value)
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_json(value)


def test_keys_sort_by_utf16_code_units() -> None:
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3, "é": 4}
    assert canonical_json(value) == rfc8785.dumps(value)
