"""An agent's key history: a self-certifying id whose signing key can rotate, with pre-rotation as in KERI.

An agent's id is the did:key of its **inception key**, so the id proves itself: whoever holds that key made it.
To let the key change while the id stays, the agent keeps a short history of signed **key events**:

* the **inception** event, signed by the inception key, commits to the *next* key by its hash;
* each **rotation** event, signed by the key in force, reveals that next key (its hash must match the
  commitment) and commits to the key after it, and names the previous event by its hash.

Anyone holding the id and the events replays them (:func:`replay`) and learns the key in force, trusting
nobody: not the registry that served the events (a lying registry cannot forge a signature, cannot reorder
the chain, and cannot insert a key, because every key was committed to by hash before it was revealed). A
thief of the current key cannot take the identity over for good: the next key is already fixed, and the
thief does not even know its public half until the owner rotates to it.

Why not the ``keri`` package: it is a whole framework (LMDB storage, CESR encoding, its own witnesses and
agents). The part guildnet needs is this chain of signed events over the JWS and JCS it already uses;
witnessing is the registry's transparency log and its C2SP witnesses.

An agent registered without an inception event has the empty history: its key is its id, and it committed to
no next key, so it can never rotate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from . import jws
from .did import is_did_key
from .keys import SigningKey

EVENT_TYP: Final = "guildnet-key-event+jws"
MAX_EVENTS: Final = 256
"""Longest history accepted: a key rotated daily for most of a year. Longer ones are refused unread."""
Kind = Literal["inception", "rotation"]


class KeyHistoryError(ValueError):
    """The events do not prove a key history for this id (bad signature, broken chain, unknown key...)."""


def commitment(key_did: str) -> str:
    """The pre-rotation commitment to a key: base64url(SHA-256(its did:key)), unpadded."""
    return jws.b64url_encode(hashlib.sha256(key_did.encode()).digest())


def event_digest(token: str) -> str:
    """How a rotation names the event before it: base64url(SHA-256(the event's compact JWS))."""
    return jws.b64url_encode(hashlib.sha256(token.encode()).digest())


@dataclass(frozen=True, slots=True)
class KeyState:
    """What a verified history says: the key in force now, and the commitment to the next one."""

    agent: str
    key: str
    """The did:key whose signatures speak for the agent now."""
    next: str | None
    """The commitment to the next key (None: the identity cannot rotate)."""
    seq: int
    """The sequence number of the last event (-1: no events, the key is the id)."""
    last: str | None
    """The digest of the last event, which the next rotation must name."""
    retired: tuple[str, ...] = ()
    """Keys that were in force before and are no longer, oldest first: their signatures are refused."""

    @classmethod
    def initial(cls, agent: str) -> KeyState:
        """The state before any event: the key is the id, and nothing is committed."""
        return cls(agent=agent, key=agent, next=None, seq=-1, last=None)


def incept(key: SigningKey, next_key: str | None) -> str:
    """The inception event of the agent whose id is ``key.did``, committing to ``next_key`` (a did:key)."""
    return _sign(key, {"agent": key.did, "seq": 0, "kind": "inception", "key": key.did,
                       "next": commitment(next_key) if next_key else None})


def rotate(current: SigningKey, state: KeyState, new_key: str, next_key: str | None) -> str:
    """A rotation event: ``current`` (the key in force per ``state``) hands over to ``new_key``, which must be
    the key ``state`` committed to, and commits to ``next_key``."""
    if current.did != state.key:
        raise KeyHistoryError("a rotation is signed by the key in force")
    if state.next is None or commitment(new_key) != state.next:
        raise KeyHistoryError("the new key is not the one the history committed to")
    return _sign(current, {"agent": state.agent, "seq": state.seq + 1, "kind": "rotation", "prior": state.last,
                           "key": new_key, "next": commitment(next_key) if next_key else None})


def _sign(key: SigningKey, body: dict[str, Any]) -> str:
    return jws.sign({k: v for k, v in body.items() if v is not None}, key, typ=EVENT_TYP)


def apply(state: KeyState, token: str) -> KeyState:
    """The state after one more event, or :class:`KeyHistoryError` saying why the event does not follow."""
    try:
        verified, body = jws.verify_json(token)
    except (jws.MalformedJWS, jws.BadSignature) as exc:
        raise KeyHistoryError(f"key event {state.seq + 1} does not verify: {exc}") from exc
    if verified.header.get("typ") != EVENT_TYP:
        raise KeyHistoryError(f"key event {state.seq + 1} is not a key event (typ {EVENT_TYP!r})")
    seq, kind, key, nxt = body.get("seq"), body.get("kind"), body.get("key"), body.get("next")
    if body.get("agent") != state.agent:
        raise KeyHistoryError("a key event names another agent")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq != state.seq + 1:
        raise KeyHistoryError(f"key event out of order: expected sequence {state.seq + 1}, got {seq!r}")
    if not isinstance(key, str) or not is_did_key(key):
        raise KeyHistoryError("a key event names no Ed25519 did:key")
    if nxt is not None and not isinstance(nxt, str):
        raise KeyHistoryError("a key event's next-key commitment must be a string")
    if verified.signer != state.key:
        raise KeyHistoryError(f"key event {seq} is not signed by the key in force")
    if seq == 0:
        if kind != "inception" or key != state.agent:
            raise KeyHistoryError("the first key event is the inception of the id's own key")
        return KeyState(state.agent, key, nxt, 0, event_digest(token))
    if kind != "rotation" or body.get("prior") != state.last:
        raise KeyHistoryError(f"key event {seq} does not follow the event before it")
    if state.next is None or commitment(key) != state.next:
        raise KeyHistoryError(f"key event {seq} reveals a key the history never committed to")
    if key == state.key or key in state.retired:
        raise KeyHistoryError(f"key event {seq} reuses a key")
    return KeyState(state.agent, key, nxt, seq, event_digest(token), (*state.retired, state.key))


def replay(agent: str, tokens: Sequence[str]) -> KeyState:
    """The key state proven by ``tokens`` for ``agent``, from the id alone (an empty history: key = id)."""
    if not is_did_key(agent):
        raise KeyHistoryError("an agent id is an Ed25519 did:key")
    if len(tokens) > MAX_EVENTS:
        raise KeyHistoryError(f"a key history has at most {MAX_EVENTS} events")
    state = KeyState.initial(agent)
    for token in tokens:
        if not isinstance(token, str):
            raise KeyHistoryError("a key event is a compact JWS string")
        state = apply(state, token)
    return state


def key_in_force(agent: str, tokens: Sequence[str]) -> KeyState:
    """What :func:`replay` proves about the key in force, without opening a lone inception event: until the first
    rotation the key in force is the id whatever the inception says, and its commitment matters only to the
    rotation that follows it, when the whole history is replayed. (The ``next`` of the state returned for such
    a history is None: it was not checked, and nothing may be built on it.)"""
    if len(tokens) > 1:
        return replay(agent, tokens)
    if not is_did_key(agent):
        raise KeyHistoryError("an agent id is an Ed25519 did:key")
    if tokens and not isinstance(tokens[0], str):
        raise KeyHistoryError("a key event is a compact JWS string")
    return KeyState(agent, agent, None, len(tokens) - 1, event_digest(tokens[0]) if tokens else None)
