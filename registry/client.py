"""The async client for the registry API: the one way nodes and the CLI talk to a registry.

It signs writes with the caller's key, and it does not take the registry's word for what it serves:
every AgentFacts it returns has had its agent signature and organisation endorsement checked.
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
from guildnet.protocols.keys import SigningKey

JOSE = "application/jose"


class RegistryError(Exception):
    """The registry refused a request (its problem+json is in ``status``, ``title``, ``detail``)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail


class UntrustworthyRecord(Exception):
    """The registry served facts whose signature or endorsement does not verify."""


@dataclass(frozen=True, slots=True)
class AgentEntry:
    facts: AgentFacts
    live: bool
    last_seen: float
    revoked: bool
    current_key: str
    version: int
    jws: str | None

    @property
    def id(self) -> str:
        return str(self.facts.id)


@dataclass(frozen=True, slots=True)
class SearchPage:
    agents: list[AgentEntry]
    next: str | None
    seq: int = 0
    """The registry's change-feed position when the page was read: watch from here to miss nothing."""


def _verify_entry(body: Mapping[str, Any], *, require_jws: bool) -> AgentEntry:
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
                      version=int(body.get("version", facts.version)), jws=token)


class RegistryClient:
    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

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

    # -- reads --------------------------------------------------------------------------------------

    async def get(self, agent_id: str) -> AgentEntry:
        async with self.session.get(self._url(f"/v1/agents/{quote(agent_id)}")) as response:
            return _verify_entry(await self._check(response), require_jws=True)

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
        return SearchPage([_verify_entry(entry, require_jws=False) for entry in body["agents"]], body["next"],
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
