"""What the registry's transparency log commits to, so anyone holding a record or a log entry can rebuild it.

A leaf is ``{"agent", "jws", "kind"}`` as RFC 8785 canonical JSON, where ``jws`` is the signed write exactly as
the registry received it and ``kind`` its action: every signature in the log re-verifies on its own, and a client
rebuilds a registration's leaf from the record it was served, without asking the registry for it. The log's
name in its checkpoints (C2SP ``tlog-checkpoint`` origin) is fixed by the registry's key, so pinning the key
also pins the origin.
"""

from __future__ import annotations

from typing import Final

from .canonical import canonical_json

KINDS: Final = ("register", "rotate", "revoke", "receipt")


def leaf_data(kind: str, agent_id: str, token: str) -> bytes:
    """The bytes a leaf commits to (its hash is ``SHA-256(0x00 || data)``)."""
    data: bytes = canonical_json({"agent": agent_id, "jws": token, "kind": kind})
    return data


def origin_for(key_did: str) -> str:
    """The log's name in its checkpoints, for the registry whose log key is ``key_did``."""
    return f"guildnet-registry/{key_did}"
