"""Organisations on 127.0.0.1 for delegation tests and the three-organisation example."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from guildnet.node.agent import Agent, FunctionAgent, SkillError
from guildnet.node.identity import StaticIdentity
from guildnet.node.node import Node
from guildnet.node.publisher import PublishedAgent
from guildnet.protocols.agentfacts import ModelFacts
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient


class Text(BaseModel):
    text: str


def translator(name: str, *, fail_every: int = 0, delay: float = 0.0, price: float = 0.001) -> FunctionAgent:
    """A 'translate' agent; with ``fail_every=n`` every n-th call fails; ``price`` per 1k tokens."""
    agent = FunctionAgent(name, description=f"{name}: translates text",
                          model=ModelFacts(family="demo", cost_per_1k_input=price, cost_per_1k_output=price))
    calls = [0]

    async def translate(data: Text) -> Text:
        calls[0] += 1
        if delay:
            await asyncio.sleep(delay)
        if fail_every and calls[0] % fail_every == 0:
            raise SkillError("could not translate this one")
        return Text(text=data.text.upper())

    agent.add_skill(translate, id="translate", name="Translate", description="Translate text", tags=["language"])
    return agent


@dataclass
class RunningNode:
    node: Node
    runner: web.AppRunner

    @property
    def agent_key(self) -> SigningKey:
        return self.node.agents[0].identity.key


@contextlib.asynccontextmanager
async def running_node(org_name: str, agent: Agent, registry_url: str, db_url: str,
                       org_key: SigningKey | None = None, **options: Any) -> AsyncIterator[RunningNode]:
    """A node process-equivalent on a real socket: registers its agent, serves A2A and MCP; ``options`` are
    more of the :class:`Node`'s settings (``grpc_port``, ``push_allow_networks``, ...)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    node = Node(org_name=org_name, org_key=org_key or SigningKey.generate(),
                agents=[PublishedAgent(agent, StaticIdentity.generate(), ttl_seconds=30)],
                base_url=f"http://127.0.0.1:{port}", db_url=db_url, registry_url=registry_url, port=port, **options)
    runner = web.AppRunner(node.build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield RunningNode(node, runner)
    finally:
        await runner.cleanup()


async def wait_for_registrations(registry: RegistryClient, count: int, within: float = 10.0) -> None:
    """Wait, on the registry's watch stream, until ``count`` agents have registered."""
    seen = 0
    async with asyncio.timeout(within):
        async for change in registry.watch(0):
            seen += change["kind"] == "registered"
            if seen >= count:
                return
