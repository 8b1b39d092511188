"""The node: one aiohttp application that serves an organisation's agents as A2A peers and MCP tools.

It owns one organisation key and one key per agent, keeps its tasks in its own SQL store, and, when a
registry is configured, keeps the agents' signed AgentFacts registered and live there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy import text

from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.witness import WitnessPolicy
from guildnet.registry.client import (
    DomainLookupSettings,
    DomainResolver,
    LogForked,
    RegistryClient,
    RegistryError,
)

from .a2a.client import A2AClient
from .a2a.push import PushService
from .a2a.push_store import InMemoryPushStore, SqlPushStore
from .a2a.service import A2AService
from .a2a.store import SqlTaskStore, TaskStore, open_task_store
from .admin import admin_app
from .agent import Agent
from .callers import AnonymousPolicy, Authenticator, Unauthenticated
from .config import NodeConfig, load_agent, scrubber_for
from .db import migrate
from .delegation.delegator import DelegationFailed, DelegationResult, Delegator, ProgressHandler
from .delegation.discovery import PeerIndex
from .delegation.domains import DomainVerifier
from .delegation.heads import SqlHeadStore
from .delegation.outbox import ReceiptOutbox
from .delegation.push_wait import PushInbox
from .delegation.ranking import Preference
from .delegation.schemas import SchemaPins
from .flywheel.process_log import ProcessLog
from .flywheel.process_log import create_engine as create_process_engine
from .flywheel.recording import RecordedAgent
from .identity import AgentIdentity
from .mcp.server import AgentTools, setup_mcp
from .metrics import MeteredProcessLog, MeteredTaskStore, NodeMetrics
from .pii import Scrubber
from .publisher import PublishedAgent, Publisher
from .slm.agent import SLMAgent

log = logging.getLogger(__name__)
PROCESS_LOG = web.AppKey("process_log", ProcessLog)
TASKS = web.AppKey("tasks", TaskStore)
RETENTION_INTERVAL = 3600.0
PROCESS_DATA_PENDING = 4096
"""Calls a serving node records in the background before a new call waits for the writer."""
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
    task_retention_days: float = 7.0
    """Finished A2A tasks (their callers' raw inputs and outputs) are deleted this long after their last update."""
    org_domain: str | None = None
    """The domain the organisation claims in its agents' facts (proven by DNS or HTTPS: docs/domains.md)."""
    require_verified_domain: bool = False
    domain_lookup: DomainLookupSettings = field(default_factory=DomainLookupSettings)
    metrics: NodeMetrics = field(default_factory=NodeMetrics, repr=False)
    _delegator: Delegator | None = field(default=None, repr=False)
    _process_log: ProcessLog | None = field(default=None, repr=False)
    _owns_process_log: bool = field(default=False, repr=False)
    registry_key: str | None = None
    """The registry's log key, pinned (see :class:`~guildnet.node.config.NodeConfig`)."""
    witnesses: WitnessPolicy | None = None
    """The witnesses, and their quorum, every head of the registry's log must be cosigned by."""
    anonymous: AnonymousPolicy = "loopback"
    """Who may call without signing (see :mod:`guildnet.node.callers`)."""
    audit_interval: float = 30.0
    """Seconds between checks of the registry's log head (consistency with every head seen before)."""
    pinned_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The output schema this node holds each delegated skill to, by skill id (see
    :mod:`guildnet.node.delegation.schemas`); skills not named here use this node's own schema, or the first seen."""
    admin_socket: Path | None = None
    """A Unix socket (mode 0600) where the node takes local commands (``guildnet node rotate``); None: none."""
    grpc_port: int | None = None
    """Serve the A2A gRPC binding on this port too (the ``grpc`` extra)."""
    push_notifications: bool = True
    """Callers may register webhooks for their tasks (:mod:`guildnet.node.a2a.push`)."""
    push_allow_networks: Sequence[str] = ()
    """Private networks webhooks may point into anyway (CIDR); refused by default."""
    extended_card: bool = False
    delegation_push_after: float = 120.0
    """Delegations with a longer deadline (seconds) ask the peer to push (:mod:`guildnet.node.delegation.push_wait`)."""
    _push: PushService | None = field(default=None, repr=False)
    _inbox: PushInbox | None = field(default=None, repr=False)
    _publisher: Publisher | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: NodeConfig) -> Node:
        published = [PublishedAgent(load_agent(entry.agent, config.base_dir),
                                    AgentIdentity.load_or_create(entry.key), entry.ttl_seconds)
                     for entry in config.agents]
        names = [p.agent.name for p in published]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be unique within a node: {names}")
        return cls(org_name=config.org_name, org_key=keyfile.load_or_create(config.org_key), agents=published,
                   base_url=config.base_url, db_url=config.db, registry_url=config.registry, host=config.host,
                   port=config.port, scrubber=scrubber_for(config), retention_days=config.retention_days,
                   task_retention_days=config.task_retention_days,
                   admin_socket=config.admin_socket, registry_key=config.registry_key,
                   witnesses=config.witness_policy(), anonymous=config.anonymous,
                   pinned_schemas=config.read_pinned_schemas(), org_domain=config.org_domain,
                   require_verified_domain=config.require_verified_domain, domain_lookup=config.domain_lookup,
                   grpc_port=config.grpc_port, push_notifications=config.push_notifications,
                   push_allow_networks=tuple(config.push_allow_networks), extended_card=config.extended_card,
                   delegation_push_after=config.delegation_push_after)

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
            registry = RegistryClient(self.registry_url, registry_key=self.registry_key,
                                      heads=SqlHeadStore(self._process_log.engine), witnesses=self.witnesses)
            index = PeerIndex(registry, on_refused=self.metrics.record_refused,
                              on_stream_failure=self.metrics.watch_failed)
            own = {skill.id: skill.output_schema for agent in self.agent_list for skill in agent.skills}
            pins = SchemaPins(self._process_log.engine, configured=self.pinned_schemas, own=own,
                              on_mismatch=self.metrics.schema_mismatch)
            self._delegator = Delegator(registry, index, A2AClient(signer=caller.identity), caller.identity,
                                        self.org_key.did, recorder=self._process_log.record, pins=pins,
                                        domains=DomainVerifier(DomainResolver(self.domain_lookup)),
                                        require_verified_domain=self.require_verified_domain,
                                        outbox=ReceiptOutbox(registry, self._process_log.engine),
                                        inbox=self._inbox, push_after=self.delegation_push_after)
        return self._delegator

    async def delegate(self, skill: str, arguments: Mapping[str, Any], *, deadline: float = 30.0,
                       budget: float | None = None, min_reputation: float = 0.5, prefer: Preference = "cost",
                       traceparent: str | None = None, require_verified_domain: bool | None = None,
                       on_progress: ProgressHandler | None = None, push: bool | None = None) -> DelegationResult:
        """Delegate ``skill`` to the best peer of another organisation (see :mod:`guildnet.node.delegation`)."""
        delegator = await self.delegator()
        try:
            result = await delegator.delegate(skill, arguments, deadline=deadline, budget=budget,
                                              min_reputation=min_reputation, prefer=prefer, traceparent=traceparent,
                                              require_verified_domain=require_verified_domain,
                                              on_progress=on_progress, push=push)
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

    def describe(self) -> dict[str, Any]:
        """What this node serves, for people and scripts: its organisation, each agent (id, skills, the MCP tool
        name of each skill, its A2A endpoint and card), which agent the root card is, and the node's endpoints."""
        tools: dict[str, dict[str, str]] = {}
        for tool in AgentTools(self.agent_list).tools:
            meta = tool.meta or {}
            tools.setdefault(str(meta.get("guildnet/agent")), {})[str(meta.get("guildnet/skill"))] = tool.name
        return {
            "organisation": {"name": self.org_name, "id": self.org_key.did},
            "agents": [{"name": p.agent.name, "id": p.identity.id, "description": p.agent.description,
                        "skills": [{"id": skill.id, "mcp_tool": tools.get(p.agent.name, {}).get(skill.id)}
                                   for skill in p.agent.skills],
                        "a2a": f"{self.base_url}/agents/{p.agent.name}/a2a",
                        "card": f"{self.base_url}/agents/{p.agent.name}/.well-known/agent-card.json"}
                       for p in self.agents],
            "root_card": {"agent": self.agents[0].agent.name, "url": f"{self.base_url}/.well-known/agent-card.json"},
            "endpoints": {"mcp": f"{self.base_url}/mcp", "healthz": f"{self.base_url}/healthz",
                          "readyz": f"{self.base_url}/readyz", "metrics": f"{self.base_url}/metrics"},
            "registry": self.registry_url,
        }

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.metrics.middleware()], client_max_size=4 * 1024 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        process_log = MeteredProcessLog(create_process_engine(self.db_url), self.scrubber, self.metrics,
                                        retention_days=self.retention_days, pending=PROCESS_DATA_PENDING)
        app[PROCESS_LOG] = process_log
        self._process_log = process_log
        app.cleanup_ctx.append(self._process_log_lifespan)
        self._wire_model_agents(process_log)
        authenticator = Authenticator(self.base_url, anonymous=self.anonymous,
                                      keys=self._key_in_force if self.registry_url else None)
        inner = open_task_store(self.db_url)
        tasks = app[TASKS] = MeteredTaskStore(inner, self.metrics)
        setup_mcp(app, [RecordedAgent(agent, process_log, "mcp") for agent in self.agent_list],
                  allowed_hosts=self.allowed_hosts, name=f"guildnet-{self.org_name}", version=_version(),
                  authenticator=authenticator, task_store=tasks,  # MCP tasks are the A2A service's tasks
                  task_ttl_ms=int(self.task_retention_days * 86_400_000))
        identities = {p.agent.name: p.identity for p in self.agents}
        push = None
        if self.push_notifications:  # webhooks live beside the tasks: the same database
            store = SqlPushStore(inner.engine) if isinstance(inner, SqlTaskStore) else InMemoryPushStore()
            push = self._push = PushService(store, identities, allow_networks=[
                ipaddress.ip_network(n, strict=False) for n in self.push_allow_networks])
        grpc_url = f"{urlsplit(self.base_url).hostname}:{self.grpc_port}" if self.grpc_port else None
        a2a = A2AService([RecordedAgent(agent, process_log, "a2a") for agent in self.agent_list], tasks, self.base_url,
                         identities, version=_version(), provider=(self.org_name, self.base_url),
                         authenticator=authenticator, push=push, grpc_url=grpc_url, extended_card=self.extended_card)
        a2a.add_routes(app)
        self._inbox = PushInbox(self.base_url)  # the webhook for the long tasks this node delegates
        self._inbox.add_routes(app)
        if self._delegator is not None:
            self._delegator.inbox = self._inbox
        if self.grpc_port:
            app.cleanup_ctx.append(functools.partial(self._grpc, a2a))
        app.cleanup_ctx.append(self._publishing)
        if self.admin_socket is not None:
            app.cleanup_ctx.append(self._admin)
        return app

    async def _grpc(self, a2a: A2AService, _app: web.Application) -> AsyncIterator[None]:
        """The gRPC binding on its own port, over the same agents and task store, for the app's lifetime."""
        assert self.grpc_port is not None
        binding = a2a.grpc_binding()
        await binding.start(self.host, self.grpc_port)
        try:
            yield
        finally:
            await binding.stop()

    def _wire_model_agents(self, process_log: ProcessLog) -> None:
        """Model-backed agents record their model calls in the node's process log and, with a registry,
        escalate past their last model tier to a peer found by delegation."""
        for agent in self.agent_list:
            if isinstance(agent, SLMAgent):
                if agent.recorder is None:
                    agent.recorder = process_log.record
                if agent.peer_fallback is None and self.registry_url:
                    agent.peer_fallback = self._peer_fallback

    async def _key_in_force(self, agent: str) -> str | None:
        """A calling agent's key in force, from its record verified through the node's registry client (None for
        an id the registry does not know)."""
        try:
            entry = await (await self.delegator()).registry.get(agent)
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        if entry.revoked:
            raise Unauthenticated(f"{agent} is revoked")
        return entry.current_key

    async def _peer_fallback(self, skill: str, arguments: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
        return (await self.delegate(skill, arguments, traceparent=traceparent)).output

    async def _process_log_lifespan(self, app: web.Application) -> AsyncIterator[None]:
        process_log = app[PROCESS_LOG]
        await migrate(process_log.engine)
        process_log.warm_up()
        retention = asyncio.create_task(self._retention(app), name="guildnet-retention")
        try:
            yield
        finally:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
            await process_log.close()

    async def _retention(self, app: web.Application) -> None:
        """Delete process data and finished tasks past their retention: at start, then every hour."""
        while True:
            try:
                purged = await app[PROCESS_LOG].purge()
                cutoff = time.time() - self.task_retention_days * 86400
                tasks = await app[TASKS].purge(cutoff)
                hooks = await self._push.purge(cutoff) if self._push is not None else 0  # webhooks go with tasks
                if purged or tasks or hooks:
                    log.info("retention: deleted %d process-data rows, %d finished tasks and %d push configs",
                             purged, tasks, hooks)
            except Exception:
                log.exception("retention: could not delete expired rows (will try again)")
            await asyncio.sleep(RETENTION_INTERVAL)

    async def _index(self, request: web.Request) -> web.Response:
        return web.json_response(self.describe())

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
        if self._delegator is not None and self._delegator.registry.forked is not None:
            return web.json_response({"status": "not ready", "reason": "delegation stopped: the registry's log "
                                      f"is not the one this node saw before ({self._delegator.registry.forked})"},
                                     status=503)
        publisher = request.app.get(PUBLISHER)
        if publisher is not None:
            waiting = [p.agent.name for p in self.agents if p.identity.id not in publisher.registered]
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
            self._publisher = publisher
            await publisher.start()
        audit = asyncio.create_task(self._audit(), name="guildnet-registry-audit") if self.registry_url else None
        try:
            yield
        finally:
            if audit is not None:
                audit.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await audit
            self._publisher = None
            if publisher is not None:
                with contextlib.suppress(Exception):
                    await publisher.stop()

    async def _audit(self) -> None:
        """Check the registry's log head every :attr:`audit_interval` seconds: a fork or a rollback is caught even
        when nobody delegates, and shows in ``/readyz``, ``/metrics`` and ``guildnet doctor``. Receipts kept in
        the outbox (the registry could not take them yet) are filed from here too."""
        delegator = await self.delegator()
        registry = delegator.registry
        trouble: str | None = None  # said once (the publisher says when the registry answers again)
        while True:
            # kept receipts name this node's agents as callers: file them once the registry knows the agents
            registered = self._publisher is None or len(self._publisher.registered) >= len(self.agents)
            if registered and delegator.outbox is not None:
                try:
                    await delegator.outbox.retry({p.identity.id: p.identity.key for p in self.agents})
                except Exception as exc:  # the node's own database: try again next round
                    log.warning("could not file kept receipts: %s: %s", type(exc).__name__, exc)
            try:
                head = await registry.log_head()
                self.metrics.registry_log_size.set(head.size)
                self.metrics.registry_log_consistent.set(1)
                trouble = None
            except LogForked as exc:
                self.metrics.registry_log_consistent.set(0)
                log.error("the registry's log is not the one this node saw before: %s; delegation through %s is "
                          "stopped", exc, self.registry_url)
                return
            except Exception as exc:  # unreachable, or a head that does not verify: try again later
                if f"{type(exc).__name__}: {exc}" != trouble:
                    trouble = f"{type(exc).__name__}: {exc}"
                    log.warning("could not check the registry's log head: %s", trouble)
            await asyncio.sleep(self.audit_interval if registered else min(1.0, self.audit_interval))

    async def rotate(self, name: str) -> str:
        """Rotate agent ``name``'s key while the node serves: its id stays, every signature from the registry's
        acceptance on is the new key's, and tasks in flight go on. Returns the new key's did:key."""
        if self._publisher is None:
            raise ValueError("rotation needs the node to serve with a registry ([node] registry)")
        return await self._publisher.rotate(name)

    async def _admin(self, _app: web.Application) -> AsyncIterator[None]:
        """Serve :mod:`.admin` on the node's Unix socket, for commands run on this machine."""
        assert self.admin_socket is not None
        runner = web.AppRunner(admin_app(self))
        await runner.setup()
        self.admin_socket.unlink(missing_ok=True)
        site = web.UnixSite(runner, str(self.admin_socket))
        await site.start()
        os.chmod(self.admin_socket, 0o600)
        try:
            yield
        finally:
            await runner.cleanup()
            self.admin_socket.unlink(missing_ok=True)
