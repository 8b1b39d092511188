"""Our A2A client on each binding a node's card offers: every operation, signed on each (the callee stores the
task as the signing caller's), the fastest measured preferred, the next binding when one cannot be reached,
and the same bounds against a hostile peer on gRPC and HTTP+JSON as on JSON-RPC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from a2a.types import a2a_pb2
from a2a_support import free_port, serve_a2a
from aiohttp import web

from guildnet.node.a2a.client import DOWN_SECONDS, EXPLORE_EVERY, A2AClient, A2AClientError, Interface, card_url
from guildnet.node.a2a.grpc_wire import SERVICE
from guildnet.node.a2a.store import InMemoryTaskStore
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import a2a
from guildnet.protocols.keys import SigningKey

BINDINGS = [a2a.BINDING_JSONRPC, a2a.BINDING_HTTP_JSON, a2a.BINDING_GRPC]


@pytest.mark.parametrize("binding", BINDINGS)
async def test_every_operation_on_each_binding_is_signed_and_the_same(binding: str) -> None:
    caller = SigningKey.generate()
    async with serve_a2a(InMemoryTaskStore(), grpc=True) as (base, service), \
            A2AClient(signer=StaticIdentity(caller), bindings=(binding,)) as client:
        card = await client.resolve_card(f"{base}/agents/echo")
        assert client.pick(card).binding == binding
        task, output = await client.call_skill(card, "echo", {"text": "a"})
        assert output == {"text": "a"} and task["status"]["state"] == a2a.COMPLETED
        stored = await service.tasks["echo"].store.get("echo", task["id"])
        assert stored is not None and stored.owner == caller.did  # the callee verified our token on this binding
        assert (await client.get_task(card, task["id"], history_length=0))["id"] == task["id"]
        listed = await client.list_tasks(card, context_id=task["contextId"])
        assert [t["id"] for t in listed["tasks"]] == [task["id"]]
        with pytest.raises(a2a.A2AError) as missing:
            await client.get_task(card, "no-such-task")
        assert missing.value.code == a2a.TASK_NOT_FOUND
        with pytest.raises(a2a.A2AError) as invalid:  # the peer's own refusal, in its code, on every binding
            await client.call_skill(card, "echo", {"txt": 1})
        assert invalid.value.code == a2a.INVALID_PARAMS

        slow = await client.resolve_card(f"{base}/agents/slow")
        started = (await client.send_message(slow, a2a.skill_request({"seconds": 10}, "wait"),
                                             return_immediately=True))["task"]
        assert (await client.cancel_task(slow, started["id"]))["status"]["state"] == a2a.CANCELED
        events = [e async for e in client.stream(slow, a2a.skill_request({"seconds": 0}, "wait"))]
        assert "task" in events[0] and events[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED
        running = (await client.send_message(slow, a2a.skill_request({"seconds": 0.2}, "wait"),
                                             return_immediately=True))["task"]
        subscribed = [e async for e in client.subscribe(slow, running["id"])]
        assert subscribed[0]["task"]["id"] == running["id"]
        assert subscribed[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED
        assert set(client.round_trips) == {i.url for i in (client.pick(card), client.pick(slow))}


async def test_a_binding_that_is_down_falls_back_to_the_next_and_is_left_aside() -> None:
    """The signed card lists gRPC, but nothing listens there: the call goes on JSON-RPC at once."""
    async with serve_a2a(InMemoryTaskStore(), grpc=True, grpc_listens=False) as (base, _), \
            A2AClient(signer=StaticIdentity(SigningKey.generate())) as client:
        card = await client.resolve_card(f"{base}/agents/echo")
        rpc, rest, dead = (Interface(i["protocolBinding"], i["url"], i.get("tenant"))
                           for i in card["supportedInterfaces"])
        client.round_trips.update({rpc.url: 0.5, rest.url: 0.9})  # measured: gRPC is the one left to try
        assert client.pick(card) == dead
        _, output = await client.call_skill(card, "echo", {"text": "x"})
        assert output == {"text": "x"}
        assert client.down[dead.url] > time.monotonic() + DOWN_SECONDS - 5  # left aside for a while
        assert client.round_trips[rpc.url] < 0.5  # answered on the next fastest, JSON-RPC, and measured there
        assert client.pick(card) == rpc
        client.down.clear()
        client.round_trips.pop(dead.url, None)
        events = [e async for e in client.stream(card, a2a.skill_request({"text": "y"}, "echo"))]  # streams too
        assert events[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED and dead.url in client.down


async def test_the_fastest_measured_binding_is_preferred_and_the_others_measured_again() -> None:
    async with serve_a2a(InMemoryTaskStore(), grpc=True) as (base, _), \
            A2AClient(signer=StaticIdentity(SigningKey.generate())) as client:
        card = await client.resolve_card(f"{base}/agents/echo")
        offered = [i["url"] for i in card["supportedInterfaces"]]
        for expected in offered:  # each once, in the card's order
            assert client.pick(card).url == expected
            await client.call_skill(card, "echo", {"text": "x"})
        assert set(client.round_trips) == set(offered)
        client.round_trips.update({offered[0]: 9.0, offered[1]: 9.0, offered[2]: 0.001})
        chosen = []
        for _ in range(EXPLORE_EVERY * 2):
            chosen.append(client.pick(card).url)
            await client.call_skill(card, "echo", {"text": "x"})
            client.round_trips[offered[2]] = 0.001  # keep gRPC the fastest whatever it measured
        assert chosen.count(offered[2]) >= EXPLORE_EVERY * 2 - 2  # the fastest, but for a re-measure now and then
        assert set(chosen) > {offered[2]}


async def test_the_card_beside_a_json_rpc_endpoint() -> None:
    assert card_url("http://h:1/agents/x/a2a") == "http://h:1/agents/x/.well-known/agent-card.json"
    assert card_url("http://h:1/") == "http://h:1/.well-known/agent-card.json"
    assert card_url("http://h:1") == "http://h:1/.well-known/agent-card.json"


# ---- hostile peers on the other bindings -----------------------------------------------------------------


def _big_task(size: int) -> a2a_pb2.SendMessageResponse:
    reply = a2a_pb2.SendMessageResponse()
    reply.task.id = "t"
    reply.task.status.state = a2a_pb2.TASK_STATE_COMPLETED
    reply.task.artifacts.add().parts.add().text = "x" * size
    return reply


@asynccontextmanager
async def hostile_grpc(behaviour: str) -> AsyncIterator[str]:
    """A gRPC server that answers SendMessage with ``big`` (5 MB) or ``never`` (hangs)."""
    async def send(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if behaviour == "never":
            await asyncio.sleep(3600)
        return bytes(_big_task(5 * 1024 * 1024).SerializeToString())

    handler = grpc.method_handlers_generic_handler(SERVICE, {"SendMessage": grpc.unary_unary_rpc_method_handler(send)})
    server = grpc.aio.server(options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _card(binding: str, url: str) -> dict[str, Any]:
    return {"name": "mallory", "supportedInterfaces": [{"protocolBinding": binding, "url": url,
                                                        "protocolVersion": "1.0"}]}


async def test_a_5_mb_grpc_reply_is_refused_unread() -> None:
    async with hostile_grpc("big") as url, A2AClient(max_response_bytes=1024 * 1024) as client:
        started = time.monotonic()
        with pytest.raises(A2AClientError, match="larger than"):
            await client.call_skill(_card(a2a.BINDING_GRPC, url), "echo", {"text": "x"})
        assert time.monotonic() - started < 5


async def test_a_grpc_peer_that_never_answers_costs_only_the_deadline() -> None:
    async with hostile_grpc("never") as url, A2AClient(timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(A2AClientError, match="DEADLINE_EXCEEDED"):
            await client.call_skill(_card(a2a.BINDING_GRPC, url), "echo", {"text": "x"})
        assert 0.9 < time.monotonic() - started < 5
        started = time.monotonic()  # and the caller's own deadline cuts it shorter
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.call_skill(_card(a2a.BINDING_GRPC, url), "echo", {"text": "x"})
        assert time.monotonic() - started < 1


@pytest.mark.parametrize("behaviour", ["big", "redirect", "unavailable"])
async def test_hostile_http_json_replies_are_bounded(behaviour: str) -> None:
    async def send(request: web.Request) -> web.StreamResponse:
        if behaviour == "redirect":
            raise web.HTTPFound("http://127.0.0.1:9/steal")
        if behaviour == "unavailable":
            return web.Response(status=503)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(800):  # 800 MB if it were read to the end
            await response.write(b" " * (1024 * 1024))
        return response

    app = web.Application()
    app.router.add_post("/rest/message:send", send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with A2AClient(max_response_bytes=1024 * 1024) as client:
            card = _card(a2a.BINDING_HTTP_JSON, f"http://127.0.0.1:{port}/rest")
            started = time.monotonic()
            with pytest.raises(A2AClientError, match={"big": "larger than", "redirect": "redirects",
                                                      "unavailable": "HTTP 503"}[behaviour]):
                await client.call_skill(card, "echo", {"text": "x"})
            assert time.monotonic() - started < 5
    finally:
        await runner.cleanup()
