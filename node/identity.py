"""An agent's identity on its node: a stable id, the key in force, the key committed to next, and the history.

The id is the did:key of the agent's first key and never changes; the key that signs for it may rotate
(:mod:`guildnet.protocols.keyhistory`). Every part of the node that signs as the agent (receipts, cards,
registrations, heartbeats, the caller's countersignature) reads :attr:`AgentIdentity.key` when it signs, so a
rotation swaps the key everywhere at once, without restarting anything.

On disk, beside the agent's key file (``key = "keys/echo.key"`` in the node config, the PEM of the key in
force), a sidecar ``keys/echo.key.identity.json`` (mode 0600) holds what a restart needs: the key events, the
next key, and a rotation in progress. It is replaced atomically (written aside, fsynced, renamed), so a crash
leaves the old state or the new one, never a mix; the key file is rewritten from it after each change.

Rotating is three steps, each safe to crash after: (1) the sidecar records the rotation in progress (the event
and the key after next); (2) the registry accepts it; (3) the sidecar and the key file move to the new key. On
start, a rotation in progress is resolved by asking whether the registry's record already holds the event.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from guildnet.protocols import keyfile, keyhistory
from guildnet.protocols.jws import MalformedJWS, b64url_decode
from guildnet.protocols.keys import KeyFileError, SigningKey


class Signer(Protocol):
    """Whoever signs as an agent: its stable id, and the key in force when it signs."""

    @property
    def id(self) -> str: ...

    @property
    def key(self) -> SigningKey: ...


@dataclass(frozen=True, slots=True)
class StaticIdentity:
    """An identity whose key never rotates: its id is its key's DID (tools, tests, a key given in code)."""

    key: SigningKey

    @classmethod
    def generate(cls) -> StaticIdentity:
        return cls(SigningKey.generate())

    @property
    def id(self) -> str:
        return self.key.did


class IdentityError(ValueError):
    """The agent's key files do not agree with each other or with its key history."""


@dataclass(frozen=True, slots=True)
class PendingRotation:
    """A rotation written down but not yet confirmed by the registry."""

    event: str
    new_key: SigningKey
    """The key the rotation hands over to (the one committed to before)."""
    next_key: SigningKey
    """The key the rotation commits to next."""


class AgentIdentity:
    """The identity of one agent, backed by its key file and sidecar (see the module docstring)."""

    def __init__(self, key_path: Path, events: list[str], key: SigningKey, next_key: SigningKey | None,
                 pending: PendingRotation | None = None) -> None:
        self.key_path = key_path
        self.events = events
        self.key = key
        self.next_key = next_key
        self.pending = pending
        self.state = keyhistory.replay(self.id_of(events, key), events)
        if self.state.key != key.did:
            raise IdentityError(f"{key_path}: the key file holds {key.did}, but the key history says {self.state.key} "
                                "is in force")

    @staticmethod
    def id_of(events: list[str], key: SigningKey) -> str:
        if not events:
            return key.did
        agent = json.loads(b64url_decode(events[0].split(".")[1])).get("agent")  # replay() then verifies it
        if not isinstance(agent, str):
            raise IdentityError("the first key event names no agent")
        return agent

    @property
    def id(self) -> str:
        return self.state.agent

    @property
    def inception(self) -> str | None:
        return self.events[0] if self.events else None

    @property
    def can_rotate(self) -> bool:
        return self.state.next is not None and self.next_key is not None

    def __repr__(self) -> str:
        return f"AgentIdentity(id={self.id!r}, key={self.key.did!r}, rotations={max(self.state.seq, 0)})"

    # -- files --------------------------------------------------------------------------------------

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.key_path)

    @classmethod
    def load(cls, key_path: Path) -> AgentIdentity:
        """Load an existing identity (its sidecar, or a key file from before key histories); create nothing."""
        key_path = Path(key_path)
        sidecar = sidecar_path(key_path)
        if sidecar.exists():
            return cls._load(key_path, sidecar, repair=False)
        return cls(key_path, [], keyfile.load(key_path), None)

    @classmethod
    def load_or_create(cls, key_path: Path) -> AgentIdentity:
        """Load the agent's identity; a new agent gets a key, a next key and an inception event committing to it.
        An agent whose key file predates key histories keeps its key as its id and cannot rotate."""
        key_path = Path(key_path)
        sidecar = sidecar_path(key_path)
        if sidecar.exists() or key_path.exists():
            return cls.load(key_path) if not sidecar.exists() else cls._load(key_path, sidecar, repair=True)
        key, next_key = SigningKey.generate(), SigningKey.generate()
        identity = cls(key_path, [keyhistory.incept(key, next_key.did)], key, next_key)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        identity._save()
        return identity

    @classmethod
    def _load(cls, key_path: Path, sidecar: Path, *, repair: bool) -> AgentIdentity:
        try:
            data = json.loads(sidecar.read_text())
            events = list(data["events"])
            key = SigningKey.from_pem(data["key"].encode(), source=str(sidecar))
            next_key = SigningKey.from_pem(data["next_key"].encode(), source=str(sidecar)) if data.get("next_key") \
                else None
            pending = None
            if data.get("pending"):
                raw = data["pending"]
                pending = PendingRotation(raw["event"], SigningKey.from_pem(raw["new_key"].encode()),
                                          SigningKey.from_pem(raw["next_key"].encode()))
        except (OSError, ValueError, KeyError, TypeError, KeyFileError) as exc:
            raise IdentityError(f"cannot read {sidecar}: {exc}") from exc
        try:
            identity = cls(key_path, events, key, next_key, pending)
        except (keyhistory.KeyHistoryError, MalformedJWS, ValueError) as exc:
            raise IdentityError(f"{sidecar}: {exc}") from exc
        if repair and (not key_path.exists() or keyfile.load(key_path).did != key.did):
            identity._write_key_file()  # a crash between the sidecar and the key file: the sidecar is the truth
        return identity

    def _save(self) -> None:
        """Write the sidecar atomically (0600), then the key file from it."""
        data: dict[str, Any] = {"agent": self.id, "events": self.events, "key": self.key.to_pem().decode(),
                                "next_key": self.next_key.to_pem().decode() if self.next_key else None}
        if self.pending is not None:
            data["pending"] = {"event": self.pending.event, "new_key": self.pending.new_key.to_pem().decode(),
                               "next_key": self.pending.next_key.to_pem().decode()}
        _replace(self.sidecar, json.dumps(data, indent=1).encode())
        self._write_key_file()

    def _write_key_file(self) -> None:
        _replace(self.key_path, self.key.to_pem())

    # -- rotation -----------------------------------------------------------------------------------

    def begin_rotation(self) -> PendingRotation:
        """Write down a rotation to the committed next key (step 1): its event, signed by the key in force."""
        if self.pending is not None:
            return self.pending
        if not self.can_rotate or self.next_key is None:
            raise IdentityError(f"agent {self.id} committed to no next key (it was registered before key histories, "
                                "or its sidecar is missing), so it cannot rotate; a new agent id is the way out")
        after = SigningKey.generate()
        event = keyhistory.rotate(self.key, self.state, self.next_key.did, after.did)
        self.pending = PendingRotation(event, self.next_key, after)
        self._save()
        return self.pending

    def complete_rotation(self) -> None:
        """The registry accepted the pending rotation (step 3): the new key is in force from now on."""
        if self.pending is None:
            raise IdentityError("no rotation in progress")
        pending = self.pending
        state = keyhistory.apply(self.state, pending.event)
        self.events = [*self.events, pending.event]
        self.state, self.key, self.next_key, self.pending = state, pending.new_key, pending.next_key, None
        self._save()

    def abandon_rotation(self) -> None:
        """The registry never took the pending rotation: forget it (the next attempt writes a new one)."""
        self.pending = None
        self._save()


def sidecar_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".identity.json")


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600: a temporary file beside it, fsync, rename."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
