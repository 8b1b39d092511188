"""JSON Schema validation that stays bounded when the instance, or the schema, comes from a hostile party.

Draft 2020-12 through ``jsonschema``, with three changes:

* nothing is fetched: a ``$ref`` or ``$dynamicRef`` must point inside the schema (``#...``), and the
  validator's reference registry is empty, so a remote reference can neither reach out (SSRF) nor hang the
  caller on a socket;
* every regular expression (``pattern``, ``patternProperties``, and ``additionalProperties``, which consults
  them) is matched by RE2, in time linear in the text: ``^(a|aa)+$`` against forty ``a`` and a ``!`` takes
  microseconds instead of seconds. A pattern RE2 cannot compile (look-arounds, back-references) refuses the
  schema rather than falling back to a backtracking engine;
* ``unevaluatedProperties`` in a schema with ``patternProperties`` is refused: ``jsonschema`` would match
  those patterns with Python's backtracking ``re`` while collecting evaluated keys.

Checkers for the plain schemas skills declare carry a compiled yes-check (:mod:`.schema_fast`): a valid instance
is accepted without ``jsonschema``'s walk, and anything else goes through ``jsonschema`` as before, which words the
error.

Validation time still grows with the instance (``uniqueItems`` over a long array is quadratic); callers that
validate another party's output bound its size first and run this off their event loop with a time limit.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import re2
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from referencing import Registry

from .schema_fast import Check, compile_schema

MAX_PATTERN_CHARS = 1024


class UnsafeSchema(ValueError):
    """The schema is malformed, or uses something this module will not run on behalf of another party."""


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported by the exception, not on stderr


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, options=_OPTIONS)


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Validator, patterns: Mapping[str, Any], instance: Any,
                        schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        for name, value in instance.items():
            if regex.search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(validator: Validator, additional: Any, instance: Any,
                           schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = [_regex(p) for p in schema.get("patternProperties", {})]
    extras = [name for name in instance
              if name not in declared and not any(regex.search(name) for regex in patterns)]
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif additional is False and extras:
        listed = ", ".join(repr(name) for name in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({listed} unexpected)")


_Checker = validators.extend(Draft202012Validator, {
    "pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties,
})


def _refuse_unsafe_parts(schema: Any) -> None:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for keyword in ("$ref", "$dynamicRef"):
            reference = node.get(keyword)
            if isinstance(reference, str) and not reference.startswith("#"):
                raise UnsafeSchema(f"{keyword} {reference[:80]!r} points outside the schema; nothing is fetched")
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns.extend(node["patternProperties"])
            if "unevaluatedProperties" in node:
                raise UnsafeSchema("unevaluatedProperties beside patternProperties is not supported")
        for pattern in patterns:
            if len(pattern) > MAX_PATTERN_CHARS:
                raise UnsafeSchema(f"a pattern longer than {MAX_PATTERN_CHARS} characters")
            try:
                _regex(pattern)
            except re2.error as exc:
                detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
                raise UnsafeSchema(f"pattern {pattern[:80]!r} is not a linear-time regular expression: "
                                   f"{detail}") from None
        stack.extend(node.values())


def checker(schema: Mapping[str, Any]) -> Validator:
    """A Draft 2020-12 validator for ``schema`` that never fetches and matches patterns in linear time.

    Raises :class:`UnsafeSchema` for a schema that is not valid Draft 2020-12 or uses what is refused above.
    """
    if not isinstance(schema, Mapping):
        raise UnsafeSchema("a schema must be a JSON object")
    try:
        _Checker.check_schema(schema)
    except SchemaError as exc:
        raise UnsafeSchema(f"not a valid JSON Schema: {exc.message}") from None
    _refuse_unsafe_parts(schema)
    validator: Validator = _Checker(schema, registry=Registry())
    accepts = compile_schema(schema)
    if accepts is not None:  # keyed by id, dropped with the validator (which is unhashable), so an id never lies
        _ACCEPTS[id(validator)] = accepts
        weakref.finalize(validator, _ACCEPTS.pop, id(validator), None)
    return validator


_ACCEPTS: dict[int, Check] = {}
"""The compiled yes-check of each live validator :func:`checker` made, by ``id``."""


def checker_of_text(schema_text: str) -> Validator:
    """:func:`checker` for the schema ``schema_text`` holds (JSON), built once per distinct text and shared: checking
    a schema against the 2020-12 meta-schema costs about a millisecond, and a node applies the same few schemas
    (each skill's, as its agents publish them) on every call. The validator holds its own parsed copy, so nothing
    the caller later changes reaches it; a refused schema is remembered too and raises again."""
    outcome = _checker_or_refusal(schema_text)
    if isinstance(outcome, UnsafeSchema):
        raise UnsafeSchema(*outcome.args)
    return outcome


def cached_checker(schema: Mapping[str, Any]) -> Validator:
    """:func:`checker_of_text` for a schema as a JSON object (keyed on its sorted-keys JSON)."""
    try:
        text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UnsafeSchema(f"a schema must be JSON: {exc}") from None
    return checker_of_text(text)


@lru_cache(maxsize=1024)
def _checker_or_refusal(schema_text: str) -> Validator | UnsafeSchema:
    try:
        return checker(json.loads(schema_text))
    except UnsafeSchema as exc:
        return exc


def first_error(validator: Validator, instance: Any) -> str | None:
    """The problem with ``instance`` at the first path (``where: message``), or None when it is valid."""
    accepts = _ACCEPTS.get(id(validator))
    if accepts is not None and accepts(instance):
        return None
    error = min(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path], default=None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"
