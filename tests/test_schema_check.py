"""Schema validation on hostile schemas and instances: nothing fetched, patterns in linear time, same verdicts
as jsonschema everywhere else."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from guildnet.protocols.schema_check import UnsafeSchema, cached_checker, checker, first_error

CATASTROPHIC = "^(a|aa)+$"
EVIL = "a" * 38 + "!"


def test_a_catastrophic_pattern_is_matched_in_linear_time() -> None:
    validator = checker({"type": "string", "pattern": CATASTROPHIC})
    started = time.perf_counter()
    assert first_error(validator, EVIL) is not None
    assert first_error(validator, "a" * 40) is None
    assert time.perf_counter() - started < 0.05  # Python's re takes seconds on the first one


def test_pattern_properties_and_additional_properties_use_the_linear_engine() -> None:
    schema = {"type": "object", "patternProperties": {CATASTROPHIC: {"type": "integer"}},
              "additionalProperties": False}
    validator = checker(schema)
    started = time.perf_counter()
    assert first_error(validator, {EVIL: 1}) == f"(root): Additional properties are not allowed ('{EVIL}' unexpected)"
    assert first_error(validator, {"aaaa": "not an integer"}) is not None
    assert first_error(validator, {"aaaa": 3}) is None
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(("schema", "why"), [
    ({"$ref": "http://127.0.0.1:9/schema.json"}, "points outside the schema"),
    ({"$defs": {"a": {"$ref": "other.json#/x"}}, "$ref": "#/$defs/a"}, "points outside the schema"),
    ({"$dynamicRef": "https://example.org/s#meta"}, "points outside the schema"),
    ({"type": "string", "pattern": "(?=a)a"}, "not a linear-time regular expression"),
    ({"type": "string", "pattern": r"(a)\1"}, "not a linear-time regular expression"),
    ({"patternProperties": {"^x": {}}, "unevaluatedProperties": False}, "unevaluatedProperties beside"),
    ({"type": "string", "pattern": "a" * 2000}, "longer than"),
    ({"type": 12}, "not a valid JSON Schema"),
    ([], "must be a JSON object"),
])
def test_schemas_that_would_reach_out_or_backtrack_are_refused(schema: Any, why: str) -> None:
    with pytest.raises(UnsafeSchema, match=why):
        checker(schema)


def test_a_cached_checker_is_built_once_per_schema_and_refuses_what_checker_refuses() -> None:
    """The delegator checks every call's input with it: building a checker costs a meta-schema validation."""
    schema: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 3}},
                              "required": ["text"]}
    first = cached_checker(schema)
    assert cached_checker({"required": ["text"], **schema}) is first  # same JSON, keys in another order
    schema["properties"]["text"]["maxLength"] = 1  # the caller's later change does not reach the cached one
    assert first_error(first, {"text": "abc"}) is None and first_error(first, {"text": "abcd"}) is not None
    assert cached_checker(schema) is not first
    for _ in range(2):  # a refusal is remembered, and raised each time
        with pytest.raises(UnsafeSchema, match="not a linear-time regular expression"):
            cached_checker({"type": "string", "pattern": "(?=a)a"})
    with pytest.raises(UnsafeSchema, match="must be JSON"):
        cached_checker({"type": {1, 2}})


def test_a_remote_reference_is_never_fetched() -> None:
    """Even nested where a lazy resolver would only look later: a listening socket sees no connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    connected = threading.Event()

    def accept() -> None:
        try:
            server.accept()
            connected.set()
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/s.json"
    with pytest.raises(UnsafeSchema):
        checker({"type": "object", "properties": {"a": {"anyOf": [{"type": "null"}, {"$ref": url}]}}})
    thread.join()
    server.close()
    assert not connected.is_set()


def test_local_references_still_work() -> None:
    validator = checker({"$defs": {"n": {"type": "integer", "minimum": 0}},
                         "type": "object", "properties": {"n": {"$ref": "#/$defs/n"}}, "required": ["n"]})
    assert first_error(validator, {"n": 3}) is None
    assert first_error(validator, {"n": -1}) == "n: -1 is less than the minimum of 0"


_SCHEMAS = st.sampled_from([
    {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"],
     "additionalProperties": False},
    {"type": "object", "patternProperties": {"^x_[0-9]+$": {"type": "integer"}}, "additionalProperties": False},
    {"type": "object", "patternProperties": {"^s": {"type": "string"}}, "additionalProperties": {"type": "boolean"}},
    {"type": "string", "pattern": "^[a-z]{2,4}$"},
    {"type": "array", "items": {"type": "string", "pattern": "b+"}, "maxItems": 3},
    {"type": "object", "properties": {"a": {"type": "string"}}, "propertyNames": {"pattern": "^[a-c]$"}},
])
_JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text("abxs_01!", max_size=6),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text("abxs_01", max_size=4),
                                                                                  inner, max_size=4), max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(_SCHEMAS, _JSON)
def test_same_verdict_as_jsonschema_on_safe_schemas(schema: dict[str, Any], instance: Any) -> None:
    assert (first_error(checker(schema), instance) is None) == Draft202012Validator(schema).is_valid(instance)
