"""A compiled yes-check for the plain JSON Schemas skills declare, ahead of ``jsonschema``'s full walk.

Every tool call validates its input and its output (:mod:`guildnet.node.agent`), and ``jsonschema`` re-reads the
schema on every call: for a two-field object that is tens of microseconds, as much as the rest of the tool call.
Most skill schemas use a handful of keywords (pydantic writes ``type``, ``properties``, ``required``, ``anyOf``,
``enum`` of strings, length and range bounds, and annotations), so :func:`compile_schema` turns such a schema
into nested closures once, and :mod:`.schema_check` asks them first.

A compiled check answers only "valid" with certainty: when it says False, or when the schema uses any keyword
outside the list below (``$ref``, ``pattern``, ``allOf``, ``const``, a ``$schema`` dialect...), the caller runs
``jsonschema`` as before, which finds the error and words it, so errors keep their exact text. Each keyword
below mirrors Draft 2020-12 as ``jsonschema`` applies it (``integer`` accepts ``1.0``, ``true`` is not a number,
lengths count code points, object keywords skip non-objects...), and tests/test_schema_fast.py checks the two
agree on every instance of a generated set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
                         "$comment", "format"})  # format: an annotation unless a format checker is given (none is)
"""Keywords that never make an instance invalid."""


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "integer": _is_integer,
    "number": _is_number,
    "string": lambda value: isinstance(value, str),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}


class _Unsupported(Exception):
    """The schema uses something this module does not compile."""


def compile_schema(schema: Any) -> Check | None:
    """A function that returns True only for instances ``schema`` accepts, or None when the schema is outside the
    compiled subset (then only ``jsonschema`` can say)."""
    try:
        return _compile(schema)
    except _Unsupported:
        return None


def _compile(schema: Any) -> Check:
    if schema is True:
        return lambda _value: True
    if schema is False:
        return lambda _value: False  # rejects everything; jsonschema words why
    if not isinstance(schema, Mapping):
        raise _Unsupported
    checks: list[Check] = []
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        compiler = _KEYWORDS.get(keyword)
        if compiler is None:
            raise _Unsupported
        checks.append(compiler(value, schema))
    if not checks:
        return lambda _value: True
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _type(names: Any, _schema: Mapping[str, Any]) -> Check:
    wanted = [names] if isinstance(names, str) else names
    if not isinstance(wanted, list) or not wanted or any(name not in _TYPES for name in wanted):
        raise _Unsupported
    tests = [_TYPES[name] for name in wanted]
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


def _properties(properties: Any, _schema: Mapping[str, Any]) -> Check:
    if not isinstance(properties, Mapping):
        raise _Unsupported
    compiled = {name: _compile(sub) for name, sub in properties.items()}

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name, sub in compiled.items():
            if name in value and not sub(value[name]):
                return False
        return True

    return check


def _required(names: Any, _schema: Mapping[str, Any]) -> Check:
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise _Unsupported
    return lambda value: not isinstance(value, dict) or all(name in value for name in names)


def _additional_properties(additional: Any, schema: Mapping[str, Any]) -> Check:
    if "patternProperties" in schema:
        raise _Unsupported
    declared = schema.get("properties", {})
    if not isinstance(declared, Mapping):
        raise _Unsupported
    extra = _compile(additional)

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        return all(extra(item) for name, item in value.items() if name not in declared)

    return check


def _items(items: Any, schema: Mapping[str, Any]) -> Check:
    if "prefixItems" in schema:
        raise _Unsupported
    each = _compile(items)
    return lambda value: not isinstance(value, list) or all(each(item) for item in value)


def _any_of(subschemas: Any, _schema: Mapping[str, Any]) -> Check:
    if not isinstance(subschemas, list) or not subschemas:
        raise _Unsupported
    options = [_compile(sub) for sub in subschemas]
    return lambda value: any(option(value) for option in options)


def _enum(values: Any, _schema: Mapping[str, Any]) -> Check:
    # strings only: jsonschema's equality tells 1 from True and 1.0 from 1 in ways a set lookup would not
    if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
        raise _Unsupported
    allowed = frozenset(values)
    return lambda value: isinstance(value, str) and value in allowed


def _bound(test: Callable[[Any, Any], bool], applies: Check) -> Callable[[Any, Mapping[str, Any]], Check]:
    def compiler(limit: Any, _schema: Mapping[str, Any]) -> Check:
        if not _is_number(limit):
            raise _Unsupported
        return lambda value: not applies(value) or test(value, limit)

    return compiler


_KEYWORDS: dict[str, Callable[[Any, Mapping[str, Any]], Check]] = {
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional_properties,
    "items": _items,
    "anyOf": _any_of,
    "enum": _enum,
    "minimum": _bound(lambda value, limit: value >= limit, _is_number),
    "maximum": _bound(lambda value, limit: value <= limit, _is_number),
    "exclusiveMinimum": _bound(lambda value, limit: value > limit, _is_number),
    "exclusiveMaximum": _bound(lambda value, limit: value < limit, _is_number),
    "minLength": _bound(lambda value, limit: len(value) >= limit, lambda value: isinstance(value, str)),
    "maxLength": _bound(lambda value, limit: len(value) <= limit, lambda value: isinstance(value, str)),
    "minItems": _bound(lambda value, limit: len(value) >= limit, lambda value: isinstance(value, list)),
    "maxItems": _bound(lambda value, limit: len(value) <= limit, lambda value: isinstance(value, list)),
}
