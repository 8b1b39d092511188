"""Ed25519 signing keys: generation, key files, and a repr that never shows the secret.

Key files are PKCS#8 PEM, written with mode 0600 (created that way, never chmod-ed after the fact), and
optionally encrypted with a passphrase (``BestAvailableEncryption``).
"""

from __future__ import annotations

import os
from pathlib import Path
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
    """A key file is missing, unreadable, of the wrong kind, or needs a different passphrase."""


class SigningKey:
    """An Ed25519 private key bound to its did:key identifier.

    The private key material is reachable only through :meth:`sign` and :meth:`save`; ``repr`` and
    ``str`` show the DID alone, so a key can be logged without leaking it.
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

    def save(self, path: str | os.PathLike[str], passphrase: str | None = None, *, overwrite: bool = False) -> None:
        """Write the key as PKCS#8 PEM with mode 0600; refuse to overwrite unless asked."""
        encryption = BestAvailableEncryption(passphrase.encode()) if passphrase else NoEncryption()
        pem = self._private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
        target = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            fd = os.open(target, flags, 0o600)
        except FileExistsError as exc:
            raise KeyFileError(f"{target} already exists; refusing to overwrite a key") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        os.chmod(target, 0o600)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str | None = None) -> SigningKey:
        target = Path(path)
        try:
            pem = target.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {target}: {exc.strerror}") from exc
        try:
            key = load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
        except TypeError as exc:
            raise KeyFileError(f"{target}: the key is encrypted; give its passphrase") from exc
        except ValueError as exc:
            raise KeyFileError(f"{target}: not a readable private key, or a wrong passphrase") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{target}: not an Ed25519 key")
        return cls(key)

    def __repr__(self) -> str:
        return f"SigningKey(did={self._did!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("SigningKey is not picklable; save it with SigningKey.save()")
