"""Ed25519 signing keys: generation, PEM encoding, and a repr that never shows the secret.

Reading and writing key files is :mod:`guildnet.protocols.keyfile`, the one module of ``protocols`` that
touches the file system.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from .did import did_from_public_key


class KeyFileError(ValueError):
    """A key (file) is missing, unreadable, of the wrong kind, or needs a different passphrase."""


class SigningKey:
    """An Ed25519 private key bound to its did:key identifier.

    The private key material leaves only through :meth:`sign`, :meth:`to_pem` and :attr:`private_key` (the
    ``cryptography`` object, for libraries such as PyJWT that sign with it); ``repr`` and ``str`` show the DID
    alone, so a key can be logged without leaking it, and it refuses to be pickled.
    """

    __slots__ = ("_did", "_private")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._did = did_from_public_key(private_key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Build a key from a 32-byte seed (RFC 8032 secret key); for tests and test vectors."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def did(self) -> str:
        return self._did

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    def public_bytes(self) -> bytes:
        return self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The `cryptography` key object, for libraries (PyJWT) that sign with it directly."""
        return self._private

    def to_pem(self, passphrase: str | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with ``passphrase`` when given (``BestAvailableEncryption``)."""
        encryption = BestAvailableEncryption(passphrase.encode()) if passphrase else NoEncryption()
        return self._private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: str | None = None, *, source: str = "the key") -> SigningKey:
        """Read a PKCS#8 PEM Ed25519 key; ``source`` names it in errors (a file path, say)."""
        try:
            key = load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
        except TypeError as exc:
            raise KeyFileError(f"{source}: the key is encrypted; give its passphrase") from exc
        except ValueError as exc:
            raise KeyFileError(f"{source}: not a readable private key, or a wrong passphrase") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{source}: not an Ed25519 key")
        return cls(key)

    def __repr__(self) -> str:
        return f"SigningKey(did={self._did!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("SigningKey is not picklable; write it with guildnet.protocols.keyfile.save()")
