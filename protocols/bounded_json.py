"""JSON from strangers, with its nesting bounded.

``json.loads`` recurses in C and raises ``RecursionError`` (not ``ValueError``) a few hundred thousand bytes of
``[`` deep; and what parses still feeds code that recurses again (``copy.deepcopy``, schema validation, JCS).
So every document that arrives from the network is parsed here and refused, as a value error, when it nests
arrays and objects deeper than a limit no honest document reaches.

An object with the same key twice is refused too (:class:`DuplicateKey`): readers disagree on which one counts
(Python keeps the last), so a signed ``{"verdict": "failure", "verdict": "success"}`` could be read one way by
the signer and another by whoever counts it.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, Protocol

MAX_DEPTH: Final = 100


class TooDeep(ValueError):
    """The document nests deeper than allowed (or than the parser can go)."""


class NotFinite(ValueError):
    """``NaN``, ``Infinity`` or a number too large for a double: Python's json accepts them, JSON does not, and
    whoever reads them back from us (a browser, Node.js, a strict parser) would fail on every later read."""


class DuplicateKey(ValueError):
    """An object names the same key twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return document


def _constant(name: str) -> Any:
    raise NotFinite(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFinite(f"{text} does not fit a double")
    return value


def deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects more than ``limit`` levels (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def contains_nul(value: Any) -> bool:
    """Whether any string (key or value) in ``value`` holds U+0000, which PostgreSQL text cannot store and no
    honest document needs (iterative, like :func:`deeper_than`)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Strict ``json.loads``: :class:`TooDeep` for documents nested past ``max_depth``, :class:`NotFinite` for
    ``NaN``/``Infinity``/overflowing numbers, :class:`DuplicateKey` for a key twice in one object (all
    ``ValueError``); malformed JSON raises ``json.JSONDecodeError`` and undecodable bytes ``UnicodeDecodeError``
    as usual."""
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_finite_float, object_pairs_hook=_unique)
    except RecursionError as exc:
        raise TooDeep(f"JSON nests arrays and objects deeper than {max_depth} levels") from exc
    if isinstance(value, dict | list) and _openers(data) > max_depth and deeper_than(value, max_depth):
        raise TooDeep(f"JSON nests arrays and objects deeper than {max_depth} levels")
    return value


def _openers(data: str | bytes) -> int:
    """How many ``[`` and ``{`` the text holds (in strings too): a bound on its nesting, counted in C, so the walk
    in Python is needed only for documents with more of them than the limit."""
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


class ByteSource(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_at_most(source: ByteSource, limit: int) -> bytes:
    """The first ``limit`` bytes of ``source`` (all of it when shorter). A stream's ``read(n)`` returns what has
    arrived, possibly less than ``n`` before the end, so this reads until ``limit`` or the end; read
    ``limit + 1`` to tell an over-long body from one of exactly ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := await source.read(limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
