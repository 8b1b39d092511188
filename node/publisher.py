"""Keeps a node's agents registered and live in a registry: signed AgentFacts, heartbeats, retirement.

The registry is reached only through :class:`guildnet.registry.client.RegistryClient` (HTTP). A registry
that is down never stops the node from serving: registration and heartbeats retry with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from guildnet.protocols.agentfacts import ENDORSEMENT_LIFETIME, AgentFacts, endorse
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import AgentRegistration, RegistryClient, RegistryError

from .agent import Agent
from .identity import AgentIdentity, IdentityError, StaticIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedAgent:
    agent: Agent
    identity: AgentIdentity | StaticIdentity
    ttl_seconds: int = 60


def build_facts(published: PublishedAgent, *, org_key: SigningKey, org_name: str, base_url: str,
                version: int, org_domain: str | None = None) -> AgentFacts:
    agent = published.agent
    return AgentFacts.model_validate(endorse(org_key, {
        "id": published.identity.id,
        "name": agent.name,
        "organisation": {"id": org_key.did, "name": org_name, **({"domain": org_domain} if org_domain else {})},
        "description": agent.description,
        "version": version,
        "endpoints": {"a2a": f"{base_url}/agents/{agent.name}/a2a", "mcp": f"{base_url}/mcp"},
        "skills": [skill.model_dump() for skill in agent.skills],
        "model": agent.model.model_dump() if agent.model else None,
        "ttl_seconds": published.ttl_seconds,
    }))


class RegistrationsRefused(RegistryError):
    """The registry refused some of a node's agents (the others are registered)."""


class Publisher:
    """Registers every agent at start, heartbeats at a third of its TTL, rotates keys, revokes on retire."""

    def __init__(self, registry_url: str, agents: Sequence[PublishedAgent], *, org_key: SigningKey, org_name: str,
                 base_url: str, org_domain: str | None = None,
                 renew_after: float = ENDORSEMENT_LIFETIME / 3) -> None:
        self.client = RegistryClient(registry_url)
        self.agents = list(agents)
        self.org_key = org_key
        self.org_name = org_name
        self.base_url = base_url
        self.org_domain = org_domain
        # Versions must grow across restarts without local state: the start time in seconds does.
        self.version = int(time.time())
        self.registered: set[str] = set()
        self.renew_after = renew_after
        """Seconds after which every agent is registered again, with a fresh endorsement (it expires after
        ENDORSEMENT_LIFETIME: a node that runs for months keeps its agents endorsed)."""
        self._endorsed_at = -math.inf
        self._unsettled = False
        """The last round of registrations ended without an answer for every agent it sent."""
        self._task: asyncio.Task[None] | None = None
        self._trouble: str | None = None
        """What went wrong with the registry last (logged once, until it changes or the registry answers again)."""

    def facts(self, published: PublishedAgent) -> AgentFacts:
        return build_facts(published, org_key=self.org_key, org_name=self.org_name, base_url=self.base_url,
                           version=self.version, org_domain=self.org_domain)

    def _next_version(self) -> None:
        self.version = max(self.version + 1, int(time.time()))

    async def register_all(self) -> None:
        """Register every agent not registered yet, in batches (one request per hundred agents).

        Agents the registry refused stay unregistered: once the others are in, :class:`RegistrationsRefused`
        names the first of them and how many there were (the retry loop says each kind of trouble once, keeps
        the registered agents live, and tries the refused ones again). A round that did not end in an answer
        for every agent (the connection lost mid-way) may have stored some of them, so the next round sends a
        higher version: the same version again would be refused as not newer."""
        if self._unsettled:
            self._next_version()
        for published in self.agents:
            identity = published.identity
            if isinstance(identity, AgentIdentity) and identity.pending is not None:
                await self._settle_pending(identity)
        unregistered = [p for p in self.agents if p.identity.id not in self.registered]
        self._unsettled = True
        answers = await self.client.register_many([
            AgentRegistration(self.facts(p), p.identity.key,
                              p.identity.inception if isinstance(p.identity, AgentIdentity) else None)
            for p in unregistered])
        self._unsettled = False
        refused: list[tuple[str, RegistryError]] = []
        for published, answer in zip(unregistered, answers, strict=True):
            if isinstance(answer, RegistryError):
                refused.append((published.agent.name, answer))
                continue
            self.registered.add(published.identity.id)
            self._endorsed_at = time.monotonic()
            log.info("registered %s as %s", published.agent.name, published.identity.id)
            mark = answer.get("domain")
            if isinstance(mark, dict) and mark.get("status") != "verified":
                log.warning("the registry did not verify the domain %s: %s", self.org_domain, mark.get("detail"))
        if refused:
            name, first = refused[0]
            more = f" (and {len(refused) - 1} more of this node's agents)" if len(refused) > 1 else ""
            raise RegistrationsRefused(first.status, first.title, f"agent {name}: {first.detail}{more}")

    async def rotate(self, name: str) -> str:
        """Rotate the agent ``name`` to its committed next key; return the new key's did:key.

        The rotation is written down first (a crash leaves it pending, settled at the next start), then sent with
        the facts re-registered under the new key; the node signs with the new key from the moment the registry
        accepted it."""
        published = next((p for p in self.agents if p.agent.name == name), None)
        if published is None:
            raise ValueError(f"this node has no agent named {name!r}")
        identity = published.identity
        if not isinstance(identity, AgentIdentity):
            raise IdentityError(f"agent {name} has a fixed key; it cannot rotate")
        pending = identity.begin_rotation()
        self._next_version()
        facts = self.facts(published)  # the same id; the new key signs this registration
        try:
            await self.client.rotate(identity.id, identity.key, pending.event, facts, pending.new_key)
        except RegistryError as exc:
            if exc.status < 500:
                identity.abandon_rotation()
            raise
        identity.complete_rotation()
        log.info("agent %s rotated to key %s (rotation %d)", name, identity.key.did, identity.state.seq)
        return identity.key.did

    async def _settle_pending(self, identity: AgentIdentity) -> None:
        """A rotation left pending by a crash: complete it if the registry took it, else forget it."""
        assert identity.pending is not None
        try:
            entry = await self.client.get(identity.id)
        except RegistryError as exc:
            if exc.status == 404:
                identity.abandon_rotation()
                return
            raise
        if identity.pending.event in entry.key_events:
            identity.complete_rotation()
            log.info("completed the rotation of %s the registry had accepted before a restart", identity.id)
        else:
            identity.abandon_rotation()

    async def heartbeat(self) -> None:
        """Keep every agent live: a node-level heartbeat signed by the organisation key (liveness costs the
        registry one signature per node, not per agent), or the agent's own heartbeat when the node publishes a
        single agent. An agent the registry lost is registered again on the next round."""
        if len(self.agents) == 1:
            identity = self.agents[0].identity
            try:
                await self.client.heartbeat(identity.id, identity.key)
            except RegistryError as exc:
                if exc.status != 404:
                    raise
                self.registered.discard(identity.id)
            return
        missing = await self.client.node_heartbeat([p.identity.id for p in self.agents], self.org_key)
        self.registered.difference_update(missing)

    async def _keep_alive(self) -> None:
        delay = 1.0
        while True:
            try:
                if time.monotonic() - self._endorsed_at >= self.renew_after:
                    self._next_version()
                    self.registered.clear()  # every agent again, with a fresh endorsement
                refused: RegistrationsRefused | None = None
                if len(self.registered) < len(self.agents):
                    try:
                        await self.register_all()
                    except RegistrationsRefused as exc:
                        refused = exc  # the agents that are registered are kept live all the same
                await self.heartbeat()
                if refused is not None:
                    raise refused
                delay = 1.0
                if self._trouble is not None:
                    log.info("the registry at %s answers again: every agent is registered and live",
                             self.client.base_url)
                    self._trouble = None
                await asyncio.sleep(max(1.0, min(p.ttl_seconds for p in self.agents) / 3))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                trouble = (f"the registry refused: {exc.status} {exc.title}: {exc.detail}"
                           if isinstance(exc, RegistryError) else f"{type(exc).__name__}: {exc}")
                if trouble != self._trouble:  # once per kind of trouble, not once per retry
                    log.warning("%s; the agents are not findable until it is fixed (retrying with back-off, at "
                                "most every 30 s)", trouble)
                    self._trouble = trouble
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_alive(), name="guildnet-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    async def retire(self) -> list[str]:
        """Revoke every agent of this node; return the ids revoked."""
        revoked = []
        for published in self.agents:
            identity = published.identity
            try:
                await self.client.revoke(identity.id, identity.key)
                revoked.append(identity.id)
            except RegistryError as exc:
                if exc.status not in (404, 409):
                    raise
        return revoked
