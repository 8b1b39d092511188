"""Signed writes: the envelope every state change to a registry travels in.

A signed write is a compact JWS (``alg: EdDSA``, ``kid`` = signer's did:key) whose payload is a JSON
object with at least ``iat`` (unix seconds) and ``nonce`` (>= 16 random bytes, base64url). The freshness
window bounds replay to a short time; the nonce store (kept by the receiver) closes it completely.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import bounded_json, jws
from .keys import SigningKey

CLOCK_WINDOW_SECONDS = 300
REGISTER_OPENING: Mapping[str, str] = {"action": "register"}
"""What a registration's payload opens with before its ``facts``, as guildnet writes it (``{"action":"register",
"facts":...``): then the facts' exact text is read from the same parse (:attr:`SignedWrite.facts_text`)."""
NONCE_BYTES = 16
MAX_NONCE_CHARS = 128


class WriteRefused(Exception):
    """A write that must change nothing. ``status`` is the HTTP status a server answers with."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MalformedWrite(WriteRefused):
    status = 400
    title = "Malformed signed write"


class UnauthorizedWrite(WriteRefused):
    status = 401
    title = "Signature, freshness or nonce check failed"


class ConflictingWrite(WriteRefused):
    status = 409
    title = "Conflict with the stored state"


def new_nonce() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(NONCE_BYTES)).rstrip(b"=").decode("ascii")


def make(key: SigningKey, body: Mapping[str, Any], *, now: float | None = None) -> str:
    """Sign ``body`` (plus a fresh ``iat`` and ``nonce``) as a signed write."""
    payload = dict(body)
    payload["iat"] = int(time.time() if now is None else now)
    payload["nonce"] = new_nonce()
    return jws.sign(payload, key)


@dataclass(frozen=True, slots=True)
class SignedWrite:
    token: str
    signer: str
    payload: dict[str, Any]
    facts_text: str | None = None
    """The exact text of ``facts`` in a payload opening with :data:`REGISTER_OPENING` then ``facts``, read by the one
    parse of the payload (what an organisation endorses, see :func:`guildnet.protocols.agentfacts.endorse`); None
    for any other payload."""

    @property
    def nonce(self) -> str:
        return str(self.payload["nonce"])


def _nonce_ok(nonce: object) -> bool:
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_CHARS:
        return False
    try:
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= NONCE_BYTES


def open_write(token: str, *, now: float | None = None, window: int = CLOCK_WINDOW_SECONDS) -> SignedWrite:
    """Verify a signed write's signature, freshness and nonce shape (not whether the nonce was seen)."""
    try:
        verified, payload, facts_text = jws.verify_json_with_member_text(token, REGISTER_OPENING, "facts")
    except jws.MalformedJWS as exc:
        raise MalformedWrite(str(exc)) from exc
    except jws.BadSignature as exc:
        raise UnauthorizedWrite(str(exc)) from exc
    if bounded_json.contains_nul(payload):
        raise MalformedWrite("payload strings may not contain U+0000")
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise MalformedWrite("payload needs 'iat' as integer unix seconds")
    if not _nonce_ok(payload.get("nonce")):
        raise MalformedWrite(f"payload needs 'nonce': at least {NONCE_BYTES} random bytes, base64url")
    current = time.time() if now is None else now
    if abs(current - iat) > window:
        raise UnauthorizedWrite(f"'iat' is {int(current - iat)} s away from the registry clock "
                                f"(allowed: +-{window} s)")
    return SignedWrite(token=token, signer=verified.signer, payload=payload, facts_text=facts_text)
