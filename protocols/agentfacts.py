"""AgentFacts: the signed, self-describing document an agent publishes in a NANDA-style index.

The shape follows the NANDA AgentFacts minimal schema (id, name, endpoints, usage format, capabilities)
narrowed to what guildnet acts on. ``docs/agentfacts.md`` documents every field.

The organisation is proven, not asserted: ``organisation.endorsement`` is a JWS by the organisation key over
the agent's id, a digest of everything else in the facts (endpoints, skills, prices...) and an expiry, so no
agent can borrow another organisation's trust, and a stolen agent key cannot change what its organisation
vouched for.

The digest is of the facts **as registered** (``registered_facts``): SHA-256 of their text in the agent's signed
registration, byte for byte, with the endorsement emptied. A verifier hashes the bytes it was given, where the
first endorsements (``facts``, still read) digested the facts' RFC 8785 form, which every verifier had to
compute again: 30 % of a node's Python time for each agent it meets (bench/verify_records.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import jws, schema_check
from .canonical import canonical_json, sha256_hex
from .did import is_did_key
from .keys import SigningKey

MAX_VERSION = 2**53 - 1
"""The largest version every JSON reader holds exactly (JavaScript numbers); a node versions with unix seconds."""
MAX_SKILLS = 64
MAX_TAGS = 32
MAX_SCHEMA_BYTES = 32 * 1024

ENDORSEMENT_TYP = "guildnet-endorsement+jws"
AS_REGISTERED = "registered_facts"
"""The claim naming the digest of the facts as registered; ``facts`` names an RFC 8785 digest (the first form)."""
ENDORSEMENT_LIFETIME = 30 * 24 * 3600
"""Seconds an endorsement is valid by default; a node renews it when it re-registers, well before it expires."""
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$"
"""A lower-case DNS name of at least two labels (internationalised names in their ``xn--`` form)."""
MAX_DOMAIN_LENGTH = 243
"""253 (a DNS name's limit) less ``_guildnet.``, where the domain's TXT proof lives. Bounded as ``max_length``:
pydantic's regex engine has no look-ahead to bound it in the pattern."""

_SORTED_JSON = json.JSONEncoder(sort_keys=True)
"""``json.dumps(..., sort_keys=True)`` without building an encoder per call (two schemas a skill, each record)."""
_ENDORSEMENT = {"organisation": {"endorsement"}}
"""What :func:`facts_digest` leaves out of the facts, excluded while pydantic dumps them (no copy to trim after)."""

Name = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=4096)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
SkillId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


def _check_did(value: str) -> str:
    if not is_did_key(value):
        raise ValueError("must be an Ed25519 did:key")
    return value


_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[!-~]*)?")
"""An http(s) URL with a plain host name or IPv4 address and printable ASCII after it: every such string is one
``urlsplit`` reads with that scheme and a non-empty host (tests/test_agentfacts.py checks it), so it is accepted
without ``urlsplit`` (its Python costs ~2 µs, for each endpoint of each agent a node meets); anything else is
read by ``urlsplit``, as before."""


def _check_url(value: str | None) -> str | None:
    if value is None or (_PLAIN_URL.fullmatch(value) and len(value) <= 2048):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 2048:
        raise ValueError("must be an absolute http(s) URL")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Skill(_Strict):
    id: SkillId
    name: Name
    description: Text = ""
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _valid_json_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        text = _SORTED_JSON.encode(schema)
        if len(text) > MAX_SCHEMA_BYTES:
            raise ValueError(f"schema larger than {MAX_SCHEMA_BYTES} bytes")
        try:  # valid, and safe for any node to apply; built once per distinct schema, then shared with whoever
            schema_check.checker_of_text(text)  # checks inputs and outputs against it (the delegator, the node)
        except schema_check.UnsafeSchema as exc:
            raise ValueError(str(exc)) from None
        return schema


class Endpoints(_Strict):
    a2a: str | None = None
    mcp: str | None = None

    _urls = field_validator("a2a", "mcp")(_check_url)


class ModelFacts(_Strict):
    family: Name
    parameters: Annotated[int, Field(ge=0)] | None = None
    cost_per_1k_input: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    cost_per_1k_output: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"


class Organisation(_Strict):
    id: str
    name: Name
    domain: Annotated[str, Field(pattern=DOMAIN_PATTERN, max_length=MAX_DOMAIN_LENGTH)] | None = None
    endorsement: str = Field(description="compact JWS by the organisation key over the agent id, the facts digest "
                                         "and an expiry")

    _did = field_validator("id")(_check_did)


class AgentFacts(_Strict):
    id: str
    name: Name
    organisation: Organisation
    description: Text = ""
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)]
    endpoints: Endpoints = Endpoints()
    skills: Annotated[list[Skill], Field(min_length=1, max_length=MAX_SKILLS)]
    model: ModelFacts | None = None
    ttl_seconds: Annotated[int, Field(ge=5, le=7 * 24 * 3600)] = 300

    _did = field_validator("id")(_check_did)

    @model_validator(mode="after")
    def _unique_skill_ids(self) -> AgentFacts:
        ids = [skill.id for skill in self.skills]
        if len(set(ids)) != len(ids):
            raise ValueError("skill ids must be unique")
        return self

    def skill(self, skill_id: str) -> Skill | None:
        return next((s for s in self.skills if s.id == skill_id), None)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class EndorsementError(ValueError):
    """The organisation endorsement is missing, forged, expired, or vouches for other facts or another agent."""


def facts_digest(facts: AgentFacts) -> str:
    """SHA-256 (hex) of the facts' canonical JSON without the endorsement: what a first-form endorsement (claim
    ``facts``) vouches for."""
    return sha256_hex(canonical_json(facts.model_dump(mode="json", exclude_none=True, exclude=_ENDORSEMENT)))


def endorse(org_key: SigningKey, facts: Mapping[str, Any], *, now: float | None = None,
            lifetime: int = ENDORSEMENT_LIFETIME) -> dict[str, Any]:
    """``facts`` (a JSON object; any ``organisation.endorsement`` in it is ignored) as :meth:`AgentFacts.to_json`
    writes them, which is what a registration carries, with the organisation's endorsement filled in: its
    signature over the agent id, the digest of exactly that text (:func:`registered_digest`), and when it
    expires. Register them as returned (or as ``AgentFacts.to_json`` writes them again: the same text)."""
    organisation = {k: v for k, v in facts["organisation"].items() if k != "endorsement"}
    unsigned = AgentFacts.model_validate({**facts, "organisation": {**organisation, "endorsement": ""}}).to_json()
    issued = int(time.time() if now is None else now)
    token = jws.sign({"agent": unsigned["id"], AS_REGISTERED: sha256_hex(jws.compact_json(unsigned)), "iat": issued,
                      "exp": issued + lifetime}, org_key, typ=ENDORSEMENT_TYP)
    unsigned["organisation"]["endorsement"] = token
    return unsigned


def registered_digest(registered: str, endorsement: str) -> str:
    """SHA-256 (hex) of ``registered`` (the facts' text in a registration) with the ``endorsement`` it carries
    emptied: what :func:`endorse` signs. The endorsement must be spelled out exactly once; which member held it
    needs no parsing here, as no text can hold a signature over its own digest: a text that digests to what the
    organisation signed is the organisation's, with its endorsement emptied."""
    member = '"endorsement":' + json.dumps(endorsement)
    if registered.count(member) != 1:
        raise EndorsementError("the registered facts do not spell their endorsement out once")
    return sha256_hex(registered.replace(member, '"endorsement":""').encode())


@dataclass(frozen=True, slots=True)
class Endorsement:
    """A verified endorsement's content."""

    organisation: str
    agent: str
    facts: str
    """The digest vouched for: of the facts as registered, or (``as_registered`` False) of their RFC 8785 form."""
    issued_at: int
    expires_at: int
    as_registered: bool = True


@lru_cache(maxsize=65536)
def _endorsement(token: str) -> Endorsement:
    """The content of an endorsement whose signature verified; cached because a record is checked again and again
    with the same one (the signature is the expensive part)."""
    verified, body = jws.verify_json(token)
    if verified.header.get("typ") != ENDORSEMENT_TYP:
        raise EndorsementError(f"the organisation endorsement is not one (typ {ENDORSEMENT_TYP!r})")
    as_registered = AS_REGISTERED in body
    if as_registered and "facts" in body:
        raise EndorsementError("the organisation endorsement names two facts digests")
    agent, digest, issued, expires = (body.get("agent"), body.get(AS_REGISTERED if as_registered else "facts"),
                                      body.get("iat"), body.get("exp"))
    if not isinstance(agent, str) or not isinstance(digest, str):
        raise EndorsementError("the organisation endorsement names no agent or facts digest")
    if type(issued) is not int or type(expires) is not int:  # exactly int: bool, a subclass, is not a time
        raise EndorsementError("the organisation endorsement has no integer iat and exp")
    return Endorsement(verified.signer, agent, digest, issued, expires, as_registered)


def check_endorsement(facts: AgentFacts, *, now: float | None = None, registered: str | None = None) -> Endorsement:
    """The endorsement of ``facts``, verified: signed by ``organisation.id``, naming this agent and exactly these
    facts, and not expired at ``now`` (default: the current time).

    ``registered`` is the facts' text in the signed registration they were read from (``facts`` validated from
    exactly that text); without it, the text is the one ``facts.to_json()`` writes, which is what a registration
    of guildnet's carries."""
    try:
        endorsement = _endorsement(facts.organisation.endorsement)
    except (jws.MalformedJWS, jws.BadSignature) as exc:
        raise EndorsementError(f"organisation endorsement does not verify: {exc}") from exc
    if endorsement.organisation != facts.organisation.id:
        raise EndorsementError("organisation endorsement is not signed by organisation.id")
    if endorsement.agent != facts.id:
        raise EndorsementError("organisation endorsement names a different agent")
    if endorsement.as_registered:
        text = registered if registered is not None else jws.compact_json(facts.to_json()).decode()
        digest = registered_digest(text, facts.organisation.endorsement)
    else:
        digest = facts_digest(facts)
    if endorsement.facts != digest:
        raise EndorsementError("organisation endorsement vouches for other facts (endpoints, skills or prices "
                               "changed without the organisation's signature)")
    return check_unexpired(endorsement, now=now)


def check_unexpired(endorsement: Endorsement, *, now: float | None = None) -> Endorsement:
    """``endorsement`` if it has not expired at ``now`` (default: the current time)."""
    if endorsement.expires_at <= (time.time() if now is None else now):
        raise EndorsementError("organisation endorsement has expired; the organisation must renew it")
    return endorsement
