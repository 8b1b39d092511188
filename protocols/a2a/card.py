"""The agent card (spec §4.4, §8) and its signature (§8.4): detached JWS over the RFC 8785 canonical card.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..canonical import canonical_json
from ..jws import MalformedJWS, b64url_decode
from ..jws import sign as jws_sign
from ..jws import verify as jws_verify
from ..keys import SigningKey
from .errors import JSON
from .versions import PROTOCOL_VERSION

BINDING_JSONRPC: Final = "JSONRPC"
BINDING_HTTP_JSON: Final = "HTTP+JSON"
BINDING_GRPC: Final = "GRPC"


@dataclass(frozen=True, slots=True)
class CardInterface:
    """One ``supportedInterfaces`` entry: a binding at a URL (for gRPC ``host:port``), optionally a tenant."""

    binding: str
    url: str
    tenant: str | None = None

    def to_json(self) -> JSON:
        out: JSON = {"url": self.url, "protocolBinding": self.binding, "protocolVersion": PROTOCOL_VERSION}
        if self.tenant:
            out["tenant"] = self.tenant
        return out


@dataclass(frozen=True, slots=True)
class CardSkill:
    id: str
    name: str
    description: str
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


CALLER_SCHEME: Final = "guildnet-agent"
"""The card's name for guildnet's caller proof: ``Authorization: Bearer <guildnet-call+jws>``, a short-lived JWS
by the calling agent's key over the request (:mod:`guildnet.protocols.callerauth`)."""


def build_agent_card(*, name: str, description: str, version: str, url: str, skills: Iterable[CardSkill],
                     provider: tuple[str, str] | None = None, documentation_url: str | None = None,
                     interfaces: Sequence[CardInterface] = (), push_notifications: bool = False,
                     extended_card: bool = False) -> JSON:
    """A 1.0 card: a JSON-RPC interface at ``url`` (then ``interfaces``, in preference order), streaming on,
    JSON and text in and out; push notifications and the extended card when the node offers them.

    Only proto fields with non-default values are written, so the card survives the SDK's
    ``ParseDict``/``MessageToDict`` round trip byte for byte and its signature verifies there too.
    """
    card: JSON = {
        "name": name,
        "description": description or name,
        "supportedInterfaces": [CardInterface(BINDING_JSONRPC, url).to_json(), *(i.to_json() for i in interfaces)],
        "version": version,
        "capabilities": _capabilities(push_notifications, extended_card),
        "defaultInputModes": ["application/json", "text/plain"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": [_card_skill(s) for s in skills],
        "securitySchemes": {CALLER_SCHEME: {"httpAuthSecurityScheme": {
            "scheme": "bearer", "bearerFormat": "guildnet-call+jws",
            "description": "A JWS by the calling agent's key in force over this request's method, URL and body "
                           "digest (iss: the caller's did:key id; at most 120 s; one use)"}}},
        "securityRequirements": [{"schemes": {CALLER_SCHEME: {"list": ["agent"]}}}],
    }
    if provider is not None:
        card["provider"] = {"organization": provider[0], "url": provider[1]}
    if documentation_url:
        card["documentationUrl"] = documentation_url
    return card


def _capabilities(push_notifications: bool, extended_card: bool) -> JSON:
    capabilities: JSON = {"streaming": True}
    if push_notifications:
        capabilities["pushNotifications"] = True
    if extended_card:
        capabilities["extendedAgentCard"] = True
    return capabilities


def _card_skill(skill: CardSkill) -> JSON:
    out: JSON = {"id": skill.id, "name": skill.name, "description": skill.description or skill.name,
                 "tags": list(skill.tags) or [skill.id]}
    if skill.examples:
        out["examples"] = list(skill.examples)
    return out


def _clean_empty(value: Any) -> Any:
    """Drop empty strings, lists and objects (recursively), as the spec's default-value rule and a2a-sdk do."""
    if isinstance(value, dict):
        cleaned = {k: c for k, v in value.items() if (c := _clean_empty(v)) is not None}
        return cleaned or None
    if isinstance(value, list):
        items = [c for v in value if (c := _clean_empty(v)) is not None]
        return items or None
    if value is None or value == "":
        return None
    return value


def card_signing_payload(card: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical bytes of the card without ``signatures`` and without empty values."""
    body = {k: v for k, v in card.items() if k != "signatures"}
    return canonical_json(_clean_empty(body) or {})


def sign_agent_card(card: Mapping[str, Any], key: SigningKey) -> JSON:
    """Return the card with one more ``signatures`` entry: detached JWS, EdDSA, ``typ: JOSE``, ``kid`` did:key."""
    token = jws_sign(card_signing_payload(card), key, typ="JOSE", detached=True)
    protected, _, signature = token.split(".")
    signed = dict(card)
    signed["signatures"] = [*card.get("signatures", ()), {"protected": protected, "signature": signature}]
    return signed


class CardSignatureError(ValueError):
    """No signature on the card verifies (for the expected signer, when one is named)."""


def verify_agent_card(card: Mapping[str, Any], expected_did: str | None = None) -> str:
    """Return the did:key of the first valid EdDSA signature (by ``expected_did`` when given)."""
    signatures = card.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise CardSignatureError("the agent card is not signed")
    payload = card_signing_payload(card)
    for entry in signatures:
        if not isinstance(entry, dict):
            continue
        protected, signature = entry.get("protected"), entry.get("signature")
        if not isinstance(protected, str) or not isinstance(signature, str):
            continue
        try:
            header = json.loads(b64url_decode(protected))
            if expected_did is not None and header.get("kid") != expected_did:
                continue
            verified = jws_verify(f"{protected}..{signature}", detached_payload=payload)
        except (MalformedJWS, ValueError, AttributeError):
            continue
        return verified.signer
    wanted = f" by {expected_did}" if expected_did else ""
    raise CardSignatureError(f"no valid signature{wanted} on the agent card")
