"""Who is calling: a short-lived JWS the calling agent signs for one request, bound to that request.

Across organisations a callee must know which agent asks (its tasks belong to that agent, its receipts name it),
and a header anyone can copy proves nothing. So every A2A and MCP request of a guildnet caller carries
``Authorization: Bearer <token>``, a compact JWS (``typ`` :data:`CALL_TYP`) by the caller's key in force over:

* ``iss``: the calling agent's id (a did:key), ``aud``: the URL it calls, ``htm``: the HTTP method;
* ``bd``: base64url(SHA-256(the request body)), so the token is good for this body alone;
* ``iat``/``exp`` (at most :data:`MAX_LIFETIME` seconds apart) and a random ``jti`` the callee remembers until
  ``exp``, so a token cannot be replayed.

It is DPoP's idea (RFC 9449: a proof bound to method, target and time) with the body bound too and the key
named by did:key. The signed agent card declares it as an ``httpAuthSecurityScheme`` (``bearer``, format
:data:`CALL_TYP`), so clients can see what a node expects. Whether the signing key is the key in force for
``iss`` (the id's own key, or its successor after rotations) is the verifier's check: :func:`verify_call`
returns both for it to decide.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Final

from . import jws
from .did import is_did_key
from .keys import SigningKey

CALL_TYP: Final = "guildnet-call+jws"
MAX_LIFETIME: Final = 120
"""Longest a token may live (seconds from ``iat`` to ``exp``)."""
CLOCK_SKEW: Final = 60
"""How far apart the caller's and the callee's clocks may be (seconds)."""


class CallRefused(ValueError):
    """The request's credentials prove nothing: missing, malformed, forged, for another request, or expired."""


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified call: the agent that claims to call, the key that signed, and the token's nonce and expiry."""

    agent: str
    key: str
    jti: str
    expires: int


def body_digest(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


def sign_call(agent: str, key: SigningKey, *, method: str, url: str, body: bytes, now: float | None = None,
              lifetime: int = 60) -> str:
    """The token for one request by ``agent`` (whose key in force is ``key``)."""
    issued = int(time.time() if now is None else now)
    return jws.sign({"iss": agent, "aud": url, "htm": method.upper(), "bd": body_digest(body), "iat": issued,
                     "exp": issued + min(lifetime, MAX_LIFETIME), "jti": secrets.token_urlsafe(16)},
                    key, typ=CALL_TYP)


def verify_call(token: str, *, method: str, url: str, body: bytes, now: float | None = None) -> Caller:
    """The caller a token proves for this request (method, URL, body), or :class:`CallRefused` saying why."""
    try:
        verified, claims = jws.verify_json(token)
    except (jws.MalformedJWS, jws.BadSignature) as exc:
        raise CallRefused(f"the caller's token does not verify: {exc}") from exc
    if verified.header.get("typ") != CALL_TYP:
        raise CallRefused(f"the caller's token is not a call token (typ {CALL_TYP!r})")
    issuer, issued, expires, nonce = claims.get("iss"), claims.get("iat"), claims.get("exp"), claims.get("jti")
    if not is_did_key(issuer):
        raise CallRefused("the caller's token names no agent (iss must be a did:key)")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in (issued, expires)) or \
            not isinstance(nonce, str) or not 16 <= len(nonce) <= 128:
        raise CallRefused("the caller's token needs integer iat and exp and a jti")
    assert isinstance(issued, int) and isinstance(expires, int)
    if claims.get("htm") != method.upper() or claims.get("aud") != url:
        raise CallRefused(f"the caller's token was made for another request ({claims.get('htm')} "
                          f"{claims.get('aud')}), not {method.upper()} {url}")
    if claims.get("bd") != body_digest(body):
        raise CallRefused("the caller's token was made for another body")
    current = time.time() if now is None else now
    if not 0 < expires - issued <= MAX_LIFETIME:
        raise CallRefused(f"the caller's token must live at most {MAX_LIFETIME} s")
    if issued > current + CLOCK_SKEW or expires < current - CLOCK_SKEW:
        raise CallRefused("the caller's token has expired (or is from the future)")
    return Caller(issuer, verified.signer, nonce, expires)
