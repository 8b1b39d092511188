"""Domain-bound organisations: what proves that a domain's owner names an organisation key (pure: no I/O).

An organisation claims a domain in its AgentFacts (``organisation.domain``). The claim alone proves nothing; it
is proven by the domain, in one of two ways that only whoever controls the domain can set up:

* **DNS**: a TXT record at ``_guildnet.<domain>`` reading ``v=guildnet1; org=<organisation did:key>``
  (several records may name several keys, during a key change say);
* **HTTPS**: ``https://<domain>/.well-known/guildnet-org.json`` served with a certificate valid for the domain,
  holding ``{"proofs": [<compact JWS>, ...]}`` where each JWS is signed by an organisation key over
  ``{"domain": <domain>, "org": <that key's did:key>, "iat": <unix seconds>}`` (``exp`` optional).

This is the pattern of the MCP registry's domain namespaces (a DNS TXT record or an HTTPS ``/.well-known`` file
naming the publisher's key) and of NANDA index v2's DNS challenge. Who checks (the registry at registration and on
a schedule, a node before it ranks a candidate, anyone with ``guildnet registry show --check-domain``) passes the
look-ups in as a :class:`DomainLookups`; everything here works on their answers, so it is tested on values.

:class:`DomainMark` is what a registry says about a claim after checking it: verified or not, how, when, and how
many checks in a row failed. It is the registry's statement, not a proof: a node that requires a verified domain
checks the proof itself with :func:`check_domain`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from . import bounded_json, jws
from .agentfacts import DOMAIN_PATTERN, MAX_DOMAIN_LENGTH, Organisation
from .did import is_did_key
from .keys import SigningKey

PROOF_VERSION = "guildnet1"
TXT_LABEL = "_guildnet"
WELL_KNOWN_PATH = "/.well-known/guildnet-org.json"
PROOF_TYP = "guildnet-domain+jws"
MAX_WELL_KNOWN_BYTES = 64 * 1024
"""A proof document is a few hundred bytes per key; a larger answer is refused unread."""
MAX_PROOFS = 16

Method = Literal["dns", "https"]
Status = Literal["verified", "unverified", "withdrawn"]
STATUSES: tuple[Status, ...] = ("verified", "unverified", "withdrawn")


class LookupFailed(Exception):
    """A look-up got no usable answer (time-out, refused connection, server failure, bad certificate, not 200):
    the proof could not be read, which says nothing either way about the claim."""


class DomainLookups(Protocol):
    """The two look-ups a domain proof needs, done by whoever checks (the registry's and the node's adapters)."""

    async def txt(self, name: str) -> list[str]:
        """The TXT records at ``name`` (each record's strings joined); ``[]`` when the name has none (NXDOMAIN,
        no TXT data); :class:`LookupFailed` when the resolver gave no answer."""
        ...

    async def well_known(self, domain: str) -> bytes | None:
        """The body of ``https://<domain>/.well-known/guildnet-org.json`` (at most
        :data:`MAX_WELL_KNOWN_BYTES`); ``None`` on 404 or 410; :class:`LookupFailed` on anything else."""
        ...


def is_domain_name(value: str) -> bool:
    """Whether ``value`` may be claimed as ``organisation.domain`` (the AgentFacts rule)."""
    return len(value) <= MAX_DOMAIN_LENGTH and re.fullmatch(DOMAIN_PATTERN, value) is not None


# -- DNS ---------------------------------------------------------------------------------------------------------


def txt_name(domain: str) -> str:
    """Where the TXT proof lives: ``_guildnet.<domain>``."""
    return f"{TXT_LABEL}.{domain}"


def txt_record(org_id: str) -> str:
    """The TXT record an organisation publishes at :func:`txt_name` of its domain."""
    if not is_did_key(org_id):
        raise ValueError("an organisation id is an Ed25519 did:key")
    return f"v={PROOF_VERSION}; org={org_id}"


def orgs_in_txt(records: Iterable[str]) -> frozenset[str]:
    """The organisation keys the TXT records name; records of another version or shape are ignored (the name may
    hold other TXT records), and unknown fields are too, so the format can grow."""
    found = set()
    for record in records:
        fields: dict[str, str] = {}
        for part in record.split(";"):
            name, equals, value = part.strip().partition("=")
            if equals:
                fields.setdefault(name.strip().lower(), value.strip())
        if fields.get("v") == PROOF_VERSION and is_did_key(fields.get("org")):
            found.add(fields["org"])
    return frozenset(found)


# -- HTTPS -------------------------------------------------------------------------------------------------------


def well_known_url(domain: str, port: int = 443) -> str:
    """Where the HTTPS proof lives; ``port`` other than 443 is for test servers only."""
    return f"https://{domain}{'' if port == 443 else f':{port}'}{WELL_KNOWN_PATH}"


def sign_proof(org_key: SigningKey, domain: str, *, now: float, lifetime: int | None = None) -> str:
    """The organisation's signed statement that ``domain`` is its own, for the well-known document."""
    claims: dict[str, Any] = {"domain": domain, "org": org_key.did, "iat": int(now)}
    if lifetime is not None:
        claims["exp"] = int(now) + lifetime
    return jws.sign(claims, org_key, typ=PROOF_TYP)


def well_known_document(proofs: Sequence[str]) -> dict[str, Any]:
    """The document to serve at :data:`WELL_KNOWN_PATH` (as JSON)."""
    return {"proofs": list(proofs)}


class InvalidProofDocument(ValueError):
    """The well-known document is not ``{"proofs": [<compact JWS>, ...]}``."""


def _proven_org(token: str, domain: str, now: float) -> str | None:
    """The signer of ``token`` if it is a valid, unexpired proof for ``domain`` by the key it names, else None."""
    try:
        verified, claims = jws.verify_json(token)
    except (jws.MalformedJWS, jws.BadSignature):
        return None
    if verified.header.get("typ") != PROOF_TYP or claims.get("domain") != domain:
        return None
    if claims.get("org") != verified.signer:
        return None
    expires = claims.get("exp")
    if expires is not None and (not isinstance(expires, int | float) or expires <= now):
        return None
    return verified.signer


def orgs_in_well_known(body: bytes, domain: str, *, now: float) -> frozenset[str]:
    """The organisation keys that signed a valid proof for ``domain`` in a well-known document; proofs for
    another domain, by a key other than the one they name, or expired, are ignored."""
    if len(body) > MAX_WELL_KNOWN_BYTES:
        raise InvalidProofDocument(f"larger than {MAX_WELL_KNOWN_BYTES} bytes")
    try:
        document = bounded_json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidProofDocument("not JSON") from exc
    proofs = document.get("proofs") if isinstance(document, dict) else None
    if not isinstance(proofs, list) or not all(isinstance(p, str) for p in proofs):
        raise InvalidProofDocument('expected {"proofs": [<compact JWS>, ...]}')
    return frozenset(org for org in (_proven_org(p, domain, now) for p in proofs[:MAX_PROOFS]) if org)


# -- the decision ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainCheck:
    """One check of a claim: is ``domain`` proven to belong to ``org``, by which method, and why (not)."""

    domain: str
    org: str
    verified: bool
    method: Method | None
    checked_at: float
    detail: str


def _named(orgs: frozenset[str], org: str, where: str) -> tuple[bool, str]:
    if org in orgs:
        return True, f"{where} names this organisation's key"
    if orgs:
        return False, f"{where} names other keys only ({', '.join(sorted(orgs))})"
    return False, f"{where} names no organisation key"


async def check_domain(domain: str, org: str, lookups: DomainLookups, *, now: float) -> DomainCheck:
    """Check that ``domain`` names ``org``: DNS first, then HTTPS if DNS did not prove it. Look-up failures
    make the check fail with the reason; they never raise."""
    details = []
    try:
        proven, detail = _named(orgs_in_txt(await lookups.txt(txt_name(domain))), org, f"DNS TXT {txt_name(domain)}")
    except LookupFailed as exc:
        proven, detail = False, f"DNS TXT {txt_name(domain)}: no answer ({exc})"
    if proven:
        return DomainCheck(domain, org, True, "dns", now, detail)
    details.append(detail)
    where = f"https://{domain}{WELL_KNOWN_PATH}"
    try:
        body = await lookups.well_known(domain)
        if body is None:
            proven, detail = False, f"{where}: not found"
        else:
            proven, detail = _named(orgs_in_well_known(body, domain, now=now), org, where)
    except LookupFailed as exc:
        proven, detail = False, f"{where}: no answer ({exc})"
    except InvalidProofDocument as exc:
        proven, detail = False, f"{where}: {exc}"
    if proven:
        return DomainCheck(domain, org, True, "https", now, detail)
    details.append(detail)
    return DomainCheck(domain, org, False, None, now, "; ".join(details))


# -- the registry's mark -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainMark:
    """A registry's statement about an organisation's domain claim, served with each record of the organisation
    that claims it: ``verified`` (the last check passed, or fewer than the withdrawal threshold failed since),
    ``unverified`` (never proven), or ``withdrawn`` (it was, then failed that many checks in a row)."""

    domain: str
    org: str
    status: Status
    method: Method | None
    verified_at: float | None
    """When a check last passed."""
    checked_at: float
    failures: int
    """Checks failed in a row since the last that passed."""
    detail: str

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.domain, "organisation": self.org, "status": self.status, "method": self.method,
                "verified_at": self.verified_at, "checked_at": self.checked_at, "failures": self.failures,
                "detail": self.detail}

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json_text(cls, text: str) -> DomainMark:
        try:
            value = bounded_json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a domain mark: {exc}") from exc
        return cls.from_json(value)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DomainMark:
        """Read a served mark; ``ValueError`` when it is not one (a client then shows no mark at all)."""
        try:
            status, method = value["status"], value.get("method")
            verified_at, checked_at, failures = value.get("verified_at"), value["checked_at"], value["failures"]
            domain, org, detail = value["name"], value["organisation"], value.get("detail", "")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a domain mark: {exc}") from exc
        if status not in STATUSES or method not in (None, "dns", "https"):
            raise ValueError("not a domain mark: unknown status or method")
        if not all(isinstance(v, str) for v in (domain, org, detail)) or not _time(checked_at) \
                or not (verified_at is None or _time(verified_at)) \
                or not isinstance(failures, int) or isinstance(failures, bool) or failures < 0:
            raise ValueError("not a domain mark: a field has the wrong type")
        return cls(domain, org, status, method, verified_at, float(checked_at), failures, detail)


def _time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def next_mark(previous: DomainMark | None, check: DomainCheck, *, withdraw_after: int) -> DomainMark:
    """The mark after ``check``. A pass verifies (again); a failure counts, and a verified mark survives
    ``withdraw_after - 1`` failures in a row (a DNS outage is not a lost domain) and is withdrawn at the next."""
    if check.verified:
        return DomainMark(check.domain, check.org, "verified", check.method, check.checked_at, check.checked_at, 0,
                          check.detail)
    if previous is None or (previous.domain, previous.org) != (check.domain, check.org):
        return DomainMark(check.domain, check.org, "unverified", None, None, check.checked_at, 1, check.detail)
    failures = previous.failures + 1
    status: Status = previous.status
    if status == "verified" and failures >= withdraw_after:
        status = "withdrawn"
    return replace(previous, status=status, checked_at=check.checked_at, failures=failures, detail=check.detail)


def served_mark(organisation: Organisation, served: object) -> DomainMark | None:
    """The registry's mark for the domain ``organisation`` claims, read from a served record, or None: a malformed
    mark, or one about another domain or organisation, is no mark (a registry cannot lend one organisation's mark
    to another's facts)."""
    if organisation.domain is None or not isinstance(served, Mapping):
        return None
    try:
        mark = DomainMark.from_json(served)
    except ValueError:
        return None
    return mark if (mark.domain, mark.org) == (organisation.domain, organisation.id) else None
