"""The node: one aiohttp application that serves an organisation's agents as A2A peers and MCP tools.

It owns one organisation key and one key per agent, keeps its tasks in its own SQL store, and, when a
registry is configured, keeps the agents' signed AgentFacts registered and live there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import text

from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import DomainLookupSettings, DomainResolver, RegistryClient

from .a2a.client import A2AClient
from .a2a.service import A2AService
from .a2a.store import open_task_store
from .agent import Agent
from .config import NodeConfig, load_agent, scrubber_for
from .db import migrate
from .delegation.delegator import DelegationFailed, DelegationResult, Delegator
from .delegation.discovery import PeerIndex
from .delegation.domains import DomainVerifier
from .delegation.ranking import Preference
from .flywheel.process_log import ProcessLog
from .flywheel.process_log import create_engine as create_process_engine
from .flywheel.recording import RecordedAgent
from .mcp.server import setup_mcp
from .metrics import MeteredProcessLog, MeteredTaskStore, NodeMetrics
from .pii import Scrubber
from .publisher import PublishedAgent, Publisher
from .slm.agent import SLMAgent

log = logging.getLogger(__name__)
PROCESS_LOG = web.AppKey("process_log", ProcessLog)
PUBLISHER = web.AppKey("publisher", Publisher)
READY_TIMEOUT = 2.0


def _version() -> str:
    try:
        return version("guildnet")
    except PackageNotFoundError:
        return "0"


@dataclass
class Node:
    """Everything a node serves; build it from a :class:`NodeConfig` or directly from Python."""

    org_name: str
    org_key: SigningKey
    agents: Sequence[PublishedAgent]
    base_url: str
    db_url: str = "sqlite+aiosqlite:///guildnet-node.db"
    registry_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 9100
    scrubber: Scrubber = field(default_factory=Scrubber)
    retention_days: int = 30
    org_domain: str | None = None
    """The domain the organisation claims in its agents' facts (proven by DNS or HTTPS: docs/domains.md)."""
    require_verified_domain: bool = False
    domain_lookup: DomainLookupSettings = field(default_factory=DomainLookupSettings)
    metrics: NodeMetrics = field(default_factory=NodeMetrics, repr=False)
    _delegator: Delegator | None = field(default=None, repr=False)
    _process_log: ProcessLog | None = field(default=None, repr=False)
    _owns_process_log: bool = field(default=False, repr=False)

    @classmethod
    def from_config(cls, config: NodeConfig) -> Node:
        published = [PublishedAgent(load_agent(entry.agent, config.base_dir), keyfile.load_or_create(entry.key),
                                    entry.ttl_seconds) for entry in config.agents]
        names = [p.agent.name for p in published]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be unique within a node: {names}")
        return cls(org_name=config.org_name, org_key=keyfile.load_or_create(config.org_key), agents=published,
                   base_url=config.base_url, db_url=config.db, registry_url=config.registry, host=config.host,
                   port=config.port, scrubber=scrubber_for(config), retention_days=config.retention_days,
                   org_domain=config.org_domain, require_verified_domain=config.require_verified_domain,
                   domain_lookup=config.domain_lookup)

    async def delegator(self, *, as_agent: str | None = None) -> Delegator:
        """The node's delegator (created on first use): its calls are made as ``as_agent`` (default: the
        first agent), whose DID is the caller named in receipts."""
        if self._delegator is None:
            if not self.registry_url:
                raise ValueError("delegation needs a registry: set [node] registry in the config")
            caller = next((p for p in self.agents if as_agent in (None, p.agent.name)), None)
            if caller is None:
                raise ValueError(f"this node has no agent named {as_agent!r}")
            if self._process_log is None:  # delegating without serving (the CLI): still process data
                self._process_log = await ProcessLog.open(self.db_url, self.scrubber,
                                                          retention_days=self.retention_days)
                self._owns_process_log = True
            registry = RegistryClient(self.registry_url)
            self._delegator = Delegator(registry, PeerIndex(registry), A2AClient(), caller.key, self.org_key.did,
                                        recorder=self._process_log.record,
                                        domains=DomainVerifier(DomainResolver(self.domain_lookup)),
                                        require_verified_domain=self.require_verified_domain)
        return self._delegator

    async def delegate(self, skill: str, arguments: Mapping[str, Any], *, deadline: float = 30.0,
                       budget: float | None = None, min_reputation: float = 0.5, prefer: Preference = "cost",
                       traceparent: str | None = None, require_verified_domain: bool | None = None
                       ) -> DelegationResult:
        """Delegate ``skill`` to the best peer of another organisation (see :mod:`guildnet.node.delegation`)."""
        delegator = await self.delegator()
        try:
            result = await delegator.delegate(skill, arguments, deadline=deadline, budget=budget,
                                              min_reputation=min_reputation, prefer=prefer, traceparent=traceparent,
                                              require_verified_domain=require_verified_domain)
        except DelegationFailed as exc:
            self.metrics.delegated("failed", (a.outcome for a in exc.attempts))
            raise
        self.metrics.delegated("success", (a.outcome for a in result.attempts))
        return result

    async def close(self) -> None:
        """Release the delegation clients (waits for receipts still being submitted)."""
        if self._delegator is not None:
            await self._delegator.flush()
            await self._delegator.index.close()
            await self._delegator.a2a.close()
            await self._delegator.registry.close()
            if self._delegator.domains is not None:
                await self._delegator.domains.close()
            self._delegator = None
        if self._owns_process_log and self._process_log is not None:
            await self._process_log.close()
            self._process_log, self._owns_process_log = None, False

    @property
    def agent_list(self) -> list[Agent]:
        return [p.agent for p in self.agents]

    def publisher(self) -> Publisher | None:
        if not self.registry_url:
            return None
        return Publisher(self.registry_url, self.agents, org_key=self.org_key, org_name=self.org_name,
                         base_url=self.base_url, org_domain=self.org_domain)

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """Host names MCP clients may use: loopback, the bind address and the public URL's host."""
        public = urlsplit(self.base_url).hostname
        return tuple(dict.fromkeys(h for h in ("127.0.0.1", "localhost", self.host, public) if h))

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.metrics.middleware()], client_max_size=4 * 1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        process_log = MeteredProcessLog(create_process_engine(self.db_url), self.scrubber, self.metrics,
                                        retention_days=self.retention_days)
        app[PROCESS_LOG] = process_log
        self._process_log = process_log
        app.cleanup_ctx.append(self._process_log_lifespan)
        self._wire_model_agents(process_log)
        setup_mcp(app, [RecordedAgent(agent, process_log, "mcp") for agent in self.agent_list],
                  allowed_hosts=self.allowed_hosts, name=f"guildnet-{self.org_name}", version=_version())
        a2a = A2AService([RecordedAgent(agent, process_log, "a2a") for agent in self.agent_list],
                         MeteredTaskStore(open_task_store(self.db_url), self.metrics), self.base_url,
                         {p.agent.name: p.key for p in self.agents}, version=_version(),
                         provider=(self.org_name, self.base_url))
        a2a.add_routes(app)
        app.cleanup_ctx.append(self._publishing)
        return app

    def _wire_model_agents(self, process_log: ProcessLog) -> None:
        """Model-backed agents record their model calls in the node's process log and, with a registry,
        escalate past their last model tier to a peer found by delegation."""
        for agent in self.agent_list:
            if isinstance(agent, SLMAgent):
                if agent.recorder is None:
                    agent.recorder = process_log.record
                if agent.peer_fallback is None and self.registry_url:
                    agent.peer_fallback = self._peer_fallback

    async def _peer_fallback(self, skill: str, arguments: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
        return (await self.delegate(skill, arguments, traceparent=traceparent)).output

    async def _process_log_lifespan(self, app: web.Application) -> AsyncIterator[None]:
        process_log = app[PROCESS_LOG]
        await migrate(process_log.engine)
        await process_log.purge()
        try:
            yield
        finally:
            await process_log.close()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "agents": [p.agent.name for p in self.agents]})

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready: the node's database answers and, with a registry, every agent is registered there (so peers
        can find it). 503 with the reason otherwise; ``/healthz`` only says the process is alive."""
        try:
            async with asyncio.timeout(READY_TIMEOUT), request.app[PROCESS_LOG].engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            reason = f"no answer within {READY_TIMEOUT:.0f} s" if isinstance(exc, TimeoutError) else type(exc).__name__
            return web.json_response({"status": "not ready", "reason": f"database unreachable: {reason}"},
                                     status=503)
        publisher = request.app.get(PUBLISHER)
        if publisher is not None:
            waiting = [p.agent.name for p in self.agents if p.key.did not in publisher.registered]
            if waiting:
                return web.json_response({"status": "not ready", "reason": f"not yet registered in "
                                          f"{self.registry_url}: {', '.join(waiting)}"}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return self.metrics.response()

    async def _publishing(self, app: web.Application) -> AsyncIterator[None]:
        publisher = self.publisher()
        if publisher is not None:
            app[PUBLISHER] = publisher
            await publisher.start()
        try:
            yield
        finally:
            if publisher is not None:
                with contextlib.suppress(Exception):
                    await publisher.stop()
