"""RFC 8785 JSON Canonicalization Scheme (JCS), and content hashes over it.

Every registration is canonicalised at least twice (its endorsement's facts digest, its log leaf): the ``rfc8785``
package escapes each string with a regular expression into a ``BytesIO`` and cost ~0.3 ms of the ~3 ms a
registration took (profiled). :func:`canonical_json` writes the same bytes with the C string escaper of the
``json`` module and a short ECMAScript number formatter, and hands anything it does not cover (integers beyond
2^53, non-finite floats, non-string keys, other types) to ``rfc8785``, which refuses them with its own errors.
``tests/test_canonical.py`` checks both agree on generated values.
"""

from __future__ import annotations

import hashlib
import json.encoder
from typing import Any

import rfc8785

_escape = json.encoder.encode_basestring  # C: escapes '"', '\\' and control characters, leaves the rest as is
_MAX_SAFE_INT = 2**53 - 1


class _Uncovered(Exception):
    """A value the fast path leaves to ``rfc8785`` (which canonicalises it, or refuses it as RFC 8785 says)."""


def _number(value: float) -> str:
    """ECMAScript ``Number.prototype.toString`` (ECMA-262 §6.1.6.1.20), which RFC 8785 §3.2.2.3 prescribes, from
    Python's shortest round-trip ``repr`` (the same digits)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise _Uncovered
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    # value = stripped × 10^(n - k): ECMAScript's k and n
    n = k + int(exponent or 0) - len(fraction) + (len(digits) - k)
    if k <= n <= 21:
        return sign + stripped + "0" * (n - k)
    if 0 < n <= 21:
        return sign + stripped[:n] + "." + stripped[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + stripped
    exp = n - 1
    head = stripped[0] + ("." + stripped[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if exp > 0 else '-'}{abs(exp)}"


def _write(value: Any, out: list[str]) -> None:
    kind = type(value)  # exact types first (what parsed JSON is made of), one comparison each
    if kind is str:
        out.append(_escape(value))
    elif kind is dict:
        _write_object(value, out)
    elif kind is list:
        _write_array(value, out)
    elif kind is int:
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise _Uncovered
        out.append(str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is float:
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_escape(value))
    elif isinstance(value, dict):
        _write_object(value, out)
    elif isinstance(value, list | tuple):
        _write_array(value, out)
    else:
        raise _Uncovered


def _write_object(value: dict[Any, Any], out: list[str]) -> None:
    if not value:
        out.append("{}")
        return
    if {*map(type, value)} != {str}:
        raise _Uncovered
    # RFC 8785 sorts by UTF-16 code units; code points sort the same unless a key leaves the BMP
    keys = sorted(value) if "".join(value).isascii() else sorted(value, key=lambda k: k.encode("utf-16-be"))
    separator = "{"
    for key in keys:
        out.append(separator)
        out.append(_escape(key))
        out.append(":")
        item = value[key]
        if type(item) is str:
            out.append(_escape(item))
        else:
            _write(item, out)
        separator = ","
    out.append("}")


def _write_array(value: list[Any] | tuple[Any, ...], out: list[str]) -> None:
    if value and {*map(type, value)} == {str}:  # tags, enums, required: one join
        out.append("[" + ",".join(map(_escape, value)) + "]")
        return
    separator = "["
    for item in value:
        out.append(separator)
        _write(item, out)
        separator = ","
    out.append("]" if value else "[]")


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as RFC 8785 canonical JSON bytes (sorted keys, ES6 number form, UTF-8)."""
    out: list[str] = []
    try:
        _write(value, out)
        return "".join(out).encode("utf-8")
    except (_Uncovered, UnicodeEncodeError, RecursionError):
        return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``: the same for every party that holds it."""
    return sha256_hex(canonical_json(value))
