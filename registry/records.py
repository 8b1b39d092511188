"""Validation of signed registry writes before they touch the store (pure, no I/O).

Each function takes a :class:`~guildnet.protocols.signed_write.SignedWrite` whose signature and freshness
were already checked, and either returns what the store needs or raises a ``WriteRefused`` subclass
carrying the HTTP status of the refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from guildnet.protocols import keyhistory
from guildnet.protocols.agentfacts import AgentFacts, EndorsementError, check_endorsement
from guildnet.protocols.receipts import Receipt, verify_receipt
from guildnet.protocols.signed_write import MalformedWrite, SignedWrite, UnauthorizedWrite, open_write

from .meaning import embed_facts


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


MAX_REGISTRATIONS = 100
"""Registrations per ``POST /v1/registrations``: ~2 KB each for an agent with a few skills, so a full batch fits
the body limit of any write; one request per hundred agents shares nearly all of the HTTP cost."""

MAX_NODE_HEARTBEAT_AGENTS = 2048
"""Agents one node-level heartbeat may name: 2,048 did:key ids are ~160 KB of JWS, within the body limit."""


def parse_node_heartbeat(write: SignedWrite) -> list[str]:
    """The agent ids a node-level heartbeat (action ``node_heartbeat``, signed by the organisation key that
    endorsed them) keeps live: 1 to :data:`MAX_NODE_HEARTBEAT_AGENTS` distinct strings."""
    require_action(write, "node_heartbeat")
    agents = write.payload.get("agents")
    if (not isinstance(agents, list) or not 1 <= len(agents) <= MAX_NODE_HEARTBEAT_AGENTS
            or not all(isinstance(a, str) and 0 < len(a) <= 256 for a in agents)):
        raise MalformedWrite(f"payload needs 'agents': 1 to {MAX_NODE_HEARTBEAT_AGENTS} agent ids (strings)")
    if len(set(agents)) != len(agents):
        raise MalformedWrite("'agents' names an agent twice")
    return agents


@dataclass(frozen=True, slots=True)
class Registration:
    facts: AgentFacts
    facts_json: dict[str, Any]
    inception: str | None = None
    """The inception key event a first registration may carry (committing to the agent's next key)."""
    embedding: bytes = b""
    """The facts' vector for search by meaning (:mod:`.meaning`), computed here so that with verifier workers
    it is computed on their cores, not the writer's."""


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
        # valid when signed (iat is within the clock window), against the facts' text as the registration signed
        # it, which is what every verifier checks it against (protocols/records.py): so the registry accepts exactly
        # the registrations verifiers will accept, however their facts are spelled. open_write read that text from
        # its one parse of the payload (None when the payload does not open with the facts: then both check the
        # text AgentFacts.to_json writes).
        check_endorsement(facts, now=write.payload["iat"], registered=write.facts_text)
    except EndorsementError as exc:
        raise UnauthorizedWrite(str(exc)) from exc
    inception = write.payload.get("key_event")
    if inception is not None:
        if not isinstance(inception, str):
            raise MalformedWrite("'key_event' must be the inception key event (a compact JWS)")
        try:
            keyhistory.replay(facts.id, [inception])
        except keyhistory.KeyHistoryError as exc:
            raise UnauthorizedWrite(f"the inception key event does not verify: {exc}") from exc
    return Registration(facts=facts, facts_json=raw, inception=inception, embedding=embed_facts(raw))


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation write: the key event (signed by the key in force, checked against the stored history by the
    store) and the re-registration of the agent's facts signed by the new key, applied together so the record
    served is never signed by a retired key."""

    event: str
    registration_write: SignedWrite
    registration: Registration


def parse_rotation(write: SignedWrite, agent_id: str, *, now: float, window: int) -> Rotation:
    require_action(write, "rotate", agent_id)
    event, inner = write.payload.get("key_event"), write.payload.get("registration")
    if not isinstance(event, str):
        raise MalformedWrite("payload needs 'key_event': the rotation key event (a compact JWS)")
    if not isinstance(inner, str):
        raise MalformedWrite("payload needs 'registration': the agent's facts as a register write signed by the "
                             "new key")
    registration_write = open_write(inner, now=now, window=window)
    registration = parse_registration(registration_write)
    if registration.facts.id != agent_id:
        raise MalformedWrite("the registration in a rotation must be of the rotating agent")
    if registration.inception is not None:
        raise MalformedWrite("a rotation's registration carries no inception event")
    return Rotation(event, registration_write, registration)


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
