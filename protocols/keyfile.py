"""Key files: the one module of ``protocols`` that touches the file system (no network, no database).

A key file is PKCS#8 PEM (:meth:`SigningKey.to_pem`), created with mode 0600 by ``open(O_CREAT | O_EXCL, 0o600)``
so it is never readable by others even for a moment, optionally encrypted with a passphrase. Node, registry
and CLI all read and write keys through here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .keys import KeyFileError, SigningKey


def save(key: SigningKey, path: str | os.PathLike[str], passphrase: str | None = None, *,
         overwrite: bool = False) -> None:
    """Write ``key`` with mode 0600; refuse to overwrite an existing file unless asked."""
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{target} already exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an overwritten file keeps its old mode; O_CREAT's applies to new ones
        handle.write(key.to_pem(passphrase))


def load(path: str | os.PathLike[str], passphrase: str | None = None) -> SigningKey:
    target = Path(path)
    try:
        pem = target.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {target}: {exc.strerror}") from exc
    return SigningKey.from_pem(pem, passphrase, source=str(target))


def load_or_create(path: str | os.PathLike[str]) -> SigningKey:
    """Load a key file, creating it (0600) on first use. Safe when several processes start together (replicas
    of a registry, a node started twice): the key is written under a temporary name and linked into place,
    so the first process's key wins and the others load it."""
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".guildnet-key-", dir=target.parent)
        os.close(fd)
        os.unlink(temporary)
        save(SigningKey.generate(), temporary)
        try:
            os.link(temporary, target)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return load(target)
