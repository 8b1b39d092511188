"""Hostile callers against a real node process: an outsider without a key, another organisation's agent
reaching for someone else's tasks, a replayed or stolen token, caller metadata posing as the node's own, a flood
of MCP sessions. Each is refused in the protocol's own shape and changes nothing stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from process_support import process_rows
from registry_support import KeyChain, bump, cli_process, free_port, live_registry, new_org

from guildnet.node.a2a.client import A2AClient
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import a2a, jws
from guildnet.protocols.callerauth import sign_call
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient

AGENT = """
import asyncio
from pydantic import BaseModel
from guildnet.node.agent import FunctionAgent

class Wait(BaseModel):
    text: str
    seconds: float = 0.0

class Said(BaseModel):
    text: str

agent = FunctionAgent("worker", description="answers after a while")

@agent.skill_handler(id="wait", name="Wait")
async def wait(data: Wait) -> Said:
    await asyncio.sleep(data.seconds)
    return Said(text=data.text)
"""
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2025-11-25"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


@dataclass
class World:
    node: str
    endpoint: str
    registry: RegistryClient
    alice: SigningKey
    bob: SigningKey
    db: Path


@contextlib.asynccontextmanager
async def world(tmp_path: Path, *, anonymous: str = "off") -> AsyncIterator[World]:
    """A registry, a node process serving the 'worker' agent, and two callers of two other organisations."""
    (tmp_path / "agent.py").write_text(AGENT)
    port = free_port()
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as registry_server, \
            RegistryClient(registry_server.url) as registry:
        (tmp_path / "node.toml").write_text(f"""
[node]
org_name = "host"
org_key = "org.key"
port = {port}
db = "sqlite:///node.db"
registry = "{registry_server.url}"
anonymous = "{anonymous}"

[[agents]]
agent = "agent.py:agent"
key = "worker.key"
""")
        callers = []
        for name in ("alice", "bob"):
            key, facts = new_org(f"{name}-org").agent(name)
            await registry.register(facts, key)
            callers.append(key)
        async with cli_process("node", "run", str(tmp_path / "node.toml"), url=f"http://127.0.0.1:{port}") as url:
            yield World(url, f"{url}/agents/worker/a2a", registry, callers[0], callers[1], tmp_path / "node.db")


def signed(key: SigningKey) -> A2AClient:
    return A2AClient(signer=StaticIdentity(key))


def request(method: str, params: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).encode()


async def post(url: str, body: bytes, token: str | None = None) -> tuple[int, dict[str, Any], Any]:
    headers = {"Content-Type": "application/json", "A2A-Version": "1.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


def stored_tasks(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM a2a_tasks").fetchone()[0])


async def test_an_outsider_without_a_key_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        send = request("SendMessage", {"message": a2a.skill_request({"text": "hi"}, "wait")})
        for body in (send, request("ListTasks", {"includeArtifacts": True})):
            status, headers, reply = await post(w.endpoint, body)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
            assert reply["jsonrpc"] == "2.0" and reply["id"] == 7 and "Unauthenticated" in reply["error"]["message"]
        async with aiohttp.ClientSession() as http, \
                http.post(f"{w.node}/mcp", json=INITIALIZE, headers=MCP_HEADERS) as response:
            assert response.status == 401
            assert "Unauthenticated" in (await response.json())["error"]["message"]
        assert stored_tasks(w.db) == 0


async def test_tasks_belong_to_the_caller_that_created_them(tmp_path: Path) -> None:
    """Bob cannot list, read, cancel or subscribe to Alice's task: to him it does not exist."""
    async with world(tmp_path) as w, signed(w.alice) as alice, signed(w.bob) as bob:
        created = await alice.send_message(w.endpoint, a2a.skill_request({"text": "secret", "seconds": 1.5}, "wait"),
                                           return_immediately=True)
        task_id = created["task"]["id"]
        listed = await bob.list_tasks(w.endpoint, include_artifacts=True)
        assert listed["tasks"] == [] and listed["totalSize"] == 0
        for attempt in (bob.get_task(w.endpoint, task_id), bob.cancel_task(w.endpoint, task_id)):
            with pytest.raises(a2a.A2AError) as refused:
                await attempt
            assert refused.value.code == a2a.TASK_NOT_FOUND
        with pytest.raises(a2a.A2AError) as refused:
            async for _ in bob.subscribe(w.endpoint, task_id):
                pass
        assert refused.value.code == a2a.TASK_NOT_FOUND
        [own] = (await alice.list_tasks(w.endpoint))["tasks"]
        assert own["id"] == task_id
        async with asyncio.timeout(10):
            async for event in alice.subscribe(w.endpoint, task_id):
                state = (event.get("task") or event.get("statusUpdate") or {}).get("status", {}).get("state")
                if state in (a2a.COMPLETED, a2a.CANCELED, a2a.FAILED):
                    break
        assert state == a2a.COMPLETED  # Bob's cancel never reached it
        # the callee's signed claim names the caller it authenticated
        finished = await alice.get_task(w.endpoint, task_id)
        claim = jws.verify_json(finished["metadata"]["guildnet.receipt"])[1]
        assert claim["caller"] == w.alice.did


async def test_a_token_is_good_for_one_request_by_the_key_in_force(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        body = request("ListTasks", {})
        token = sign_call(w.alice.did, w.alice, method="POST", url=w.endpoint, body=body)
        assert (await post(w.endpoint, body, token))[0] == 200
        replayed = await post(w.endpoint, body, token)
        assert replayed[0] == 401 and "used before" in replayed[2]["error"]["message"]
        other_body = await post(w.endpoint, request("ListTasks", {"pageSize": 1}), token)
        assert other_body[0] == 401 and "another body" in other_body[2]["error"]["message"]
        old = sign_call(w.alice.did, w.alice, method="POST", url=w.endpoint, body=body, now=time.time() - 600)
        expired = await post(w.endpoint, body, old)
        assert expired[0] == 401 and "expired" in expired[2]["error"]["message"]
        forged = sign_call(w.alice.did, SigningKey.generate(), method="POST", url=w.endpoint, body=body)
        impostor = await post(w.endpoint, body, forged)  # another key claiming to be Alice
        assert impostor[0] == 401 and "not the key in force" in impostor[2]["error"]["message"]


async def test_a_rotated_away_key_no_longer_speaks_for_its_agent(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        org = new_org("carol-org")
        chain = KeyChain()
        _, carol = org.agent("carol", key=chain.key)
        await w.registry.register(carol, chain.key, key_event=chain.inception)
        body = request("ListTasks", {})
        first = chain.key
        event, new_key = chain.next_rotation()
        await w.registry.rotate(carol.id, first, event, bump(carol, version=2), new_key)
        refused = await post(w.endpoint, body, sign_call(carol.id, first, method="POST", url=w.endpoint, body=body))
        assert refused[0] == 401 and "not the key in force" in refused[2]["error"]["message"]
        accepted = await post(w.endpoint, body, sign_call(carol.id, new_key, method="POST", url=w.endpoint,
                                                          body=body))
        assert accepted[0] == 200


async def test_caller_metadata_never_reaches_the_nodes_own_fields(tmp_path: Path) -> None:
    """A caller that names another caller and claims a model answered: the claim names the authenticated caller,
    the process data records what the node ran; ``slm: "x"`` breaks nothing."""
    async with world(tmp_path) as w:
        async with signed(w.alice) as alice:
            for slm in ({"model": "gpt-5-teacher", "escalations": ["forged"]}, "x"):
                message = a2a.skill_request({"text": "hi"}, "wait")
                message["metadata"] = {"guildnet.caller": w.bob.did, "slm": slm, "caller": w.bob.did}
                task = (await alice.send_message(w.endpoint, message))["task"]
                assert task["status"]["state"] == a2a.COMPLETED
                assert jws.verify_json(task["metadata"]["guildnet.receipt"])[1]["caller"] == w.alice.did
            # The node scrubs in the background; its first records wait for the name models to load, which
            # under a loaded machine outlasts the few seconds a stopping node gives its queue.
            rows = await process_rows(w.db, "model, escalated, escalation_reason", count=2, where="direction = 'in'")
    assert rows == [(None, 0, None), (None, 0, None)]



async def _initialize(http: aiohttp.ClientSession, url: str) -> int:
    async with http.post(url, json=INITIALIZE, headers=MCP_HEADERS) as response:
        await response.read()
        return response.status


@pytest.mark.slow
async def test_one_address_cannot_take_every_mcp_session(tmp_path: Path) -> None:
    """3,000 anonymous initialize calls from one address (127.0.0.2) get 64 sessions and then 429; a client
    on another address (127.0.0.1) still gets its session."""
    async with world(tmp_path, anonymous="loopback") as w:
        attacker = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), limit=32)
        async with aiohttp.ClientSession(connector=attacker) as http:
            statuses: list[int] = []
            for _ in range(30):
                statuses += await asyncio.gather(*(_initialize(http, f"{w.node}/mcp") for _ in range(100)))
        assert statuses.count(200) == 64 and statuses.count(429) == 3000 - 64
        async with aiohttp.ClientSession() as http:
            assert await _initialize(http, f"{w.node}/mcp") == 200


async def _mcp(url: str, key: SigningKey, method: str, params: dict[str, Any], name: str) -> dict[str, Any]:
    """One signed 2026-07-28 request declaring the tasks extension; the JSON-RPC reply."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}
    body = request(method, {**params, "_meta": meta})
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method, "Mcp-Name": name,
               "Authorization": f"Bearer {sign_call(key.did, key, method='POST', url=url, body=body)}"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        return dict(await response.json())


async def test_an_mcp_task_is_its_callers_a2a_task_and_nobody_elses(tmp_path: Path) -> None:
    """Alice's MCP task: Bob cannot read or cancel it over MCP or A2A; Alice reads the same task over A2A."""
    async with world(tmp_path) as w, signed(w.alice) as alice, signed(w.bob) as bob:
        url = f"{w.node}/mcp"
        created = (await _mcp(url, w.alice, "tools/call", {"name": "wait", "arguments": {"text": "secret",
                                                                                           "seconds": 0.5}},
                              "wait"))["result"]
        assert created["resultType"] == "task"
        task_id = created["taskId"]
        for method in ("tasks/get", "tasks/cancel"):
            refused = await _mcp(url, w.bob, method, {"taskId": task_id}, task_id)
            assert refused["error"]["code"] == -32602, refused
        with pytest.raises(a2a.A2AError) as hidden:
            await bob.get_task(w.endpoint, task_id)
        assert hidden.value.code == a2a.TASK_NOT_FOUND
        for _ in range(100):
            task = (await _mcp(url, w.alice, "tasks/get", {"taskId": task_id}, task_id))["result"]
            if task["status"] != "working":
                break
            await asyncio.sleep(0.1)
        assert task["status"] == "completed" and task["result"]["structuredContent"] == {"text": "secret"}
        same = await alice.get_task(w.endpoint, task_id)
        assert same["status"]["state"] == a2a.COMPLETED
        assert same["artifacts"][0]["parts"][0]["data"] == {"text": "secret"}
