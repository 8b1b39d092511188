"""The compiled yes-check agrees with jsonschema (Draft 2020-12, as schema_check runs it) on every schema it
compiles, and refuses to compile what it does not mirror."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from guildnet.protocols.schema_check import checker, first_error
from guildnet.protocols.schema_fast import compile_schema

TYPES = ["null", "boolean", "integer", "number", "string", "array", "object"]
NAMES = ["a", "b", "c"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([0.0, 1.0, 2.5, -1.5, 1e3])
    | st.sampled_from(["", "x", "xyz", "héllo", "a", "b"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from([*NAMES, "z"]), inner, max_size=4),
    max_leaves=8)


def schemas() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.just(True),
        st.builds(lambda t: {"type": t}, st.sampled_from(TYPES)),
        st.builds(lambda ts: {"type": ts}, st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True)),
        st.builds(lambda v: {"enum": v}, st.lists(st.sampled_from(["a", "b", "x"]), min_size=1, max_size=3)),
        st.builds(lambda k, n: {k: n}, st.sampled_from(["minimum", "maximum", "exclusiveMinimum",
                                                        "exclusiveMaximum"]), st.sampled_from([-1, 0, 1, 2.5])),
        st.builds(lambda k, n: {k: n}, st.sampled_from(["minLength", "maxLength", "minItems", "maxItems"]),
                  st.integers(0, 3)),
    )

    def annotated(sub: Any, description: str) -> Any:
        return {**sub, "description": description, "default": None} if isinstance(sub, dict) else sub

    def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        objects = st.builds(
            lambda props, required, additional, title: {
                "type": "object", "properties": props, "required": required, "title": title,
                **({} if additional is None else {"additionalProperties": additional})},
            st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
            st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
            st.none() | st.booleans() | inner, st.text(max_size=3))
        return st.one_of(objects,
                         st.builds(lambda items: {"type": "array", "items": items}, inner),
                         st.builds(lambda options: {"anyOf": options}, st.lists(inner, min_size=1, max_size=3)),
                         st.builds(annotated, inner, st.text(max_size=3)))

    return st.recursive(leaf, extend, max_leaves=6)


@settings(max_examples=600, deadline=None)
@given(schemas(), st.lists(json_values, min_size=1, max_size=6))
def test_the_compiled_check_agrees_with_jsonschema(schema: Any, instances: list[Any]) -> None:
    if not isinstance(schema, dict):
        return  # a bare `true` schema: checker() takes objects only
    compiled, full = compile_schema(schema), checker(schema)
    assert compiled is not None, schema  # the strategy draws only keywords the compiler mirrors
    for instance in instances:
        assert compiled(instance) == full.is_valid(instance), (schema, instance)


def test_pydantic_schemas_compile() -> None:
    class Inner(BaseModel):
        n: int = Field(ge=0, le=10)

    class Flat(BaseModel):
        text: str = Field(min_length=1, max_length=5)
        tags: list[str] = []
        score: float | None = None
        mode: str = "fast"

    assert compile_schema(Flat.model_json_schema()) is not None
    assert compile_schema(Inner.model_json_schema()) is not None


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "^a$"},  # RE2 semantics: jsonschema's path
    {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
    {"allOf": [{"type": "string"}]},
    {"const": 1},
    {"enum": [1, True]},  # jsonschema's equality tells these apart in ways a set does not
    {"$schema": "http://json-schema.org/draft-07/schema#"},
    {"type": "object", "patternProperties": {"^a": {}}, "additionalProperties": False},
    {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
    {"not": {"type": "string"}},
])
def test_what_it_does_not_mirror_is_left_to_jsonschema(schema: Any) -> None:
    assert compile_schema(schema) is None


def test_errors_keep_jsonschemas_words() -> None:
    validator = checker({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    assert first_error(validator, {"text": "ok"}) is None
    assert first_error(validator, {"text": 42}) == "text: 42 is not of type 'string'"
    assert first_error(validator, {}) == "(root): 'text' is a required property"
