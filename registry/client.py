"""The async client for the registry API: the one way nodes and the CLI talk to a registry.

It signs writes with the caller's key, and it does not take the registry's word for what it serves: every
record it returns passed :func:`guildnet.protocols.records.verify_record` (the key in force rebuilt from the
agent's own key history, the registration signed by it, the organisation's endorsement of exactly these facts);
a search hit that fails is dropped and reported in :attr:`SearchPage.refused`, never returned. It also audits
the registry's transparency log: each signed tree head must verify under the registry key (pinned, or
remembered from the first head: trust on first use) and be consistent with the last head this client saw, and
``get(..., verify_inclusion=True)`` proves that the registration it returns is in that head. A registry that
rewrites its history, or shows one client a record it keeps out of the log, is caught here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from guildnet.protocols import bounded_json, signed_write
from guildnet.protocols.agentfacts import AgentFacts
from guildnet.protocols.did import is_did_key
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import (
    InvalidCheckpoint,
    InvalidProof,
    leaf_hash,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from guildnet.protocols.records import AgentEntry, UntrustworthyRecord, verify_record
from guildnet.protocols.transparency import leaf_data, origin_for
from guildnet.protocols.witness import WitnessError, WitnessPolicy, verify_witnessed

# The node may import this module alone of the registry package, and re-checks domain proofs itself: the look-up
# adapter the registry uses is re-exported here so that both use one (see registry/domain_lookup.py).
from .domain_lookup import DomainLookupSettings as DomainLookupSettings
from .domain_lookup import DomainResolver as DomainResolver
from .domain_lookup import parse_dns_server as parse_dns_server

JOSE = "application/jose"
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""The most a client reads of one reply: a search page of 100 records with their key histories fits many times."""
REPUTATION_BATCH = 64
NODE_HEARTBEAT_BATCH = 2048
"""Agents per node-level heartbeat: the registry's ``MAX_NODE_HEARTBEAT_AGENTS``."""
REGISTRATION_BATCH = 100
"""Registrations per ``POST /v1/registrations``: the registry's ``MAX_REGISTRATIONS``."""
REGISTRATION_BATCH_BYTES = 250_000
"""A batch's body is kept under the registry's 256 KiB limit on any write, with room for the JSON around it."""


@dataclass(frozen=True, slots=True)
class AgentRegistration:
    """One agent to register: its facts, the key in force that signs them, and for a first registration the
    inception key event that commits to its next key."""

    facts: AgentFacts
    key: SigningKey
    key_event: str | None = None


class RegistryError(Exception):
    """The registry refused a request (its problem+json is in ``status``, ``title``, ``detail``)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail


class NotARegistry(RegistryError):
    """An error answer that is not the registry API's problem+json: another server answers at that URL."""


class RegistryUnreachable(aiohttp.ClientOSError):
    """No answer from the registry's URL (nothing listens there, the network is down, the connection dropped).
    Both an :class:`OSError` and an :class:`aiohttp.ClientConnectionError`, as the error it replaces was: code
    that retries on either retries on this too."""

    def __init__(self, base_url: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach the registry at {base_url} ({type(cause).__name__}: {cause}); is it running, "
                         "and is this its URL?")
        self.base_url = base_url


NOT_A_REGISTRY = "is this the URL of a guildnet registry (not a node's)?"
"""Said of a reply that is not the registry API's: another server (often a node) answers at that URL."""


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
class Standing:
    """One agent's score for one skill, as ``GET /v1/reputation`` reports it (the registry's computation)."""

    score: float
    lower_bound: float
    evidence: float
    receipts: int


@dataclass(frozen=True, slots=True)
class SearchPage:
    agents: list[AgentEntry]
    next: str | None
    seq: int = 0
    """The registry's change-feed position when the page was read: watch from here to miss nothing."""
    refused: tuple[tuple[str, str], ...] = ()
    """(agent id as served, why) for each hit that did not verify and was dropped."""


def _standing(value: Any) -> Standing | None:
    if not isinstance(value, dict):
        return None
    try:
        score, lower, evidence = (float(value[name]) for name in ("score", "lower_bound", "evidence"))
        receipts = int(value["receipts"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (0.0 <= lower <= score <= 1.0 and evidence >= 0.0 and receipts >= 0):
        return None
    return Standing(score, lower, evidence, receipts)


def _hashes(values: Any) -> list[bytes]:
    if not isinstance(values, list):
        raise UntrustworthyRecord("a proof is a list of hex hashes")
    try:
        return [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise UntrustworthyRecord("a proof is a list of hex hashes") from exc


class HeadStore(Protocol):
    """Where a client keeps what it learnt of a registry's log across restarts (a node: its own database)."""

    async def load(self, registry: str) -> AuditState | None: ...

    async def save(self, registry: str, state: AuditState) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditState:
    """The last verified head of one registry's log, the key that signed it, and, once a fork was seen, why."""

    key: str
    head: LogHead
    forked: str | None = None


class RegistryClient:
    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None,
                 timeout: float = 10.0, registry_key: str | None = None, heads: HeadStore | None = None,
                 witnesses: WitnessPolicy | None = None) -> None:
        """``registry_key`` pins the did:key that must sign the log's heads; without it the first head's key
        is remembered (trust on first use) and every later head must be signed by the same key. With ``heads``,
        the last verified head (and a fork, once seen) survives restarts: a registry cannot roll a restarted
        node back to an earlier or different history. With ``witnesses``, a head counts only when at least their
        quorum cosigned it (C2SP cosignature/v1): a registry showing two clients two different trees cannot get
        both cosigned by honest witnesses."""
        if registry_key is not None and not is_did_key(registry_key):
            raise ValueError("registry_key must be an Ed25519 did:key")
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.registry_key = registry_key
        self.last_head: LogHead | None = None
        self.forked: str | None = None
        """Why this registry's log was found forked or rolled back; from then on every head is refused."""
        self.heads = heads
        self.witnesses = witnesses
        self._loaded = heads is None
        self._included: set[tuple[str, int, str]] = set()
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

    @contextlib.asynccontextmanager
    async def _request(self, method: str, path: str, **options: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request to the registry; a registry that does not answer is :class:`RegistryUnreachable`."""
        try:
            async with self.session.request(method, self._url(path), **options) as response:
                yield response
        except aiohttp.ClientConnectionError as exc:
            raise RegistryUnreachable(self.base_url, exc) from exc

    @staticmethod
    async def _check(response: aiohttp.ClientResponse) -> Any:
        """The reply's JSON (at most :data:`MAX_RESPONSE_BYTES`, nesting bounded), or :class:`RegistryError`: an
        error that is not the registry API's problem+json says so (another server answers at that URL)."""
        raw = await bounded_json.read_at_most(response.content, MAX_RESPONSE_BYTES + 1)
        if len(raw) > MAX_RESPONSE_BYTES:
            raise UntrustworthyRecord(f"the registry's reply is larger than the {MAX_RESPONSE_BYTES} bytes a client "
                                      "reads")
        text = raw.decode("utf-8", errors="replace")
        if response.status >= 400:
            try:
                if response.content_type != "application/problem+json":
                    raise ValueError("not problem+json")
                problem = bounded_json.loads(text)
                raise RegistryError(response.status, str(problem.get("title", "")), str(problem.get("detail", "")))
            except (ValueError, AttributeError):
                raise NotARegistry(response.status, response.reason or "",  # the status is said once, by status
                                    f"{response.url} answered, but not in the registry API's shape: "
                                    f"{NOT_A_REGISTRY}") from None
        try:
            return bounded_json.loads(text)
        except ValueError as exc:
            raise UntrustworthyRecord(f"the reply of {response.url} is not JSON ({exc}): {NOT_A_REGISTRY}") from exc

    async def _signed_post(self, path: str, key: SigningKey, body: Mapping[str, Any]) -> dict[str, Any]:
        token = signed_write.make(key, body)
        async with self._request("POST", path, data=token, headers={"Content-Type": JOSE}) as response:
            result: dict[str, Any] = await self._check(response)
            return result

    # -- writes -------------------------------------------------------------------------------------

    async def register(self, facts: AgentFacts, key: SigningKey, *, key_event: str | None = None) -> dict[str, Any]:
        """Register or update ``facts``, signed by the agent's key in force; a first registration may carry the
        agent's inception ``key_event`` (committing to its next key: the only way it can ever rotate)."""
        return await self._signed_post("/v1/agents", key, _registration(facts, key_event))

    async def register_many(self, registrations: Sequence[AgentRegistration]) -> list[dict[str, Any] | RegistryError]:
        """Register or update several agents with one request per :data:`REGISTRATION_BATCH` (fewer when their
        signed writes are large): each is signed by its own key and accepted or refused on its own, exactly as
        :meth:`register` would be. Returns each one's answer, or its refusal, in order; a batch the registry
        refused whole (over the address's budget, say) is that refusal for each of its agents, and the batches
        after it are still sent. A registry too old to take batches (its own 404 or 405, as problem+json) gets
        one request per agent; a server that is not a registry raises :class:`RegistryError`, as :meth:`register`
        does."""
        tokens = [signed_write.make(r.key, _registration(r.facts, r.key_event)) for r in registrations]
        answers: list[dict[str, Any] | RegistryError] = []
        one_by_one = False
        for batch in _batches(tokens):
            if not one_by_one:
                try:
                    answers += await self._register_batch(batch)
                    continue
                except _NoBatches:
                    one_by_one = True
                except NotARegistry:
                    raise
                except RegistryError as exc:
                    answers += [exc] * len(batch)
                    continue
            answers += [await self._register_token(token) for token in batch]
        return answers

    async def _register_batch(self, batch: list[str]) -> list[dict[str, Any] | RegistryError]:
        """One ``POST /v1/registrations``: each write's answer or refusal, in order."""
        async with self._request("POST", "/v1/registrations", json={"registrations": batch}) as response:
            if response.status in (404, 405) and response.content_type == "application/problem+json":
                raise _NoBatches
            results = (await self._check(response)).get("results")
        if not isinstance(results, list) or len(results) != len(batch):
            raise UntrustworthyRecord(f"the registry answered {len(batch)} registrations with something else")
        return [_batch_answer(result) for result in results]

    async def _register_token(self, token: str) -> dict[str, Any] | RegistryError:
        """One ``POST /v1/agents`` of an already signed registration: its answer (with its ``status``) or refusal."""
        async with self._request("POST", "/v1/agents", data=token, headers={"Content-Type": JOSE}) as response:
            try:
                answer: dict[str, Any] = await self._check(response)
            except RegistryError as exc:
                return exc
            return {"status": response.status, **answer}

    async def heartbeat(self, agent_id: str, key: SigningKey) -> dict[str, Any]:
        return await self._signed_post(f"/v1/agents/{quote(agent_id)}/heartbeat", key,
                                       {"action": "heartbeat", "agent": agent_id})

    async def node_heartbeat(self, agent_ids: Sequence[str], org_key: SigningKey) -> list[str]:
        """Keep ``agent_ids`` (all endorsed by ``org_key``) live with one write signed by the organisation key
        per :data:`NODE_HEARTBEAT_BATCH` of them. Returns the ids the registry did not keep live (unknown there,
        revoked, or of another organisation): register those again."""
        missing: list[str] = []
        for start in range(0, len(agent_ids), NODE_HEARTBEAT_BATCH):
            answer = await self._signed_post("/v1/heartbeats", org_key, {
                "action": "node_heartbeat", "agents": list(agent_ids[start:start + NODE_HEARTBEAT_BATCH])})
            missing += [str(a) for a in answer.get("missing") or []]
        return missing

    async def revoke(self, agent_id: str, key: SigningKey) -> dict[str, Any]:
        return await self._signed_post(f"/v1/agents/{quote(agent_id)}/revoke", key,
                                       {"action": "revoke", "agent": agent_id})

    async def rotate(self, agent_id: str, key: SigningKey, key_event: str, facts: AgentFacts,
                     new_key: SigningKey) -> dict[str, Any]:
        """Rotate ``agent_id`` from ``key`` (in force, which signs ``key_event``) to ``new_key``, re-registering
        ``facts`` (a higher version) signed by ``new_key`` in the same write."""
        registration = signed_write.make(new_key, _registration(facts, None))
        return await self._signed_post(f"/v1/agents/{quote(agent_id)}/rotate", key,
                                       {"action": "rotate", "agent": agent_id, "key_event": key_event,
                                        "registration": registration})

    async def withdraw(self, agent_id: str, org_key: SigningKey) -> dict[str, Any]:
        """Withdraw the organisation's endorsement of ``agent_id`` (signed by the organisation key): it is
        revoked at once, whatever its own key does."""
        return await self._signed_post(f"/v1/agents/{quote(agent_id)}/withdraw", org_key,
                                       {"action": "withdraw", "agent": agent_id})

    async def submit_receipt(self, receipt: str, key: SigningKey) -> dict[str, Any]:
        """Submit a caller-countersigned receipt; ``key`` is the caller's current key. Returns its log index."""
        return await self._signed_post("/v1/receipts", key, {"action": "receipt", "receipt": receipt})

    # -- reads --------------------------------------------------------------------------------------

    async def _get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        async with self._request("GET", path, params=params) as response:
            return await self._check(response)

    async def get(self, agent_id: str, *, verify_inclusion: bool = False) -> AgentEntry:
        """One agent, signatures checked; with ``verify_inclusion`` its registration is also proven to be in
        the registry's current (verified, consistent) log head, else :class:`UntrustworthyRecord`."""
        entry = verify_record(await self._get_json(f"/v1/agents/{quote(agent_id)}"))
        if verify_inclusion:
            await self._check_inclusion(entry)
        return entry

    async def check_inclusion(self, entry: AgentEntry) -> None:
        """Prove that the registration ``entry`` was served with is in the registry's log, under a head verified
        and consistent with every head seen before; else :class:`UntrustworthyRecord`. Proven once per record:
        the log only grows, so a later consistent head still holds it."""
        proven = (entry.id, entry.log_index or -1, entry.jws)
        if proven in self._included:
            return
        await self._check_inclusion(entry)
        self._included.add(proven)

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

    async def _load_audit(self) -> None:
        if self._loaded:
            return
        assert self.heads is not None
        state = await self.heads.load(self.base_url)
        if state is not None:
            if self.registry_key is not None and state.key != self.registry_key:
                raise UntrustworthyRecord(f"the pinned registry key {self.registry_key} is not the key {state.key} "
                                          f"whose heads this node verified before; remove the stored head to re-pin")
            self.registry_key = self.registry_key or state.key
            self.last_head, self.forked = state.head, state.forked
        self._loaded = True

    async def log_head(self) -> LogHead:
        """The registry's current signed tree head, verified and checked consistent with the last one seen (in
        this process, or persisted in ``heads``); with :attr:`witnesses`, also cosigned by at least their quorum
        (docs/witness.md), else :class:`UntrustworthyRecord` naming the witnesses missing. A head that is not
        consistent marks the registry forked for good (:attr:`forked`, persisted): from then on
        :class:`LogForked` is raised without asking it again."""
        async with self._head_lock:
            await self._load_audit()
            if self.forked is not None:
                raise LogForked(self.forked)
            body = await self._get_json("/v1/log/head")
            key = self.registry_key or str(body.get("key", ""))
            if not is_did_key(key):
                raise UntrustworthyRecord("the log head names no Ed25519 did:key as its signer")
            try:
                note = str(body.get("checkpoint", ""))
                checkpoint = (verify_checkpoint(note, origin=origin_for(key), signer=key) if self.witnesses is None
                              else verify_witnessed(note, log_key=key, policy=self.witnesses).checkpoint)
            except (InvalidCheckpoint, WitnessError) as exc:
                raise UntrustworthyRecord(f"the log head does not verify under {key}: {exc}") from exc
            head = LogHead(checkpoint.origin, checkpoint.size, checkpoint.root, str(body["checkpoint"]))
            last = self.last_head
            if last is not None:
                try:
                    await self._check_consistent(last, head)
                except LogForked as exc:
                    self.forked = str(exc)
                    if self.heads is not None:
                        await self.heads.save(self.base_url, AuditState(key, last, self.forked))
                    raise
            self.registry_key = key
            if last is None or head.size > last.size:
                self.last_head = head
                if self.heads is not None:
                    await self.heads.save(self.base_url, AuditState(key, head))
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

    async def reputations(self, agent_ids: Sequence[str], skill: str | None = None) -> dict[str, Standing]:
        """Many agents' scores for ``skill``, 64 per request; an agent the reply omits or garbles is left out."""
        standings: dict[str, Standing] = {}
        ids = list(dict.fromkeys(agent_ids))
        for start in range(0, len(ids), REPUTATION_BATCH):
            params = [("agent", agent) for agent in ids[start:start + REPUTATION_BATCH]]
            if skill:
                params.append(("skill", skill))
            async with self._request("GET", "/v1/reputation", params=params) as response:
                body = await self._check(response)
            agents = body.get("agents") if isinstance(body, dict) else None
            for agent in ids[start:start + REPUTATION_BATCH]:
                standing = _standing(agents.get(agent) if isinstance(agents, dict) else None)
                if standing is not None:
                    standings[agent] = standing
        return standings

    async def search(self, *, skill: str | None = None, q: str | None = None, org: str | None = None,
                     live: bool | None = None, limit: int = 20, cursor: str | None = None,
                     match: str | None = None) -> SearchPage:
        """One page of agents; ``q`` matches by words and meaning fused, or by ``match`` ("words", "meaning")."""
        params: dict[str, str] = {"limit": str(limit)}
        for name, value in (("skill", skill), ("q", q), ("org", org), ("cursor", cursor), ("match", match)):
            if value:
                params[name] = value
        if live is not None:
            params["live"] = "true" if live else "false"
        async with self._request("GET", "/v1/agents", params=params) as response:
            body = await self._check(response)
        agents, refused = [], []
        for hit in body["agents"]:
            try:
                agents.append(verify_record(hit))
            except UntrustworthyRecord as exc:
                refused.append((str(hit.get("id", "?")) if isinstance(hit, dict) else "?", str(exc)))
        return SearchPage(agents, body["next"], int(body.get("seq", 0)), tuple(refused))

    async def watch(self, since: int = 0, *, reconnect_delay: float = 0.5,
                    on_drop: Callable[[Exception], None] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield index changes in sequence order for ever, reconnecting and resuming after a drop (each drop is
        told to ``on_drop``). A message that is not a change raises (the caller decides whether to resume)."""
        last = since
        while True:
            dropped: Exception
            try:
                async with self.session.ws_connect(self._url(f"/v1/watch?since={last}"), heartbeat=30.0) as ws:
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        change: dict[str, Any] = bounded_json.loads(message.data)
                        last = int(change["seq"])
                        yield change
                dropped = ConnectionResetError("the registry closed the change stream")
            except (aiohttp.ClientError, ConnectionError) as exc:
                dropped = exc
            if on_drop is not None:
                on_drop(dropped)
            await asyncio.sleep(reconnect_delay)


class _NoBatches(Exception):
    """The registry answered that it has no ``/v1/registrations`` (an older release)."""


def _batches(tokens: Sequence[str]) -> list[list[str]]:
    """Consecutive runs of signed writes, each within the registry's count and size limits for one batch."""
    batches: list[list[str]] = []
    size = 0
    for token in tokens:
        if not batches or len(batches[-1]) == REGISTRATION_BATCH or size + len(token) > REGISTRATION_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(token)
        size += len(token) + 4  # its quotes and the ", " after it
    return batches


def _batch_answer(result: Any) -> dict[str, Any] | RegistryError:
    """One item of a batch's answer: the write's result (with its ``status``) or its problem as an error."""
    if not isinstance(result, dict) or not isinstance(result.get("status"), int):
        raise UntrustworthyRecord("an item of the registry's answer to a batch has no status")
    if result["status"] >= 400:
        return RegistryError(result["status"], str(result.get("title", "")), str(result.get("detail", "")))
    return result


def _registration(facts: AgentFacts, key_event: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"action": "register", "facts": facts.to_json()}
    if key_event is not None:
        body["key_event"] = key_event
    return body


__all__ = ["AgentEntry", "AgentRegistration", "AuditState", "HeadStore", "LogForked", "LogHead", "RegistryClient",
           "RegistryError", "RegistryUnreachable", "ReputationReport", "SearchPage", "UntrustworthyRecord"]
