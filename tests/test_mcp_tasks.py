"""MCP tasks (SEP-2663) on a node: the official ``mcp`` client over real sockets, an SQLite task store shared with
the A2A service, and a restart in the middle."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp
import mcp_types as types
import pytest
from aiohttp import web
from mcp import Client, MCPError
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from pydantic import BaseModel

from guildnet.node.a2a.service import A2AService
from guildnet.node.a2a.store import SqlTaskStore
from guildnet.node.agent import FunctionAgent, TaskContext
from guildnet.node.identity import StaticIdentity
from guildnet.node.mcp.server import setup_mcp
from guildnet.protocols import mcp_tasks

TASKS = mcp_tasks.EXTENSION


class SlowIn(BaseModel):
    seconds: float
    text: str = ""


class SlowOut(BaseModel):
    text: str


def make_agent() -> FunctionAgent:
    agent = FunctionAgent("worker", description="Slow work")

    async def slow(data: SlowIn, ctx: TaskContext) -> SlowOut:
        await ctx.progress("asked the peer")  # what a delegating skill reports
        await asyncio.sleep(data.seconds)
        return SlowOut(text=data.text.upper())

    agent.add_skill(slow, id="slow", name="Slow", description="Sleeps, then upper-cases", tags=[])
    return agent


# ---- the client side of the extension: what an MCP client that speaks tasks adds to the official client --------
class CreateTaskResult(types.Result):
    result_type: Literal["task"]
    task_id: str
    status: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskIdParams(types.RequestParams):
    task_id: str


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param: ClassVar[str | None] = "taskId"


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param: ClassVar[str | None] = "taskId"


class Detailed(types.Result):
    task_id: str
    status: str
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


async def get_task(client: Client, task_id: str) -> Detailed:
    return await client.session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), Detailed)


class Tasks(ClientExtension):
    """Declares the extension; a ``CreateTaskResult`` is finished by polling ``tasks/get`` (every status seen kept)."""

    identifier = TASKS

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def claims(self) -> list[ResultClaim[Any]]:
        async def resolve(created: CreateTaskResult, ctx: ClaimContext) -> types.CallToolResult:
            while True:
                task = await ctx.session.send_request(GetTask(params=TaskIdParams(task_id=created.task_id)), Detailed)
                self.seen.append((task.task_id, task.status))
                if task.status in ("completed", "failed", "cancelled"):
                    assert task.result is not None, task
                    return types.CallToolResult.model_validate(task.result, by_name=False)
                await asyncio.sleep(0.05)

        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=resolve)]


# ---- the node ----------------------------------------------------------------------------------------------
@asynccontextmanager
async def node(db: Path) -> AsyncIterator[str]:
    """A node's MCP endpoint and A2A service over one SQLite task store; yields its base URL."""
    store = SqlTaskStore(f"sqlite+aiosqlite:///{db}")
    agent = make_agent()
    app = web.Application()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    setup_mcp(app, [agent], task_store=store)
    A2AService([agent], store, base, {"worker": StaticIdentity.generate()}).add_routes(app)  # opens the store
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield base
    finally:
        await runner.cleanup()


async def a2a_get(base: str, task_id: str) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}
    async with aiohttp.ClientSession() as session, \
            session.post(base + "/", json=body, headers={"A2A-Version": "1.0"}) as response:
        return dict((await response.json())["result"])


async def test_a_task_runs_to_completion_and_is_the_a2a_task(tmp_path: Path) -> None:
    async with node(tmp_path / "tasks.db") as base:
        tasks = Tasks()
        async with Client(base + "/mcp", extensions=[tasks]) as client:
            assert client.protocol_version == "2026-07-28"
            result = await client.call_tool("slow", {"seconds": 0.3, "text": "hello"})
            assert result.structured_content == {"text": "HELLO"}, result
            statuses = [status for _, status in tasks.seen]
            assert statuses[0] == "working" and statuses[-1] == "completed", statuses
            task_id = tasks.seen[0][0]
            working = await get_task(client, task_id)
            assert working.status == "completed" and working.result is not None
        # the same task, read over A2A: completed, the arguments as the user message, the output as an artifact
        task = await a2a_get(base, task_id)
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["history"][0]["parts"][0]["data"] == {"seconds": 0.3, "text": "hello"}
        assert task["artifacts"][0]["parts"][0]["data"] == {"text": "HELLO"}


async def test_progress_shows_as_status_and_cancel_settles_cancelled(tmp_path: Path) -> None:
    async with node(tmp_path / "tasks.db") as base:
        async with Client(base + "/mcp", extensions=[Tasks()]) as client:
            created = await client.session.call_tool("slow", {"seconds": 30}, allow_claimed=True)
            assert isinstance(created, CreateTaskResult) and created.status == "working"
            await asyncio.sleep(0.2)
            running = await get_task(client, created.task_id)
            assert running.status == "working" and running.status_message == "asked the peer", running
            ack = await client.session.send_request(CancelTask(params=TaskIdParams(task_id=created.task_id)),
                                                    types.Result)
            assert "taskId" not in ack.model_dump(by_alias=True)
            assert (await get_task(client, created.task_id)).status == "cancelled"
            with pytest.raises(MCPError) as unknown:
                await get_task(client, "no-such-task")
            assert unknown.value.error.code == types.INVALID_PARAMS
        assert (await a2a_get(base, created.task_id))["status"]["state"] == "TASK_STATE_CANCELED"


async def test_without_the_extension_a_tool_is_a_plain_call(tmp_path: Path) -> None:
    async with node(tmp_path / "tasks.db") as base, Client(base + "/mcp") as client:
        result = await client.call_tool("slow", {"seconds": 0, "text": "x"})
        assert result.structured_content == {"text": "X"}
        with pytest.raises(MCPError) as refused:
            await get_task(client, "anything")
        assert refused.value.error.code == types.MISSING_REQUIRED_CLIENT_CAPABILITY


async def test_a_task_outlives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    async with node(db) as base, Client(base + "/mcp", extensions=[Tasks()]) as client:
        done = await client.session.call_tool("slow", {"seconds": 0, "text": "kept"}, allow_claimed=True)
        running = await client.session.call_tool("slow", {"seconds": 30}, allow_claimed=True)
        assert isinstance(done, CreateTaskResult) and isinstance(running, CreateTaskResult)
        for _ in range(100):
            if (await get_task(client, done.task_id)).status == "completed":
                break
            await asyncio.sleep(0.05)
    async with node(db) as base, Client(base + "/mcp", extensions=[Tasks()]) as client:
        after = await get_task(client, done.task_id)
        assert after.status == "completed" and after.result is not None
        assert after.result["structuredContent"] == {"text": "KEPT"}
        interrupted = await get_task(client, running.task_id)
        assert interrupted.status == "failed" and interrupted.error is not None, interrupted
        assert "shut down" in interrupted.error["message"]


@pytest.mark.parametrize("headers, status, code", [
    ({"MCP-Protocol-Version": "2099-01-01"}, 400, -32022),
    ({"Mcp-Name": "other"}, 400, -32020),
    ({"Host": "evil.example"}, 421, None),
])
async def test_the_fast_path_refuses_in_the_protocols_shape(tmp_path: Path, headers: dict[str, str], status: int,
                                                           code: int | None) -> None:
    sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "slow", **headers}
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "slow", "arguments": {"seconds": 0},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": sent["MCP-Protocol-Version"],
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}
    async with node(tmp_path / "tasks.db") as base, aiohttp.ClientSession() as session, \
            session.post(base + "/mcp", data=json.dumps(body), headers=sent) as response:
        assert response.status == status, await response.text()
        if code is not None:
            assert (await response.json())["error"]["code"] == code


def test_the_views_keep_mcp_and_a2a_states_apart() -> None:
    """Input rounds answered in parts, a tool error (MCP completed, A2A failed), a protocol error."""
    record = mcp_tasks.new_record("worker", "ask", {"q": 1}, "did:key:alice")
    asked = mcp_tasks.input_required(record, {"a": {"method": "elicitation/create"},
                                              "b": {"method": "elicitation/create"}}, "sealed")
    view = mcp_tasks.detailed(asked, ttl_ms=1000, poll_interval_ms=100)
    assert view["status"] == "input_required" and set(view["inputRequests"]) == {"a", "b"}
    assert "requestState" not in view and asked.state == "TASK_STATE_INPUT_REQUIRED"
    half, answers = mcp_tasks.answer(asked, {"a": {"action": "accept"}, "unknown": {}})
    assert answers is None and set(mcp_tasks.detailed(half, ttl_ms=1, poll_interval_ms=1)["inputRequests"]) == {"b"}
    resumed, answers = mcp_tasks.answer(half, {"b": {"action": "decline"}})
    assert answers == {"a": {"action": "accept"}, "b": {"action": "decline"}}
    assert mcp_tasks.status(resumed) == "working" and mcp_tasks.mcp_state(resumed)["requestState"] == "sealed"
    tool_error = mcp_tasks.completed(resumed, {"content": [{"type": "text", "text": "no"}], "isError": True})
    assert mcp_tasks.status(tool_error) == "completed" and tool_error.state == "TASK_STATE_FAILED"
    assert mcp_tasks.detailed(tool_error, ttl_ms=1, poll_interval_ms=1)["result"]["isError"] is True
    broken = mcp_tasks.failed(resumed, -32603, "boom")
    view = mcp_tasks.detailed(broken, ttl_ms=1, poll_interval_ms=1)
    assert view["status"] == "failed" and view["error"] == {"code": -32603, "message": "boom"} and "result" not in view
    assert broken.owner == "did:key:alice" and broken.id == record.id
