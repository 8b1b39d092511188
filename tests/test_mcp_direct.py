"""The fast path's direct tools/call (node/mcp/direct.py) answers exactly as the SDK's kernel does.

One node, real sockets: every request is sent with the direct call on, then again with it off (the same request
through the SDK's ServerRunner), and the two answers (status, content type, every JSON-RPC message) must match.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import mcp_types as types
import pytest
from aiohttp import web
from mcp import Client
from pydantic import BaseModel

from guildnet.node.a2a.store import InMemoryTaskStore
from guildnet.node.agent import FunctionAgent, SkillError, TaskContext
from guildnet.node.mcp.fast import FastPath
from guildnet.node.mcp.server import FAST_PATH_KEY, setup_mcp
from guildnet.protocols import mcp_tasks

VERSION = "2026-07-28"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class TextIn(BaseModel):
    text: str


class Seen(BaseModel):
    text: str
    traceparent: str | None
    protocol_version: str


def make_agent() -> FunctionAgent:
    agent = FunctionAgent("probe")

    async def echo(data: TextIn) -> TextIn:
        return data

    async def fail(data: TextIn) -> TextIn:
        raise SkillError(f"cannot handle {data.text!r}")

    async def crash(data: TextIn) -> TextIn:
        raise RuntimeError("internal detail that must not reach the client")

    async def seen(data: TextIn, ctx: TaskContext) -> Seen:
        await ctx.progress("looking")
        await ctx.progress("found")
        return Seen(text=data.text, traceparent=ctx.traceparent, protocol_version=ctx.metadata["protocol_version"])

    for handler, skill in ((echo, "echo"), (fail, "fail"), (crash, "crash"), (seen, "seen")):
        agent.add_skill(handler, id=skill)
    return agent


@asynccontextmanager
async def node() -> AsyncIterator[tuple[str, FastPath]]:
    app = web.Application()
    setup_mcp(app, [make_agent()], task_store=InMemoryTaskStore())
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/mcp", app[FAST_PATH_KEY]
    finally:
        await runner.cleanup()


def envelope(**extra: Any) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": VERSION, "io.modelcontextprotocol/clientCapabilities": {},
            **extra}


def call(params: Any, request_id: Any = 7) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


CASES: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (body, whether the direct call takes it)
    "plain": (call({"name": "echo", "arguments": {"text": "héllo ✓"}, "_meta": envelope()}), True),
    "string id": (call({"name": "echo", "arguments": {"text": "x"}, "_meta": envelope()}, "abc"), True),
    "bad arguments": (call({"name": "echo", "arguments": {"text": 42}, "_meta": envelope()}), True),
    "missing arguments": (call({"name": "echo", "_meta": envelope()}), True),
    "arguments not an object": (call({"name": "echo", "arguments": "x", "_meta": envelope()}), True),
    "skill error": (call({"name": "fail", "arguments": {"text": "q"}, "_meta": envelope()}), True),
    "crash": (call({"name": "crash", "arguments": {"text": "q"}, "_meta": envelope()}), True),
    "trace and progress": (call({"name": "seen", "arguments": {"text": "t"},
                                 "_meta": envelope(traceparent=TRACEPARENT, progressToken="p-1")}), True),
    "progress token of a wrong type": (call({"name": "seen", "arguments": {"text": "t"},
                                             "_meta": envelope(progressToken={"no": 1})}), True),
    "extra params": (call({"name": "echo", "arguments": {"text": "x"}, "cursor": 3, "_meta": envelope()}), True),
    "unknown tool": (call({"name": "nope", "arguments": {}, "_meta": envelope()}), False),
    "without the envelope": (call({"name": "echo", "arguments": {"text": "x"}}), True),
}


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, str, list[Any]]:
    params = body.get("params") or {}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": VERSION,
               "Mcp-Method": body["method"]}
    if isinstance(params.get("name"), str):
        headers["Mcp-Name"] = params["name"]
    async with http.post(url, data=json.dumps(body), headers=headers) as response:
        text = await response.text()
        if response.content_type == "text/event-stream":
            messages = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
        else:
            messages = [json.loads(text)] if text else []
        return response.status, response.content_type, messages


@pytest.mark.parametrize("case", list(CASES))
async def test_the_direct_call_answers_as_the_sdk_kernel(case: str) -> None:
    body, direct = CASES[case]
    async with node() as (url, fast), aiohttp.ClientSession() as http:
        assert fast.direct is not None
        assert fast.direct.takes(types.JSONRPCRequest.model_validate(body)) is direct
        fast_answer = await post(http, url, body)
        taker, fast.direct = fast.direct, None  # the same request through ServerRunner
        kernel_answer = await post(http, url, body)
        fast.direct = taker
    assert fast_answer == kernel_answer
    assert fast_answer[2], "an answer was expected"


async def test_what_the_direct_call_must_leave_to_the_kernel() -> None:
    async with node() as (url, fast), aiohttp.ClientSession() as http:
        assert fast.direct is not None
        declared = call({"name": "echo", "arguments": {"text": "x"},
                         "_meta": envelope(**{"io.modelcontextprotocol/clientCapabilities":
                                              {"extensions": {mcp_tasks.EXTENSION: {}}}})})
        assert not fast.direct.takes(types.JSONRPCRequest.model_validate(declared))
        status, _, [answer] = await post(http, url, declared)
        assert status == 200 and answer["result"]["resultType"] == "task"  # the tasks middleware made a task
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": envelope()}}
        assert not fast.direct.takes(types.JSONRPCRequest.model_validate(listing))
        plain = types.JSONRPCRequest.model_validate(CASES["plain"][0])
        assert fast.direct.takes(plain)
        fast.server.middleware.append(fast.server.middleware[0])  # a chain the node did not build
        assert not fast.direct.takes(plain)


def recorder(seen: list[tuple[float, str | None]]) -> Any:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    return on_progress


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_official_client_sees_the_same_tools_either_way(mode: str) -> None:
    results = []
    async with node() as (url, fast):
        for direct in (fast.direct, None):
            fast.direct = direct
            async with Client(url, mode=mode) as client:
                seen: list[tuple[float, str | None]] = []
                result = await client.call_tool("seen", {"text": "é"}, progress_callback=recorder(seen))
                results.append((result.model_dump(), seen))
    assert results[0] == results[1]
    assert results[0][0]["structured_content"]["text"] == "é"
    assert [message for _, message in results[0][1]] == ["looking", "found"]
