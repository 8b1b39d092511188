"""did:key identifiers for Ed25519 public keys.

A did:key is self-certifying: the identifier *is* the public key (multicodec ``ed25519-pub`` = 0xed01,
multibase base58btc = ``z`` prefix), so nobody can claim an id without holding its private key.
Spec: https://w3c-ccg.github.io/did-method-key/
"""

from __future__ import annotations

from typing import TypeGuard

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DID_KEY_PREFIX = "did:key:"
_ED25519_PUB_MULTICODEC = b"\xed\x01"
# did:key for Ed25519 is always 'did:key:z6Mk' + 44 more base58 characters.
DID_KEY_ED25519_LENGTH = 56


class InvalidDID(ValueError):
    """The string is not a did:key identifier for an Ed25519 public key."""


def did_from_public_bytes(raw: bytes) -> str:
    """Return the did:key for a raw 32-byte Ed25519 public key."""
    if len(raw) != 32:
        raise InvalidDID("an Ed25519 public key is 32 bytes")
    return DID_KEY_PREFIX + "z" + base58.b58encode(_ED25519_PUB_MULTICODEC + raw).decode("ascii")


def did_from_public_key(key: Ed25519PublicKey) -> str:
    return did_from_public_bytes(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_bytes_from_did(did: str) -> bytes:
    """Decode a did:key (optionally with a ``#fragment``) to the raw Ed25519 public key bytes."""
    if not isinstance(did, str) or not did.startswith(DID_KEY_PREFIX):
        raise InvalidDID("not a did:key identifier")
    ident = did[len(DID_KEY_PREFIX):].split("#", 1)[0]
    if not ident.startswith("z"):
        raise InvalidDID("did:key must use multibase base58btc ('z')")
    try:
        decoded = base58.b58decode(ident[1:])
    except ValueError as exc:
        raise InvalidDID("did:key is not valid base58btc") from exc
    if len(decoded) != 34 or decoded[:2] != _ED25519_PUB_MULTICODEC:
        raise InvalidDID("did:key does not hold an Ed25519 public key")
    return decoded[2:]


def public_key_from_did(did: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_bytes_from_did(did))


def is_did_key(value: object) -> TypeGuard[str]:
    if not isinstance(value, str):
        return False
    try:
        public_bytes_from_did(value)
    except InvalidDID:
        return False
    return True
