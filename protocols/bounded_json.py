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
from collections.abc import Mapping
from functools import lru_cache
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


_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_finite_float, object_pairs_hook=_unique)
_WHITESPACE = " \t\n\r"
"""JSON's whitespace (RFC 8259 §2), all that may stand between a value and the delimiter after it."""


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
        # what json.loads does, with the decoder built once (json.loads builds one per call: ~2 µs a document)
        text = _text(data)
        value = _DECODER.decode(text)
    except RecursionError as exc:
        raise TooDeep(f"JSON nests arrays and objects deeper than {max_depth} levels") from exc
    if isinstance(value, dict | list) and _openings(text) > max_depth and deeper_than(value, max_depth):
        raise TooDeep(f"JSON nests arrays and objects deeper than {max_depth} levels")
    return value


def loads_with_member_text(data: str | bytes, leading: Mapping[str, str], member: str,
                           *, max_depth: int = MAX_DEPTH) -> tuple[Any, str | None]:
    """:func:`loads`, and the exact text of ``member``'s value when the document opens with ``leading``'s members
    then ``member``, written compactly (``{"action":"register","facts":``); None when it opens otherwise.

    Why: a signature over those bytes can then be checked against that text as it is, where a digest of the parsed
    value would need a canonical form (RFC 8785) to be computed again. The document is read in two pieces (the
    value, then the members after it), each by the same strict decoder, so it is parsed once and accepted or
    refused exactly as :func:`loads` would: same hooks, same depth bound, a repeated key across the pieces refused."""
    text = _text(data)
    prefix = _opening(tuple(leading.items()), member)
    if not text.startswith(prefix) or text[len(prefix):len(prefix) + 1] in _WHITESPACE:  # ("" is in it too)
        return loads(text, max_depth=max_depth), None
    try:
        value, end = _DECODER.raw_decode(text, len(prefix))
        after = text[end:].lstrip(_WHITESPACE)
        if after.startswith(",") and after[1:].lstrip(_WHITESPACE).startswith('"'):
            rest = _DECODER.decode("{" + after[1:])
        elif after.startswith("}") and not after[1:].strip(_WHITESPACE):
            rest = {}
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter or '}' ending the document", text, end)
    except RecursionError as exc:
        raise TooDeep(f"JSON nests arrays and objects deeper than {max_depth} levels") from exc
    repeated = rest.keys() & {*leading, member}
    if repeated:
        raise DuplicateKey(f"the key {min(repeated)!r} appears twice in one object")
    document = {**leading, member: value, **rest}
    if _openings(text) > max_depth and deeper_than(document, max_depth):
        raise TooDeep(f"JSON nests arrays and objects deeper than {max_depth} levels")
    return document, text[len(prefix):end]


@lru_cache(maxsize=64)
def _opening(leading: tuple[tuple[str, str], ...], member: str) -> str:
    """How a compact document opens with ``leading``'s members then ``member`` (``{"action":"register","facts":``):
    the same few per process, and writing one takes two ``json.dumps`` (~3 µs, for every registration read)."""
    return json.dumps(dict(leading), separators=(",", ":"))[:-1] + ("," if leading else "") + json.dumps(member) + ":"


def _text(data: str | bytes) -> str:
    """The document as text, decoded as ``json.loads`` decodes bytes; a UTF-8 BOM is refused as it refuses it.

    A document whose first byte is ``{`` and second is not zero is UTF-8 by ``json.detect_encoding``'s rules (no BOM
    starts with ``{``, and only a zero second byte makes it UTF-16 or 32), so that case is decided here: its Python
    checks cost more than decoding a signed write's payload."""
    if isinstance(data, bytes | bytearray):
        utf8 = data[:1] == b"{" and data[1:2] != b"\x00"
        text = data.decode("utf-8" if utf8 else json.detect_encoding(data), "surrogatepass")
    else:
        text = data
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return text


def _openings(text: str) -> int:
    """An upper bound on how deep ``text`` nests: each level opens with its own ``[`` or ``{`` (a bracket inside a
    string only adds to the count). Counting them in C is ten times cheaper than walking what was parsed, and
    most documents, a signed registration among them, have fewer brackets than :data:`MAX_DEPTH`."""
    return text.count("[") + text.count("{")


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
