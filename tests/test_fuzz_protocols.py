"""Hostile input to a real node's A2A JSON-RPC endpoints and its MCP endpoint (/mcp), over real sockets.

Hypothesis draws random bytes, random JSON, JSON-RPC envelopes that are almost right (wrong types, unknown
methods, broken messages and parts), huge strings, deep nesting and wrong headers. Every answer must be a
JSON-RPC error in the spec's shape (or a 4xx for a fault at the HTTP level), never a 5xx, never a Python
traceback, and a refused request must change nothing: no task appears (ListTasks) and the agent's handler
never runs (it counts its calls).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from guildnet.node.a2a.service import A2AService
from guildnet.node.a2a.store import InMemoryTaskStore
from guildnet.node.agent import FunctionAgent
from guildnet.node.identity import StaticIdentity
from guildnet.node.mcp.server import setup_mcp
from guildnet.node.node import Node
from guildnet.node.publisher import PublishedAgent
from guildnet.protocols import a2a
from guildnet.protocols.keys import SigningKey

A2A_HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}


class TextIn(BaseModel):
    text: str = Field(max_length=1000)


class TextOut(BaseModel):
    text: str


@dataclass
class Calls:
    count: int = 0


def counting_agent(calls: Calls) -> FunctionAgent:
    agent = FunctionAgent("echo", description="Echoes text and counts its calls")

    async def echo(data: TextIn) -> TextOut:
        calls.count += 1
        return TextOut(text=data.text)

    agent.add_skill(echo, id="echo", name="Echo", description="Returns its text", tags=["text"])
    return agent


@dataclass
class LiveNode:
    url: str
    calls: Calls


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[LiveNode]:
    """The node's real aiohttp app (Node.build_app: A2A, MCP, process log, SQLite task store) on 127.0.0.1."""
    calls = Calls()
    built = Node(org_name="fuzz", org_key=SigningKey.generate(),
                 agents=[PublishedAgent(counting_agent(calls), StaticIdentity.generate())],
                 base_url="http://127.0.0.1", db_url=f"sqlite+aiosqlite:///{tmp_path}/node.db")
    runner = web.AppRunner(built.build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield LiveNode(f"http://127.0.0.1:{runner.addresses[0][1]}", calls)
    finally:
        await runner.cleanup()


# ---- strategies -----------------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)


def nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


wrong_parts = st.lists(st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"text": json_values, "data": json_values, "raw": json_values,
                                        "url": json_values, "mediaType": json_values, "metadata": json_values}),
), max_size=3)
wrong_messages = st.one_of(json_values, st.fixed_dictionaries(
    {"parts": wrong_parts},
    optional={"messageId": json_values | st.text(min_size=1), "role": st.sampled_from(["ROLE_USER", "user", 1]),
              "taskId": json_values, "contextId": json_values, "metadata": json_values}))
params = st.one_of(
    json_values,
    st.fixed_dictionaries({"message": wrong_messages}, optional={"configuration": json_values,
                                                                "metadata": json_values}),
    st.fixed_dictionaries({}, optional={"id": json_values, "historyLength": json_values, "pageSize": json_values,
                                        "pageToken": json_values, "status": json_values,
                                        "statusTimestampAfter": json_values}),
)
A2A_03_METHODS = ("message/send", "message/stream", "tasks/get", "tasks/cancel", "tasks/resubscribe")
methods = st.sampled_from(sorted(a2a.METHODS_V1 | set(A2A_03_METHODS) | {"", "tools/call", "initialize"})) \
    | st.text(max_size=30) | json_values
envelopes = st.fixed_dictionaries(
    {"method": methods},
    optional={"jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]), "id": json_values, "params": params})
huge = st.sampled_from([10_000, 300_000]).map(lambda n: "\u00e9" * n)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(json.dumps),
    envelopes.map(json.dumps),
    st.tuples(envelopes, huge).map(lambda pair: json.dumps({**pair[0], "method": pair[1]})),
    huge.map(lambda text: json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": text, "role": "ROLE_USER", "parts": [{"text": text}]}}})),
    st.sampled_from([200, 5_000, 100_000]).map(lambda depth: json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
            "messageId": "m", "role": "ROLE_USER", "parts": [{"data": nested(min(depth, 900))}]}}})
        if depth < 1000 else "[" * depth + "]" * depth),
    st.sampled_from(["{", "[1,", '{"jsonrpc": "2.0"', "\ufeff{}", "null", "[]", '"str"']),
)
header_sets: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries({}, optional={
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                         "multipart/form-data", "application/json; charset=latin-1", "", "*/*"]),
        "A2A-Version": st.sampled_from(["1.0", "0.3", "", "2", "1.0.7", "abc" * 100]),
        "Accept": st.sampled_from(["application/json", "text/event-stream", "*/*", "text/html", ""]),
        "MCP-Protocol-Version": st.sampled_from(["2025-11-25", "2026-07-28", "1999-01-01", ""]),
        "Mcp-Session-Id": st.sampled_from(["nope", "", "x" * 300]),
    }),
)


def collect(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """Draw ``count`` examples (the server runs on this event loop, so requests are sent afterwards)."""
    drawn: list[Any] = []

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def draw(value: Any) -> None:
        drawn.append(value)

    draw()
    return drawn


def check_jsonrpc_error(doc: Any, where: str) -> None:
    """An error response as JSON-RPC 2.0 says: ``jsonrpc``, ``id`` (string, number or null), ``error`` with an
    integer ``code`` and a string ``message``; no ``result``."""
    assert isinstance(doc, dict) and doc.get("jsonrpc") == "2.0", where
    assert "result" not in doc and "id" in doc, where
    assert doc["id"] is None or (isinstance(doc["id"], str | int) and not isinstance(doc["id"], bool)), where
    error = doc["error"]
    assert isinstance(error, dict) and isinstance(error.get("code"), int) and not isinstance(error["code"], bool)
    assert isinstance(error.get("message"), str), where
    assert len(error["message"]) <= 4096, f"{where}: the error echoes {len(error['message'])} characters"


async def task_count(http: aiohttp.ClientSession, url: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"pageSize": 1}}
    async with http.post(url + "/agents/echo/a2a", json=body, headers=A2A_HEADERS) as response:
        return int((await response.json())["result"]["totalSize"])


async def test_a2a_endpoint_refuses_hostile_input_cleanly_and_creates_nothing(node: LiveNode) -> None:
    a2a_headers = st.one_of(header_sets, st.just(A2A_HEADERS))  # half get past the header checks
    examples = collect(st.tuples(bodies, a2a_headers, st.sampled_from(["/", "/agents/echo/a2a"])), 250)
    # and one of each deeper refusal, so every run reaches them whatever was drawn
    message = {"messageId": "m", "role": "ROLE_USER", "parts": [{"data": {"text": 5}}]}
    no_version = {"Content-Type": "application/json"}
    examples += [(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}), headers, "/")
                 for method, params, headers in (("SendMessage", {"message": message}, A2A_HEADERS),
                                                 ("SendMessage", {"message": message}, no_version),
                                                 ("message/send", {}, A2A_HEADERS),
                                                 ("GetTask", {"id": "x" * 5000}, A2A_HEADERS))]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        codes: set[int] = set()
        for body, headers, path in examples:
            before_tasks, before_calls = await task_count(http, node.url), node.calls.count
            async with http.post(node.url + path, data=body, headers=headers) as response:
                text = await response.text(errors="replace")
                where = f"{path} {headers} {str(body)[:300]!r} -> {response.status} {text[:300]}"
                assert response.status < 500 and "Traceback" not in text, where
                if response.status != 200:
                    assert response.status in (400, 404, 405, 408, 411, 413, 415), where
                    continue
                if response.content_type == "text/event-stream":
                    continue  # a well-formed stream request: it was accepted, not refused
                assert response.content_type == "application/json", where
                doc = json.loads(text)
            if "result" in doc:
                continue  # accepted (the fuzzer sometimes writes a valid request): state may change
            check_jsonrpc_error(doc, where)
            codes.add(doc["error"]["code"])
            assert node.calls.count == before_calls, where
            assert await task_count(http, node.url) == before_tasks, where
    # the checks behind these codes were reached
    assert {a2a.PARSE_ERROR, a2a.INVALID_REQUEST, a2a.VERSION_NOT_SUPPORTED, a2a.METHOD_NOT_FOUND,
            a2a.INVALID_PARAMS}.issubset(codes), codes


async def test_mcp_endpoint_refuses_hostile_input_cleanly_and_runs_nothing(node: LiveNode) -> None:
    tool_calls = st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": json_values, "method": st.just("tools/call")},
                                       optional={"params": st.fixed_dictionaries(
                                           {"name": st.sampled_from(["echo", "nope", ""]) | json_values},
                                           optional={"arguments": json_values, "_meta": json_values})})
    mcp_bodies = bodies | tool_calls.map(json.dumps)
    merged_headers = header_sets.map(lambda extra: {**MCP_HEADERS, **extra})
    examples = collect(st.tuples(mcp_bodies, st.one_of(header_sets, merged_headers)), 250)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        statuses: set[int] = set()
        for body, headers in examples:
            before_calls = node.calls.count
            async with http.post(node.url + "/mcp", data=body, headers=headers) as response:
                text = await response.text(errors="replace")
                where = f"{headers} {str(body)[:300]!r} -> {response.status} {text[:300]}"
                statuses.add(response.status)
                assert response.status < 500 and "Traceback" not in text, where
                if response.status >= 400 and response.content_type == "application/json":
                    check_jsonrpc_error(json.loads(text), where)
                accepted = response.status == 200 and '"isError":true' not in text.replace(" ", "") \
                    and '"error"' not in text
            if not accepted:
                assert node.calls.count == before_calls, where
    assert {400, 406}.issubset(statuses) or {400, 415}.issubset(statuses), statuses


async def test_a_slow_body_is_cut_off_with_408_on_both_endpoints(tmp_path: Path) -> None:
    agent = counting_agent(Calls())
    app = web.Application()
    setup_mcp(app, [agent], body_timeout=0.5)
    A2AService([agent], InMemoryTaskStore(), "http://127.0.0.1", {"echo": StaticIdentity.generate()},
               body_timeout=0.5).add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        for path, extra in (("/agents/echo/a2a", "A2A-Version: 1.0\r\n"),
                            ("/mcp", "Accept: application/json, text/event-stream\r\n")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
                         "Content-Length: 100\r\n\r\n{\"jsonrpc\"".encode())
            await writer.drain()  # then nothing more: the other 90 bytes never come
            async with asyncio.timeout(5):
                head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            writer.close()
            await writer.wait_closed()
            assert head.startswith("http/1.1 408") and "connection: close" in head, (path, head)
    finally:
        await runner.cleanup()
