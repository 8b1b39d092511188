"""The node's MCP endpoint, driven by the official ``mcp`` client over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mcp import Client, MCPError
from pydantic import BaseModel

from guildnet.node.agent import Agent, FunctionAgent, SkillError, TaskContext
from guildnet.node.mcp.server import AgentTools, setup_mcp


class TextIn(BaseModel):
    text: str


class TextOut(BaseModel):
    text: str
    length: int


class SlowIn(BaseModel):
    seconds: float


class Probe:
    """What the slow skill saw: that it started and whether it was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()


def make_agent(probe: Probe) -> FunctionAgent:
    agent = FunctionAgent("echo", description="Echoes text")

    async def echo(data: TextIn) -> TextOut:
        return TextOut(text=data.text, length=len(data.text))

    async def fail(data: TextIn) -> TextOut:
        raise SkillError(f"cannot handle {data.text!r}")

    async def slow(data: SlowIn, ctx: TaskContext) -> TextOut:
        probe.started.set()
        await ctx.progress("sleeping")
        try:
            await asyncio.sleep(data.seconds)
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        return TextOut(text="slept", length=0)

    agent.add_skill(echo, id="echo", description="Returns its text and its length")
    agent.add_skill(fail, id="fail", description="Always fails")
    agent.add_skill(slow, id="slow", description="Sleeps, reporting progress")
    return agent


@asynccontextmanager
async def serve(agents: list[Agent], **options: Any) -> AsyncIterator[str]:
    app = web.Application()
    setup_mcp(app, agents, **options)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        await runner.cleanup()


MODERN_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
}


def modern_call(name: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta}}


@pytest.mark.parametrize(("mode", "revision"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_official_client_lists_and_calls(mode: str, revision: str) -> None:
    agent = make_agent(Probe())
    async with serve([agent]) as url, Client(url, mode=mode) as client:
        assert client.protocol_version == revision
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert list(tools) == ["echo", "fail", "slow"]
        assert tools["echo"].input_schema == agent.skill("echo").input_schema
        assert tools["echo"].output_schema == agent.skill("echo").output_schema
        assert tools["echo"].description == "Returns its text and its length"

        result = await client.call_tool("echo", {"text": "héllo"})
        assert not result.is_error
        assert result.structured_content == {"text": "héllo", "length": 5}
        assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]

        failed = await client.call_tool("fail", {"text": "x"})
        assert failed.is_error
        assert failed.content[0].text == "cannot handle 'x'"  # type: ignore[union-attr]

        bad = await client.call_tool("echo", {"text": 42})
        assert bad.is_error
        assert "input does not match skill 'echo'" in bad.content[0].text  # type: ignore[union-attr]
        assert "42 is not of type 'string'" in bad.content[0].text  # type: ignore[union-attr]

        with pytest.raises(MCPError) as unknown:
            await client.call_tool("nope", {})
        assert unknown.value.error.code == -32602
        assert unknown.value.error.message == "Unknown tool: nope"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_reaches_the_client(mode: str) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with serve([make_agent(Probe())]) as url, Client(url, mode=mode) as client:
        result = await client.call_tool("slow", {"seconds": 0}, progress_callback=on_progress)
    assert result.structured_content == {"text": "slept", "length": 0}
    assert seen == [(1.0, "sleeping")]


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_client_disconnect_cancels_the_skill(handler_cancellation: bool) -> None:
    """A 2026-07-28 client that closes its response stream cancels the running handler.

    Without aiohttp's handler cancellation the bridge notices by polling (0.25 s); with it, at once.
    """
    probe = Probe()
    app = web.Application()
    setup_mcp(app, [make_agent(probe)])
    runner = web.AppRunner(app, shutdown_timeout=1, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/mcp"
    try:
        async with aiohttp.ClientSession() as http:
            async def call() -> None:
                async with http.post(url, json=modern_call("slow", {"seconds": 30}),
                                     headers={**MODERN_HEADERS, "Mcp-Name": "slow"}) as response:
                    await response.read()

            request = asyncio.create_task(call())
            await asyncio.wait_for(probe.started.wait(), 5)
            request.cancel()  # closes the connection
            loop = asyncio.get_running_loop()
            gone = loop.time()
            await asyncio.wait_for(probe.cancelled.wait(), 3)
            assert loop.time() - gone < 1.0
    finally:
        await runner.cleanup()


async def test_host_names_are_configurable() -> None:
    payload = modern_call("echo", {"text": "a"})
    headers = {**MODERN_HEADERS, "Mcp-Name": "echo", "Host": "node.example.org:8443"}
    async with serve([make_agent(Probe())]) as url, aiohttp.ClientSession() as http:
        async with http.post(url, json=payload, headers=headers) as response:
            assert response.status == 421  # default: loopback names only
    async with serve([make_agent(Probe())], allowed_hosts=["node.example.org"]) as url, \
            aiohttp.ClientSession() as http:
        async with http.post(url, json=payload, headers=headers) as response:
            assert response.status == 200
            body = await response.json()
        async with http.post(url, json=payload, headers={**headers, "Origin": "https://evil.example"}) as response:
            assert response.status == 403
    assert body["result"]["structuredContent"] == {"text": "a", "length": 1}


async def test_body_limit_is_the_sdk_limit_not_aiohttp_default() -> None:
    big = "x" * (2 * 1024 * 1024)  # above aiohttp's 1 MiB client_max_size, below the SDK's 4 MiB
    async with serve([make_agent(Probe())]) as url, Client(url) as client:
        result = await client.call_tool("echo", {"text": big})
        assert result.structured_content == {"text": big, "length": len(big)}
    async with serve([make_agent(Probe())], max_body_size=1000) as url, aiohttp.ClientSession() as http:
        async with http.post(url, json=modern_call("echo", {"text": "y" * 2000}),
                             headers={**MODERN_HEADERS, "Mcp-Name": "echo"}) as response:
            assert response.status == 413


def test_a_shared_skill_id_stays_bare_for_the_first_agent() -> None:
    """Adding an agent with the same skill must not rename the tool existing MCP clients call."""
    first, second = make_agent(Probe()), FunctionAgent("other")

    async def echo(data: TextIn) -> TextOut:
        return TextOut(text=data.text, length=0)

    second.add_skill(echo, id="echo")

    names = [tool.name for tool in AgentTools([first, second]).tools]
    assert names == ["echo", "fail", "slow", "other.echo"]


def test_invalid_or_colliding_names_are_refused() -> None:
    spaced = FunctionAgent("has space")

    async def fail(data: TextIn) -> TextOut:
        raise SkillError("x")

    spaced.add_skill(fail, id="fail")

    with pytest.raises(ValueError, match="not a valid MCP tool name"):
        AgentTools([make_agent(Probe()), spaced])
