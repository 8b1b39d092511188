"""An agent record as a registry serves it, verified by whoever receives it: the registry itself is not trusted.

One function, :func:`verify_record`, shared by the registry's client, the explorer, the CLI and the node. It
believes nothing the registry says about keys: it rebuilds the key in force from the agent's id and its signed
key events (:mod:`.keyhistory`), checks that the registration (the facts) was signed by exactly that key, and
that the organisation endorsed exactly these facts and has not let the endorsement expire. What is left of the
registry's word is what it cannot sign: liveness, and whether it revoked the agent (a revocation only ever
hides an agent).

A node sees the same registration in every search page and watch refetch, and its two Ed25519 verifications are
most of a record's cost: a record verified whole is remembered by its registration token with its key events and
facts, so the same record served again skips both signatures, the facts' validation and their digest (measured
in bench/verify_records.py). Nothing else of a record is kept: every object kept per agent met is one more that
the garbage collector walks on each full pass, a third of a new record's Python time by 5,000 records.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from . import jws
from .agentfacts import AgentFacts, Endorsement, EndorsementError, check_endorsement, check_unexpired
from .domain import DomainMark, served_mark
from .keyhistory import KeyHistoryError, KeyState, key_in_force
from .signed_write import REGISTER_OPENING


class UntrustworthyRecord(Exception):
    """The registry served a record that does not verify, or that its log does not hold: never act on it."""


@dataclass(frozen=True, slots=True)
class AgentEntry:
    """An agent record whose signatures, key history and endorsement were verified here."""

    facts: AgentFacts
    keys: KeyState
    live: bool
    last_seen: float
    revoked: bool
    jws: str
    """The registration: a signed write by the key in force, whose ``facts`` are :attr:`facts`."""
    key_events: tuple[str, ...] = ()
    log_index: int | None = None
    endorsement: Endorsement | None = None
    registered_at: float = 0.0
    """When the registry says the agent first registered (its word, unsigned; 0 when it does not say)."""
    domain: DomainMark | None = None
    """What the registry says it verified of ``organisation.domain`` (its word, not a proof: see docs/domains.md)."""

    @property
    def id(self) -> str:
        return str(self.facts.id)

    @property
    def current_key(self) -> str:
        """The key in force, as the agent's own key history proves it."""
        return self.keys.key

    @property
    def version(self) -> int:
        return self.facts.version


@lru_cache(maxsize=16384)
def _history(agent: str, events: tuple[str, ...]) -> KeyState:
    return key_in_force(agent, events)


@dataclass(frozen=True, slots=True)
class _Verified:
    """What a full verification of one registration proved, kept to verify the same record again cheaply."""

    facts_json: Any
    """The facts as signed in the registration (a private copy: nobody outside this module holds it)."""
    events: tuple[str, ...]
    facts: AgentFacts
    keys: KeyState
    endorsement: Endorsement


_VERIFIED: OrderedDict[str, _Verified] = OrderedDict()
"""By registration token, the oldest first out (no reordering on a hit: nothing to race between threads)."""
_VERIFIED_MAX = 16384


def verify_record(body: Mapping[str, Any], *, now: float | None = None) -> AgentEntry:
    """``body`` as ``GET /v1/agents/{id}`` (or one search hit) serves it, or :class:`UntrustworthyRecord`.

    A record seen before is recognised by its registration token, its key events and its facts, all three equal
    to what was verified then (so the facts are not validated, nor their digest computed, again); what depends
    on the moment (the endorsement's expiry) or on the registry's word (the key it names) is checked every time."""
    token, events = body.get("jws"), body.get("key_events") or []
    if (isinstance(token, str) and (seen := _VERIFIED.get(token)) is not None and isinstance(events, list | tuple)
            and seen.events == tuple(events) and seen.facts_json == body.get("facts")):
        facts, keys = seen.facts, seen.keys
        _check_served_key(body, facts, keys)
        try:
            endorsement = check_unexpired(seen.endorsement, now=now)
        except EndorsementError as exc:
            raise UntrustworthyRecord(f"{facts.id}: {exc}") from exc
        return _entry(body, facts, keys, endorsement, token, seen.events)
    return _verify_fully(body, now=now)


def _verify_fully(body: Mapping[str, Any], *, now: float | None) -> AgentEntry:
    """The facts acted on are the ones the registration signed (validated from its payload), so the endorsement is
    checked against the very text they were read from; the copy the registry serves beside it must equal them."""
    served = body.get("facts")
    agent = served.get("id") if isinstance(served, Mapping) else None
    token = body.get("jws")
    if not isinstance(token, str):
        raise UntrustworthyRecord(f"the registry served no signed registration for {agent}")
    try:
        registration, payload, facts_text = jws.verify_json_with_member_text(token, REGISTER_OPENING, "facts")
    except (jws.MalformedJWS, jws.BadSignature) as exc:
        raise UntrustworthyRecord(f"the registration of {agent} does not verify: {exc}") from exc
    if payload.get("action") != "register" or payload.get("facts") != served:
        raise UntrustworthyRecord(f"the facts served for {agent} differ from its signed registration")
    try:
        facts = AgentFacts.model_validate(payload["facts"])
    except (KeyError, TypeError, ValidationError) as exc:
        raise UntrustworthyRecord(f"the registration of {agent} holds facts that are not AgentFacts: {exc}") from exc
    events = body.get("key_events") or []
    if not isinstance(events, Sequence) or isinstance(events, str):
        raise UntrustworthyRecord(f"the key events served for {facts.id} are not a list")
    try:
        keys = _history(facts.id, tuple(events))
    except (KeyHistoryError, TypeError) as exc:
        raise UntrustworthyRecord(f"the key history of {facts.id} does not verify: {exc}") from exc
    if registration.signer != keys.key:
        raise UntrustworthyRecord(f"the registration of {facts.id} is not signed by the key in force per its key "
                                  f"history ({keys.key})")
    _check_served_key(body, facts, keys)
    try:
        endorsement = check_endorsement(facts, now=time.time() if now is None else now,
                                        registered=facts_text)
    except EndorsementError as exc:
        raise UntrustworthyRecord(f"{facts.id}: {exc}") from exc
    _VERIFIED[token] = _Verified(payload["facts"], tuple(events), facts, keys, endorsement)
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return _entry(body, facts, keys, endorsement, token, tuple(events))


def _check_served_key(body: Mapping[str, Any], facts: AgentFacts, keys: KeyState) -> None:
    served_key = body.get("current_key")
    if served_key is not None and served_key != keys.key:
        raise UntrustworthyRecord(f"the registry names {served_key} as the key of {facts.id}; its key history "
                                  f"proves {keys.key}")


def _entry(body: Mapping[str, Any], facts: AgentFacts, keys: KeyState, endorsement: Endorsement, token: str,
           events: tuple[str, ...]) -> AgentEntry:
    """The verified entry, with what the registry says unsigned (liveness, revocation, times, its domain mark)."""
    log_index = body.get("log_index")
    return AgentEntry(facts=facts, keys=keys, live=body.get("live") is True, last_seen=_seconds(body, "last_seen"),
                      revoked=body.get("revoked") is True, jws=token, key_events=events,
                      log_index=log_index if isinstance(log_index, int) and not isinstance(log_index, bool) else None,
                      endorsement=endorsement, registered_at=_seconds(body, "registered_at"),
                      domain=served_mark(facts.organisation, body.get("domain")))


def _seconds(body: Mapping[str, Any], name: str) -> float:
    """A timestamp the registry states (unsigned): a number, else 0."""
    value = body.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
