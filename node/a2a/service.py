"""The A2A face of a node: each agent's tasks, signed cards and routes on the node's aiohttp app.

Routes (see :meth:`A2AService.add_routes`):

* ``POST /agents/{name}/a2a`` (and ``.../a2a/``): JSON-RPC endpoint of one agent;
* ``/agents/{name}/rest/...``: its HTTP+JSON binding (the proto's REST paths, e.g. ``POST .../message:send``);
* ``GET /agents/{name}/.well-known/agent-card.json``: its signed card;
* ``GET /.well-known/agent-card.json`` and ``POST /``: the first agent, so a client (or the A2A TCK) that only
  knows the node's base URL finds it.

The gRPC binding listens on a port of its own (:mod:`.grpc_binding`, started by whoever runs the app, with
:meth:`A2AService.grpc_binding`); the cards list it when ``grpc_url`` is given. Every binding calls the same
:class:`~.operations.AgentEndpoint` per agent.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON

from ..agent import Agent
from ..callers import Authenticator
from ..identity import Signer
from . import jsonrpc, rest
from .cards import ServedCard, build_card
from .executor import Executor, SkillExecutor
from .operations import AgentEndpoint
from .push import PushService
from .store import TaskStore
from .tasks import AgentTasks

if TYPE_CHECKING:
    from .grpc_binding import GrpcBinding

log = logging.getLogger(__name__)

BODY_TIMEOUT = 30.0
"""Seconds a client has to send a request body once its headers arrived; a slower one gets 408 (slow-body
clients would otherwise hold a handler and its connection for as long as they like)."""


class A2AService:
    """One JSON-RPC endpoint and one signed card per agent, over one task store.

    ``executors`` overrides the default :class:`SkillExecutor` per agent name (the TCK's test agent uses it).
    ``authenticator`` says which callers are accepted (default: signed callers, and anonymous ones from this
    machine; see :mod:`guildnet.node.callers`).
    ``push``: callers may register webhooks (push notifications); ``grpc_url``: the ``host:port`` the gRPC binding
    is served at, listed in the cards; ``extended_card``: serve GetExtendedAgentCard (to callers the
    authenticator accepts); ``required_extensions``: extension URIs every request must activate.
    Request bodies are limited by the app's ``client_max_size`` (413 above it) and must arrive within
    ``body_timeout`` seconds (408 otherwise).
    """

    def __init__(self, agents: Sequence[Agent], store: TaskStore, base_url: str,
                 identities: Mapping[str, Signer], *, version: str = "0.1.0",
                 provider: tuple[str, str] | None = None, executors: Mapping[str, Executor] | None = None,
                 body_timeout: float = BODY_TIMEOUT, authenticator: Authenticator | None = None,
                 push: PushService | None = None, grpc_url: str | None = None, extended_card: bool = False,
                 required_extensions: Sequence[str] = ()) -> None:
        if not agents:
            raise ValueError("an A2A service needs at least one agent")
        missing = [a.name for a in agents if a.name not in identities]
        if missing:
            raise ValueError(f"no identity for agents {missing}")
        self.body_timeout = body_timeout
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.authenticator = authenticator or Authenticator(self.base_url)
        self.agents = list(agents)
        overrides = dict(executors or {})
        self.tasks = {a.name: AgentTasks(a.name, overrides.get(a.name) or SkillExecutor(a, identities[a.name]), store)
                      for a in agents}
        self.push = push
        self.endpoints = {name: AgentEndpoint(tasks, push=push, required_extensions=frozenset(required_extensions),
                                              extended_card=self._extended(name) if extended_card else None)
                          for name, tasks in self.tasks.items()}
        self._identities = dict(identities)
        self._grpc_url = grpc_url
        card = functools.partial(build_card, version=version, provider=provider, push_notifications=push is not None,
                                 extended_card=extended_card, extensions=tuple(required_extensions))
        self._unsigned = {a.name: card(a, f"{self.base_url}/agents/{a.name}/a2a",
                                       interfaces=self._interfaces(a.name, grpc_url, tenant=a.name))
                          for a in agents}
        first = self.agents[0].name
        self._unsigned_root = card(self.agents[0], f"{self.base_url}/",
                                   interfaces=self._interfaces(first, grpc_url, tenant=None))
        self._signed: dict[str, ServedCard] = {}

    def _interfaces(self, name: str, grpc_url: str | None, *, tenant: str | None) -> list[a2a.CardInterface]:
        """The card's interfaces after JSON-RPC: HTTP+JSON, then gRPC when served."""
        interfaces = [a2a.CardInterface(a2a.BINDING_HTTP_JSON, f"{self.base_url}/agents/{name}/rest")]
        if grpc_url is not None:
            interfaces.append(a2a.CardInterface(a2a.BINDING_GRPC, grpc_url, tenant))
        return interfaces

    def _extended(self, name: str) -> Callable[[], JSON]:
        return lambda: self._served(name).card

    def grpc_binding(self) -> GrpcBinding:
        """The gRPC binding over these agents' endpoints (start it with ``await binding.start(host, port)``)."""
        from .grpc_binding import GrpcBinding  # the grpc extra: imported only by nodes that serve gRPC
        return GrpcBinding(self.endpoints, self.agents[0].name, self.authenticator, self._grpc_url)

    def _served(self, name: str, *, root: bool = False) -> ServedCard:
        """The agent's card signed by its key in force: signed again after a rotation, else from cache."""
        key = self._identities[name].key
        slot = "/" if root else name
        served = self._signed.get(slot)
        if served is None or served.signer != key.did:
            unsigned = self._unsigned_root if root else self._unsigned[name]
            served = self._signed[slot] = ServedCard.sign(unsigned, key, since=time.time())
        return served

    @property
    def cards(self) -> dict[str, JSON]:
        """Each agent's signed card, by agent name."""
        return {name: self._served(name).card for name in self._unsigned}

    @property
    def root_card(self) -> JSON:
        """The first agent's card as served at the node's root (its interface URL is the node's)."""
        return self._served(self.agents[0].name, root=True).card

    # ---- wiring --------------------------------------------------------------------------------------------
    def add_routes(self, app: web.Application, *, manage_store: bool = True) -> None:
        """Add the A2A routes; with ``manage_store`` the app's lifespan also opens and closes the store."""
        app.router.add_get("/.well-known/agent-card.json", self._root_card_handler)
        app.router.add_post("/", self._root_rpc)
        app.router.add_get("/agents/{name}/.well-known/agent-card.json", self._card_handler)
        app.router.add_post("/agents/{name}/a2a", self._agent_rpc)
        app.router.add_post("/agents/{name}/a2a/", self._agent_rpc)
        app.router.add_route("*", "/agents/{name}/rest/{path:.*}", self._agent_rest)
        app.on_shutdown.append(self._on_shutdown)
        if manage_store:
            app.cleanup_ctx.append(self._store_lifespan)

    async def _store_lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        recovered = await self.store.open()
        if recovered:
            log.warning("%d task(s) left running by a previous process are now FAILED", recovered)
        if self.push is not None:
            await self.push.open()
        try:
            yield
        finally:
            await self.close()

    async def stop_runs(self) -> None:
        """Stop running tasks: they settle as FAILED (saying the node shut down), which also answers every
        blocking SendMessage and stream still waiting on them."""
        for tasks in self.tasks.values():
            await tasks.stop()

    async def close(self) -> None:
        """Stop running tasks, then close the push service and the store."""
        await self.stop_runs()
        if self.push is not None:
            await self.push.close()
        await self.store.close()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # aiohttp waits for open handlers (up to its shutdown_timeout, 60 s) before the cleanup that closes
        # the store; a handler waiting on a hung agent would hold shutdown that long, so runs stop first.
        await self.stop_runs()

    # ---- handlers ------------------------------------------------------------------------------------------
    async def _root_card_handler(self, request: web.Request) -> web.Response:
        return self._served(self.agents[0].name, root=True).response(request)

    async def _card_handler(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._unsigned:
            raise web.HTTPNotFound(text="no such agent")
        return self._served(name).response(request)

    async def _root_rpc(self, request: web.Request) -> web.StreamResponse:
        return await jsonrpc.handle(request, self.endpoints[self.agents[0].name], body_timeout=self.body_timeout,
                                    authenticator=self.authenticator)

    async def _agent_rpc(self, request: web.Request) -> web.StreamResponse:
        endpoint = self.endpoints.get(request.match_info["name"])
        if endpoint is None:
            raise web.HTTPNotFound(text="no such agent")
        return await jsonrpc.handle(request, endpoint, body_timeout=self.body_timeout,
                                    authenticator=self.authenticator)

    async def _agent_rest(self, request: web.Request) -> web.StreamResponse:
        endpoint = self.endpoints.get(request.match_info["name"])
        if endpoint is None:
            raise web.HTTPNotFound(text="no such agent")
        return await rest.handle(request, endpoint, request.match_info["path"], body_timeout=self.body_timeout,
                                 authenticator=self.authenticator)
