"""Interop with the official a2a-sdk 1.3: its client against our server, our client against its server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore as SdkTaskStore
from a2a.server.tasks import TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Part,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import A2AError as SdkA2AError
from a2a.utils.signing import create_signature_verifier
from a2a_support import free_port, sdk_message, serve_a2a
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette

from guildnet.node.a2a.client import A2AClient, A2AClientError
from guildnet.node.a2a.store import InMemoryTaskStore
from guildnet.protocols import a2a
from guildnet.protocols.did import public_key_from_did
from guildnet.protocols.jws import b64url_decode


def _pem_for(did: str) -> bytes:
    pem: bytes = public_key_from_did(did).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return pem


# --------------------------------------------------------------------------------------------------------------
# The official client against our server
# --------------------------------------------------------------------------------------------------------------


async def test_sdk_client_against_our_node() -> None:
    async with serve_a2a(InMemoryTaskStore()) as (base, service), httpx.AsyncClient(timeout=30) as http:
        # Card: resolved by the SDK resolver and its signature checked by the SDK's own verifier.
        did = json.loads(b64url_decode(service.cards["echo"]["signatures"][0]["protected"]))["kid"]
        verifier = create_signature_verifier(lambda kid, _jku: _pem_for(str(kid)), algorithms=["EdDSA"])
        card = await A2ACardResolver(http, f"{base}/agents/echo").get_agent_card(signature_verifier=verifier)
        assert card.name == "echo" and card.capabilities.streaming
        assert card.supported_interfaces[0].url == f"{base}/agents/echo/a2a"
        assert did.startswith("did:key:z6Mk")
        tampered = AgentCard()
        tampered.CopyFrom(card)
        tampered.description = "something else"
        with pytest.raises(Exception, match="No valid signature"):
            verifier(tampered)

        def client(streaming: bool, card: AgentCard = card) -> Any:
            return ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)

        # Send (blocking) -> a completed task whose artifact carries the skill output.
        request = SendMessageRequest(message=sdk_message({"text": "hi"}))
        events = [e async for e in client(False).send_message(request)]
        assert len(events) == 1 and events[0].HasField("task")
        task = events[0].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert MessageToDict(task.artifacts[0].parts[0].data) == {"text": "hi"}

        # Get, with and without history.
        got = await client(False).get_task(GetTaskRequest(id=task.id))
        assert got.id == task.id and len(got.history) == 1
        got = await client(False).get_task(GetTaskRequest(id=task.id, history_length=0))
        assert len(got.history) == 0

        # List: the task is there, filtered by its context.
        listed = await client(False).list_tasks(ListTasksRequest(context_id=task.context_id))
        assert [t.id for t in listed.tasks] == [task.id] and listed.total_size == 1

        # Stream: task first, then working, artifact, completed.
        slow_card = await A2ACardResolver(http, f"{base}/agents/slow").get_agent_card()
        stream = client(True, slow_card).send_message(
            SendMessageRequest(message=sdk_message({"seconds": 0}, "wait")))
        kinds = [e.WhichOneof("payload") async for e in stream]
        assert kinds == ["task", "status_update", "artifact_update", "status_update"]

        # Cancel a running task, then subscribe to a running one until it completes.
        slow = client(False, slow_card)
        start = SendMessageRequest(message=sdk_message({"seconds": 10}, "wait"))
        start.configuration.return_immediately = True
        running = (await anext(slow.send_message(start))).task
        assert running.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        canceled = await slow.cancel_task(CancelTaskRequest(id=running.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED

        start = SendMessageRequest(message=sdk_message({"seconds": 0.2}, "wait"))
        start.configuration.return_immediately = True
        running = (await anext(slow.send_message(start))).task
        updates = [e async for e in client(True, slow_card).subscribe(SubscribeToTaskRequest(id=running.id))]
        assert updates[0].HasField("task")
        assert updates[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED

        # A bad request: input that breaks the skill schema is refused with invalid params, no task made.
        with pytest.raises(SdkA2AError) as refused:
            [e async for e in client(False).send_message(SendMessageRequest(message=sdk_message({"txt": 1})))]
        assert "does not match" in str(refused.value)
        assert (await client(False).list_tasks(ListTasksRequest())).total_size == 1


# --------------------------------------------------------------------------------------------------------------
# Our client against the official server
# --------------------------------------------------------------------------------------------------------------


class _SdkEcho(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        data = MessageToDict(context.message.parts[0].data) if context.message.parts[0].HasField("data") else {}
        if data.get("seconds"):
            await asyncio.sleep(float(data["seconds"]))
        value = struct_pb2.Value()
        value.struct_value.update({"echo": data})
        await updater.add_artifact([Part(data=value)], name="echo")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


async def _sdk_server() -> AsyncIterator[str]:
    """a2a-sdk's own server on its three bindings: JSON-RPC at /rpc, HTTP+JSON under /rest, gRPC on a port."""
    import grpc
    from a2a.server.request_handlers import GrpcHandler
    from a2a.types import a2a_pb2_grpc

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    grpc_port = free_port()
    card = AgentCard(
        name="sdk-echo", description="a2a-sdk echo", version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"{base}/rpc", protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=f"{base}/rest", protocol_binding="HTTP+JSON", protocol_version="1.0"),
            AgentInterface(url=f"127.0.0.1:{grpc_port}", protocol_binding="GRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True), default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=[AgentSkill(id="echo", name="Echo", description="Echo", tags=["echo"])])
    handler = DefaultRequestHandler(agent_executor=_SdkEcho(), task_store=SdkTaskStore(), agent_card=card)
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/rpc"),
                            *create_rest_routes(handler, path_prefix="/rest")])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    grpc_server = grpc.aio.server()
    a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), grpc_server)  # type: ignore[no-untyped-call]
    grpc_server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await grpc_server.start()
    for _ in range(500):  # uvicorn offers a flag, not an event, for "listening"
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield base
    finally:
        await grpc_server.stop(0)
        server.should_exit = True
        await serving


@pytest.fixture
async def sdk_server() -> AsyncIterator[str]:
    async for base in _sdk_server():
        yield base


@pytest.mark.parametrize("binding", [a2a.BINDING_JSONRPC, a2a.BINDING_HTTP_JSON, a2a.BINDING_GRPC])
async def test_our_client_against_sdk_server(sdk_server: str, binding: str) -> None:
    """Every operation our client makes, on each binding the SDK's server offers, answered as the SDK means it."""
    async with A2AClient(bindings=(binding,)) as client:
        card = await client.resolve_card(sdk_server)
        assert card["name"] == "sdk-echo"
        assert client.pick(card).binding == binding

        task, output = await client.call_skill(card, "echo", {"text": "hello"})
        assert task["status"]["state"] == a2a.COMPLETED
        assert output == {"echo": {"text": "hello"}}
        assert set(client.round_trips) == {client.pick(card).url}  # measured on that binding alone

        fetched = await client.get_task(card, task["id"])
        assert fetched["id"] == task["id"] and fetched["status"]["state"] == a2a.COMPLETED

        events = [e async for e in client.stream(card, a2a.skill_request({"text": "s"}))]
        assert next(iter(events[0])) == "task"
        assert events[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED
        assert any("artifactUpdate" in e for e in events)

        listed = await client.list_tasks(card)
        assert {t["id"] for t in listed["tasks"]} >= {task["id"]}

        started = await client.send_message(card, a2a.skill_request({"seconds": 5}), return_immediately=True)
        canceled = await client.cancel_task(card, started["task"]["id"])
        assert canceled["status"]["state"] == a2a.CANCELED

        with pytest.raises(a2a.A2AError) as missing:
            await client.get_task(card, "no-such-task")
        assert missing.value.code == a2a.TASK_NOT_FOUND


async def test_our_client_verifies_card_signatures() -> None:
    async with serve_a2a(InMemoryTaskStore()) as (base, service), A2AClient() as client:
        did = json.loads(b64url_decode(service.cards["echo"]["signatures"][0]["protected"]))["kid"]
        card = await client.resolve_card(f"{base}/agents/echo", expected_did=did)
        assert card["name"] == "echo"
        other = json.loads(b64url_decode(service.cards["slow"]["signatures"][0]["protected"]))["kid"]
        with pytest.raises(a2a.CardSignatureError):
            await client.resolve_card(f"{base}/agents/echo", expected_did=other)
        with pytest.raises(A2AClientError):
            await client.resolve_card(f"{base}/agents/nobody")
