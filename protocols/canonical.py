"""RFC 8785 JSON Canonicalization Scheme (JCS), and content hashes over it."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as RFC 8785 canonical JSON bytes (sorted keys, ES6 number form, UTF-8)."""
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``: the same for every party that holds it."""
    return sha256_hex(canonical_json(value))
