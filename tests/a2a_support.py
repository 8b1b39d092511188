"""Shared pieces of the A2A tests: two small agents and a real node A2A server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from a2a.types import Message, Part, Role
from aiohttp import web
from google.protobuf import struct_pb2
from pydantic import BaseModel, Field

from guildnet.node.a2a.executor import Executor
from guildnet.node.a2a.push import PushService
from guildnet.node.a2a.service import A2AService
from guildnet.node.a2a.store import TaskStore
from guildnet.node.agent import Agent, FunctionAgent, SkillError, TaskContext
from guildnet.node.identity import StaticIdentity
from guildnet.protocols.a2a import new_id
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


LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
"""What tests allow webhooks at: this machine (a node refuses it by default)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_a2a(store: TaskStore, agents: Sequence[Agent] | None = None,
                    executors: dict[str, Executor] | None = None,
                    keys: dict[str, SigningKey] | None = None, *, push: PushService | None = None,
                    grpc: bool = False, extended_card: bool = False, required_extensions: Sequence[str] = (),
                    grpc_listens: bool = True) -> AsyncIterator[tuple[str, A2AService]]:
    """A real aiohttp site on a free 127.0.0.1 port serving the node's A2A service; yields (base URL, service).

    With ``grpc`` the gRPC binding listens on a port of its own too (the cards name it); without
    ``grpc_listens`` the cards name the port but nothing listens there (a binding that is down)."""
    agents = list(agents) if agents is not None else [echo_agent(), slow_agent()]
    keys = keys or {a.name: SigningKey.generate() for a in agents}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    grpc_port = free_port() if grpc else None
    service = A2AService(agents, store, base, {name: StaticIdentity(key) for name, key in keys.items()},
                         executors=executors, push=push, extended_card=extended_card,
                         required_extensions=required_extensions,
                         grpc_url=f"127.0.0.1:{grpc_port}" if grpc_port else None)
    app = web.Application()
    service.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    binding = service.grpc_binding() if grpc_port and grpc_listens else None
    if binding is not None and grpc_port is not None:
        await binding.start("127.0.0.1", grpc_port)
    try:
        yield base, service
    finally:
        if binding is not None:
            await binding.stop(0)
        await runner.cleanup()


class WebhookReceiver:
    """A real webhook on 127.0.0.1 that records each POST (headers and body); ``fail_first`` answers 500 to the
    first delivery of each event id, as a receiver that stored it but whose reply was lost."""

    def __init__(self, port: int | None = None, *, fail_first: bool = False) -> None:
        self.port = port or free_port()
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self) -> dict[str, bytes]:
        """What a receiver that drops a repeated event id keeps: each event once."""
        return {headers["A2A-Notification-Id"]: body for headers, body in self.received}

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = any(h.get("A2A-Notification-Id") == request.headers.get("A2A-Notification-Id")
                   for h, _ in self.received)
        self.received.append((dict(request.headers), body))
        self.arrived.set()
        return web.Response(status=500 if self.fail_first and not seen else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, predicate: Callable[[WebhookReceiver], bool]) -> None:
        """Until ``predicate`` holds (the caller bounds the wait with ``asyncio.timeout``)."""
        while not predicate(self):
            self.arrived.clear()
            await self.arrived.wait()


def sdk_message(data: dict[str, Any], skill: str | None = None) -> Message:
    """A user message as the official a2a-sdk client sends it: one ``data`` part, the skill in its metadata."""
    value = struct_pb2.Value()
    value.struct_value.update(data)
    message = Message(message_id=new_id(), role=Role.ROLE_USER, parts=[Part(data=value)])
    if skill:
        message.metadata.update({"skill": skill})
    return message
