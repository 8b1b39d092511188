"""Shared pieces of the A2A tests: two small agents and a real node A2A server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiohttp import web
from pydantic import BaseModel, Field

from guildnet.node.a2a.executor import Executor
from guildnet.node.a2a.service import A2AService
from guildnet.node.a2a.store import TaskStore
from guildnet.node.agent import Agent, FunctionAgent, SkillError, TaskContext
from guildnet.node.identity import StaticIdentity
from guildnet.protocols.keys import SigningKey


class EchoIn(BaseModel):
    text: str


class EchoOut(BaseModel):
    text: str


class WaitIn(BaseModel):
    seconds: float = Field(ge=0, le=30)
    fail: bool = False


def echo_agent() -> FunctionAgent:
    agent = FunctionAgent("echo", description="Echoes text")

    async def echo(data: EchoIn) -> EchoOut:
        return EchoOut(text=data.text)

    agent.add_skill(echo, id="echo", name="Echo", description="Returns its text unchanged", tags=["text"])
    return agent


def slow_agent() -> FunctionAgent:
    agent = FunctionAgent("slow", description="Waits, then answers")

    async def wait(data: WaitIn, ctx: TaskContext) -> EchoOut:
        await ctx.progress("waiting")
        await asyncio.sleep(data.seconds)
        if data.fail:
            raise SkillError("asked to fail")
        return EchoOut(text="done")

    async def shout(data: EchoIn) -> EchoOut:
        return EchoOut(text=data.text.upper())

    agent.add_skill(wait, id="wait", name="Wait", description="Sleeps for a while", tags=["time"])
    agent.add_skill(shout, id="shout", name="Shout", description="Upper-cases text", tags=["text"])
    return agent


@asynccontextmanager
async def serve_a2a(store: TaskStore, agents: Sequence[Agent] | None = None,
                    executors: dict[str, Executor] | None = None,
                    keys: dict[str, SigningKey] | None = None) -> AsyncIterator[tuple[str, A2AService]]:
    """A real aiohttp site on a free 127.0.0.1 port serving the node's A2A service; yields (base URL, service)."""
    agents = list(agents) if agents is not None else [echo_agent(), slow_agent()]
    keys = keys or {a.name: SigningKey.generate() for a in agents}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    service = A2AService(agents, store, base, {name: StaticIdentity(key) for name, key in keys.items()},
                         executors=executors)
    app = web.Application()
    service.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base, service
    finally:
        await runner.cleanup()
