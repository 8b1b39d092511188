"""Validation of signed registry writes before they touch the store (pure, no I/O).

Each function takes a :class:`~guildnet.protocols.signed_write.SignedWrite` whose signature and freshness
were already checked, and either returns what the store needs or raises a ``WriteRefused`` subclass
carrying the HTTP status of the refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from guildnet.protocols.agentfacts import AgentFacts, EndorsementError, check_endorsement
from guildnet.protocols.did import is_did_key
from guildnet.protocols.receipts import Receipt, verify_receipt
from guildnet.protocols.signed_write import MalformedWrite, SignedWrite, UnauthorizedWrite

ACTIONS = ("register", "heartbeat", "revoke", "rotate", "receipt")


def require_action(write: SignedWrite, action: str, agent_id: str | None = None) -> None:
    """Bind a signed write to one action (and one agent), so it cannot be replayed at another endpoint."""
    if write.payload.get("action") != action:
        raise MalformedWrite(f"payload 'action' must be {action!r} for this endpoint")
    if agent_id is not None and write.payload.get("agent") != agent_id:
        raise MalformedWrite("payload 'agent' must name the agent in the URL")


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(root)"
    return f"facts.{where}: {first['msg']}"


@dataclass(frozen=True, slots=True)
class Registration:
    facts: AgentFacts
    facts_json: dict[str, Any]


def parse_registration(write: SignedWrite) -> Registration:
    require_action(write, "register")
    raw = write.payload.get("facts")
    if not isinstance(raw, dict):
        raise MalformedWrite("payload needs 'facts' as a JSON object")
    try:
        facts = AgentFacts.model_validate(raw)
    except ValidationError as exc:
        raise MalformedWrite(_describe(exc)) from exc
    try:
        check_endorsement(facts)
    except EndorsementError as exc:
        raise UnauthorizedWrite(str(exc)) from exc
    return Registration(facts=facts, facts_json=raw)


def parse_rotation(write: SignedWrite, agent_id: str) -> str:
    require_action(write, "rotate", agent_id)
    new_key = write.payload.get("new_key")
    if not is_did_key(new_key):
        raise MalformedWrite("payload needs 'new_key' as an Ed25519 did:key")
    assert isinstance(new_key, str)
    if new_key == write.signer:
        raise MalformedWrite("'new_key' is the key already in use")
    return new_key


@dataclass(frozen=True, slots=True)
class ParsedReceipt:
    receipt: Receipt


def parse_receipt(write: SignedWrite) -> ParsedReceipt:
    """Check the countersigned receipt a ``receipt`` write carries (both signatures, parties, fields)."""
    require_action(write, "receipt")
    token = write.payload.get("receipt")
    if not isinstance(token, str):
        raise MalformedWrite("payload needs 'receipt': the caller-countersigned receipt token (compact JWS)")
    return ParsedReceipt(verify_receipt(token))
