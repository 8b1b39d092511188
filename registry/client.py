"""The async client for the registry API: the one way nodes and the CLI talk to a registry.

It signs writes with the caller's key, and it does not take the registry's word for what it serves:
every AgentFacts it returns has had its agent signature and organisation endorsement checked. It also audits
the registry's transparency log: each signed tree head must verify under the registry key (pinned, or
remembered from the first head: trust on first use) and be consistent with the last head this client saw, and
``get(..., verify_inclusion=True)`` proves that the registration it returns is in that head. A registry that
rewrites its history, or shows one client a record it keeps out of the log, is caught here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from guildnet.protocols import jws, signed_write
from guildnet.protocols.agentfacts import AgentFacts, EndorsementError, check_endorsement
from guildnet.protocols.did import is_did_key
from guildnet.protocols.domain import DomainMark, served_mark
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import (
    InvalidCheckpoint,
    InvalidProof,
    leaf_hash,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from guildnet.protocols.transparency import leaf_data, origin_for

# The node may import this module alone of the registry package, and re-checks domain proofs itself: the look-up
# adapter the registry uses is re-exported here so that both use one (see registry/domain_lookup.py).
from .domain_lookup import DomainLookupSettings as DomainLookupSettings
from .domain_lookup import DomainResolver as DomainResolver
from .domain_lookup import parse_dns_server as parse_dns_server

JOSE = "application/jose"


class RegistryError(Exception):
    """The registry refused a request (its problem+json is in ``status``, ``title``, ``detail``)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail


class UntrustworthyRecord(Exception):
    """The registry served facts whose signature or endorsement does not verify, or that its log does not hold."""


class LogForked(UntrustworthyRecord):
    """A new tree head does not extend the last one this client saw: the registry rewrote or split its history."""


@dataclass(frozen=True, slots=True)
class LogHead:
    """A tree head whose signature this client verified."""

    origin: str
    size: int
    root: bytes
    checkpoint: str


@dataclass(frozen=True, slots=True)
class ReputationReport:
    """``GET /v1/agents/{id}/reputation``: the score with its evidence; ``raw`` holds the inputs and parameters."""

    agent: str
    skill: str
    score: float
    lower_bound: float
    interval: tuple[float, float]
    evidence: float
    receipts: int
    log_size: int
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AgentEntry:
    facts: AgentFacts
    live: bool
    last_seen: float
    revoked: bool
    current_key: str
    version: int
    jws: str | None
    log_index: int | None = None
    domain: DomainMark | None = None
    """What the registry says it verified of ``organisation.domain`` (its word, not a proof: see docs/domains.md)."""

    @property
    def id(self) -> str:
        return str(self.facts.id)


@dataclass(frozen=True, slots=True)
class SearchPage:
    agents: list[AgentEntry]
    next: str | None
    seq: int = 0
    """The registry's change-feed position when the page was read: watch from here to miss nothing."""


def verify_entry(body: Mapping[str, Any], *, require_jws: bool) -> AgentEntry:
    """An agent record as the registry serves it, checked: the facts are signed by a key of the agent (the
    JWS, when present or ``require_jws``), match what was signed, and carry a valid organisation endorsement."""
    facts = AgentFacts.model_validate(body["facts"])
    token = body.get("jws")
    if token is not None:
        try:
            verified, payload = jws.verify_json(token)
        except (jws.MalformedJWS, jws.BadSignature) as exc:
            raise UntrustworthyRecord(f"registration of {facts.id} does not verify: {exc}") from exc
        if payload.get("facts") != body["facts"]:
            raise UntrustworthyRecord(f"facts served for {facts.id} differ from the signed registration")
        if verified.signer not in (facts.id, body.get("current_key")):
            raise UntrustworthyRecord(f"registration of {facts.id} is signed by a key it does not own")
    elif require_jws:
        raise UntrustworthyRecord(f"the registry served no signed registration for {facts.id}")
    try:
        check_endorsement(facts)
    except EndorsementError as exc:
        raise UntrustworthyRecord(str(exc)) from exc
    return AgentEntry(facts=facts, live=bool(body["live"]), last_seen=float(body["last_seen"]),
                      revoked=bool(body.get("revoked", False)), current_key=str(body.get("current_key", facts.id)),
                      version=int(body.get("version", facts.version)), jws=token,
                      log_index=int(body["log_index"]) if body.get("log_index") is not None else None,
                      domain=served_mark(facts.organisation, body.get("domain")))



def _hashes(values: Any) -> list[bytes]:
    if not isinstance(values, list):
        raise UntrustworthyRecord("a proof is a list of hex hashes")
    try:
        return [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise UntrustworthyRecord("a proof is a list of hex hashes") from exc


class RegistryClient:
    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None,
                 timeout: float = 10.0, registry_key: str | None = None) -> None:
        """``registry_key`` pins the did:key that must sign the log's heads; without it the first head's key
        is remembered (trust on first use) and every later head must be signed by the same key."""
        if registry_key is not None and not is_did_key(registry_key):
            raise ValueError("registry_key must be an Ed25519 did:key")
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.registry_key = registry_key
        self.last_head: LogHead | None = None
        self._head_lock = asyncio.Lock()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    async def _check(response: aiohttp.ClientResponse) -> Any:
        text = await response.text()
        if response.status >= 400:
            try:
                problem = json.loads(text)
                raise RegistryError(response.status, str(problem.get("title", "")), str(problem.get("detail", "")))
            except (json.JSONDecodeError, AttributeError):
                raise RegistryError(response.status, response.reason or "", text[:200]) from None
        return json.loads(text)

    async def _signed_post(self, path: str, key: SigningKey, body: Mapping[str, Any]) -> dict[str, Any]:
        token = signed_write.make(key, body)
        async with self.session.post(self._url(path), data=token, headers={"Content-Type": JOSE}) as response:
            result: dict[str, Any] = await self._check(response)
            return result

    # -- writes -------------------------------------------------------------------------------------

    async def register(self, facts: AgentFacts, key: SigningKey) -> dict[str, Any]:
        """Register or update ``facts`` (signed by ``key``: the agent key, or its rotated successor)."""
        return await self._signed_post("/v1/agents", key, {"action": "register", "facts": facts.to_json()})

    async def heartbeat(self, agent_id: str, key: SigningKey) -> dict[str, Any]:
        return await self._signed_post(f"/v1/agents/{quote(agent_id)}/heartbeat", key,
                                       {"action": "heartbeat", "agent": agent_id})

    async def revoke(self, agent_id: str, key: SigningKey) -> dict[str, Any]:
        return await self._signed_post(f"/v1/agents/{quote(agent_id)}/revoke", key,
                                       {"action": "revoke", "agent": agent_id})

    async def rotate(self, agent_id: str, key: SigningKey, new_key_did: str) -> dict[str, Any]:
        return await self._signed_post(f"/v1/agents/{quote(agent_id)}/rotate", key,
                                       {"action": "rotate", "agent": agent_id, "new_key": new_key_did})

    async def submit_receipt(self, receipt: str, key: SigningKey) -> dict[str, Any]:
        """Submit a caller-countersigned receipt; ``key`` is the caller's current key. Returns its log index."""
        return await self._signed_post("/v1/receipts", key, {"action": "receipt", "receipt": receipt})

    # -- reads --------------------------------------------------------------------------------------

    async def _get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        async with self.session.get(self._url(path), params=params) as response:
            return await self._check(response)

    async def get(self, agent_id: str, *, verify_inclusion: bool = False) -> AgentEntry:
        """One agent, signatures checked; with ``verify_inclusion`` its registration is also proven to be in
        the registry's current (verified, consistent) log head, else :class:`UntrustworthyRecord`."""
        entry = verify_entry(await self._get_json(f"/v1/agents/{quote(agent_id)}"), require_jws=True)
        if verify_inclusion:
            await self._check_inclusion(entry)
        return entry

    async def _check_inclusion(self, entry: AgentEntry) -> None:
        if entry.log_index is None or entry.jws is None:
            raise UntrustworthyRecord(f"the registry gave no log index for the registration of {entry.id}")
        head = await self.log_head()
        leaf = leaf_hash(leaf_data("register", entry.id, entry.jws))
        body = await self._get_json("/v1/log/inclusion", {"index": str(entry.log_index), "size": str(head.size)})
        try:
            verify_inclusion(leaf, entry.log_index, head.size, _hashes(body.get("proof")), head.root)
        except InvalidProof as exc:
            raise UntrustworthyRecord(f"the registration of {entry.id} served is not in the log at index "
                                      f"{entry.log_index} of the head of size {head.size}: {exc}") from exc

    async def log_head(self) -> LogHead:
        """The registry's current signed tree head, verified and checked consistent with the last one seen."""
        async with self._head_lock:
            body = await self._get_json("/v1/log/head")
            key = self.registry_key or str(body.get("key", ""))
            if not is_did_key(key):
                raise UntrustworthyRecord("the log head names no Ed25519 did:key as its signer")
            try:
                checkpoint = verify_checkpoint(str(body.get("checkpoint", "")), origin=origin_for(key), signer=key)
            except InvalidCheckpoint as exc:
                raise UntrustworthyRecord(f"the log head does not verify under {key}: {exc}") from exc
            head = LogHead(checkpoint.origin, checkpoint.size, checkpoint.root, str(body["checkpoint"]))
            last = self.last_head
            if last is not None:
                await self._check_consistent(last, head)
            self.registry_key = key
            self.last_head = head
            return head

    async def _check_consistent(self, last: LogHead, head: LogHead) -> None:
        if head.size < last.size:
            raise LogForked(f"the log shrank from {last.size} to {head.size} leaves")
        proof: list[bytes] = []
        if last.size not in (0, head.size):
            body = await self._get_json("/v1/log/consistency", {"old": str(last.size), "new": str(head.size)})
            proof = _hashes(body.get("proof"))
        try:
            verify_consistency(last.size, head.size, last.root, head.root, proof)
        except InvalidProof as exc:
            raise LogForked(f"the head of size {head.size} does not extend the head of size {last.size} seen "
                            f"before: {exc}") from exc

    async def log_entries(self, start: int, end: int) -> list[dict[str, Any]]:
        """Raw log entries ``[start, end)`` (at most 256): each leaf's ``data`` re-verifies on its own."""
        body = await self._get_json("/v1/log/entries", {"start": str(start), "end": str(end)})
        entries: list[dict[str, Any]] = body["entries"]
        return entries

    async def reputation(self, agent_id: str, skill: str | None = None) -> ReputationReport:
        body = await self._get_json(f"/v1/agents/{quote(agent_id)}/reputation", {"skill": skill} if skill else None)
        low, high = body["interval"]
        return ReputationReport(agent=str(body["agent"]), skill=str(body["skill"]), score=float(body["score"]),
                                lower_bound=float(body["lower_bound"]), interval=(float(low), float(high)),
                                evidence=float(body["evidence"]), receipts=int(body["receipts"]),
                                log_size=int(body["log_size"]), raw=body)

    async def search(self, *, skill: str | None = None, q: str | None = None, org: str | None = None,
                     live: bool | None = None, limit: int = 20, cursor: str | None = None) -> SearchPage:
        params: dict[str, str] = {"limit": str(limit)}
        for name, value in (("skill", skill), ("q", q), ("org", org), ("cursor", cursor)):
            if value:
                params[name] = value
        if live is not None:
            params["live"] = "true" if live else "false"
        async with self.session.get(self._url("/v1/agents"), params=params) as response:
            body = await self._check(response)
        return SearchPage([verify_entry(entry, require_jws=False) for entry in body["agents"]], body["next"],
                          int(body.get("seq", 0)))

    async def watch(self, since: int = 0, *, reconnect_delay: float = 0.5) -> AsyncIterator[dict[str, Any]]:
        """Yield index changes in sequence order for ever, reconnecting and resuming after a drop."""
        last = since
        while True:
            try:
                async with self.session.ws_connect(self._url(f"/v1/watch?since={last}"), heartbeat=30.0) as ws:
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        change: dict[str, Any] = json.loads(message.data)
                        last = int(change["seq"])
                        yield change
            except (aiohttp.ClientError, ConnectionError):
                pass
            await asyncio.sleep(reconnect_delay)
