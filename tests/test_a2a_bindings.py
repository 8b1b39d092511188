"""The official a2a-sdk 1.3 client against the node on each of the three bindings (JSON-RPC, HTTP+JSON, gRPC),
and the same conversation over the three giving the same task histories."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    AuthenticationInfo,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
    a2a_pb2,
    a2a_pb2_grpc,
)
from a2a.utils.errors import A2AError as SdkA2AError
from a2a_support import LOOPBACK, WebhookReceiver, sdk_message, serve_a2a
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message as ProtoMessage

from guildnet.node.a2a.proto_json import to_json, to_message
from guildnet.node.a2a.push import PushService
from guildnet.node.a2a.push_store import InMemoryPushStore
from guildnet.node.a2a.store import InMemoryTaskStore
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import a2a
from guildnet.protocols.a2a import push as wire
from guildnet.protocols.callerauth import sign_call
from guildnet.protocols.jws import b64url_decode
from guildnet.protocols.keys import SigningKey

BINDINGS = [a2a.BINDING_JSONRPC, a2a.BINDING_HTTP_JSON, a2a.BINDING_GRPC]
TERMINAL = (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_FAILED)




class Node:
    """The node on every binding with push, its webhook receiver, and SDK clients bound to one binding."""

    def __init__(self, base: str, keys: dict[str, SigningKey], http: httpx.AsyncClient, receiver: WebhookReceiver,
                 push: PushService) -> None:
        self.base, self.keys, self.http, self.receiver, self.push = base, keys, http, receiver, push
        self.cards: dict[str, AgentCard] = {}

    async def client(self, agent: str, binding: str, *, streaming: bool = False) -> Any:
        if agent not in self.cards:
            self.cards[agent] = await A2ACardResolver(self.http, f"{self.base}/agents/{agent}").get_agent_card()
        config = ClientConfig(streaming=streaming, httpx_client=self.http, supported_protocol_bindings=[binding],
                              grpc_channel_factory=grpc.aio.insecure_channel)
        return ClientFactory(config).create(self.cards[agent])


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    keys = {"echo": SigningKey.generate(), "slow": SigningKey.generate()}
    push = PushService(InMemoryPushStore(), {n: StaticIdentity(k) for n, k in keys.items()}, allow_networks=LOOPBACK,
                       backoff_base=0.1)
    receiver = WebhookReceiver()
    await receiver.start()
    async with serve_a2a(InMemoryTaskStore(), keys=keys, push=push, grpc=True, extended_card=True) as (base, _), \
            httpx.AsyncClient(timeout=30) as http:
        try:
            yield Node(base, keys, http, receiver, push)  # the service's lifespan opens and closes push
        finally:
            await receiver.stop()


async def test_cards_list_every_binding(node: Node) -> None:
    card = await A2ACardResolver(node.http, f"{node.base}/agents/echo").get_agent_card()
    bindings = [(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces]
    assert bindings == [(b, "1.0") for b in BINDINGS]
    assert card.supported_interfaces[2].tenant == "echo"
    assert card.capabilities.push_notifications and card.capabilities.extended_agent_card


@pytest.mark.parametrize("binding", BINDINGS)
async def test_sdk_client_on_each_binding(node: Node, binding: str) -> None:
    echo = await node.client("echo", binding)
    slow = await node.client("slow", binding)

    # Send (blocking), get, list.
    events = [e async for e in echo.send_message(SendMessageRequest(message=sdk_message({"text": "hi"})))]
    task = events[0].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert MessageToDict(task.artifacts[0].parts[0].data) == {"text": "hi"}
    assert (await echo.get_task(GetTaskRequest(id=task.id))).id == task.id
    listed = await echo.list_tasks(ListTasksRequest(context_id=task.context_id))
    assert [t.id for t in listed.tasks] == [task.id]

    # Stream: task, working, artifact, completed.
    stream = (await node.client("slow", binding, streaming=True)).send_message(
        SendMessageRequest(message=sdk_message({"seconds": 0}, "wait")))
    assert [e.WhichOneof("payload") async for e in stream] == ["task", "status_update", "artifact_update",
                                                                "status_update"]

    # Cancel a running task; subscribe to another until it completes.
    start = SendMessageRequest(message=sdk_message({"seconds": 10}, "wait"))
    start.configuration.return_immediately = True
    running = (await anext(slow.send_message(start))).task
    assert (await slow.cancel_task(CancelTaskRequest(id=running.id))).status.state == TaskState.TASK_STATE_CANCELED
    start = SendMessageRequest(message=sdk_message({"seconds": 0.3}, "wait"))
    start.configuration.return_immediately = True
    running = (await anext(slow.send_message(start))).task
    subscriber = await node.client("slow", binding, streaming=True)
    updates = [e async for e in subscriber.subscribe(SubscribeToTaskRequest(id=running.id))]
    assert updates[0].HasField("task")
    assert updates[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED

    # Push config CRUD on a finished task.
    config = TaskPushNotificationConfig(task_id=task.id, id="hook-1", url=node.receiver.url,
                                        authentication=AuthenticationInfo(scheme="Bearer", credentials="s3cret"))
    created = await echo.create_task_push_notification_config(config)
    assert (created.id, created.url) == ("hook-1", node.receiver.url)
    got = await echo.get_task_push_notification_config(GetTaskPushNotificationConfigRequest(task_id=task.id,
                                                                                            id="hook-1"))
    assert got.authentication.credentials == "s3cret"
    configs = await echo.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task.id))
    assert [c.id for c in configs.configs] == ["hook-1"]
    await echo.delete_task_push_notification_config(DeleteTaskPushNotificationConfigRequest(task_id=task.id,
                                                                                            id="hook-1"))
    with pytest.raises(SdkA2AError):
        await echo.get_task_push_notification_config(GetTaskPushNotificationConfigRequest(task_id=task.id,
                                                                                          id="hook-1"))

    # A received push: a task started with a webhook; its completion arrives there, signed by the agent.
    start = SendMessageRequest(message=sdk_message({"seconds": 0.1}, "wait"))
    start.configuration.return_immediately = True
    start.configuration.task_push_notification_config.CopyFrom(TaskPushNotificationConfig(
        url=node.receiver.url, token="tok-1", authentication=AuthenticationInfo(scheme="Bearer", credentials="s3")))
    pushed = (await anext(slow.send_message(start))).task

    def completed(receiver: WebhookReceiver) -> bool:
        return any(json.loads(body).get("statusUpdate", {}).get("taskId") == pushed.id
                   and json.loads(body)["statusUpdate"]["status"]["state"] == a2a.COMPLETED
                   for _, body in receiver.received)

    async with asyncio.timeout(10):
        await node.receiver.wait_for(completed)
    headers, body = next((h, b) for h, b in node.receiver.received if pushed.id in b.decode())
    assert headers["Authorization"] == "Bearer s3" and headers[wire.TOKEN_HEADER] == "tok-1"
    card_kid = json.loads(b64url_decode(node.cards["slow"].signatures[0].protected))["kid"]
    claims = wire.verify_notification(headers[wire.SIGNATURE_HEADER], expected_did=card_kid, url=node.receiver.url,
                                      body=body)
    assert claims["tid"] == pushed.id and claims["jti"] == headers[wire.EVENT_ID_HEADER]

    # The extended card, on this binding too.
    extended = await echo.get_extended_agent_card(GetExtendedAgentCardRequest())
    assert extended.name == "echo"


def _shape(value: Any) -> Any:
    """A task or event with what differs from run to run (ids, times, signatures) taken out."""
    volatile = {"id", "taskId", "contextId", "messageId", "artifactId", "timestamp", "guildnet.receipt"}
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


async def _conversation(node: Node, binding: str) -> list[Any]:
    """One scripted conversation: a blocking send, a stream, a follow-up get, a cancel, a bad request."""
    echo = await node.client("echo", binding)
    slow = await node.client("slow", binding)
    script: list[Any] = []
    sent = [MessageToDict(e) async for e in echo.send_message(SendMessageRequest(message=sdk_message({"text": "a"})))]
    script.append(_shape(sent))
    task_id = sent[0]["task"]["id"]
    script.append(_shape(MessageToDict(await echo.get_task(GetTaskRequest(id=task_id, history_length=1)))))
    streamer = await node.client("slow", binding, streaming=True)
    script.append(_shape([MessageToDict(e) async for e in streamer.send_message(
        SendMessageRequest(message=sdk_message({"seconds": 0}, "wait")))]))
    start = SendMessageRequest(message=sdk_message({"seconds": 10}, "wait"))
    start.configuration.return_immediately = True
    running = (await anext(slow.send_message(start))).task
    script.append(_shape(MessageToDict(await slow.cancel_task(CancelTaskRequest(id=running.id)))))
    with pytest.raises(SdkA2AError) as refused:
        await echo.get_task(GetTaskRequest(id="no-such-task"))
    script.append(type(refused.value).__name__)
    return script


async def test_the_three_bindings_give_the_same_histories(node: Node) -> None:
    runs = {binding: await _conversation(node, binding) for binding in BINDINGS}
    assert runs[a2a.BINDING_HTTP_JSON] == runs[a2a.BINDING_JSONRPC]
    assert runs[a2a.BINDING_GRPC] == runs[a2a.BINDING_JSONRPC]
    assert runs[a2a.BINDING_JSONRPC][-1] == "TaskNotFoundError"


async def test_proto_json_converts_as_parse_dict_and_message_to_dict_do(node: Node) -> None:
    """The gRPC binding's fast conversions give the very messages ``ParseDict`` gives and the very objects
    ``MessageToDict`` gives (they replace them), requests included."""
    message = {"messageId": "m1", "role": "ROLE_AGENT", "parts": [
        {"data": {"text": "hello", "n": [1, 2.5, {"a": None, "b": True}]}, "metadata": {"k": "v"}},
        {"raw": "dGNr", "mediaType": "text/plain", "filename": "x.txt"}, {"url": "https://example.com/x"},
        {"text": "plain"}, {"data": {}}, {"data": []}, {"data": None}, {"data": [{}, []], "metadata": {}}],
        "metadata": {"skill": "echo"}, "referenceTaskIds": ["r1"], "extensions": ["urn:x"]}  # empty data: still data
    status = {"state": "TASK_STATE_COMPLETED", "timestamp": "2026-11-29T14:00:00.123456789Z", "message": message}
    artifact = {"artifactId": "a1", "name": "n", "parts": [{"text": "p"}], "extensions": ["urn:e"]}
    task = {"id": "t1", "contextId": "c1", "status": status, "history": [message], "metadata": {"x": {"y": [1]}},
            "artifacts": [artifact], "unknownField": 1}
    cases: list[tuple[dict[str, Any], type[ProtoMessage]]] = [
             ({"task": task}, a2a_pb2.SendMessageResponse), ({"message": message}, a2a_pb2.StreamResponse),
             ({"artifactUpdate": {"taskId": "t1", "contextId": "c1", "artifact": artifact,
                                  "append": True, "lastChunk": False}}, a2a_pb2.StreamResponse),
             ({"statusUpdate": {"taskId": "t1", "contextId": "c1", "status": {
                 "state": "TASK_STATE_WORKING", "timestamp": "2026-11-29T16:00:00.5+02:00"}}}, a2a_pb2.StreamResponse),
             *(({"statusUpdate": {"status": {"state": "TASK_STATE_WORKING", "timestamp": moment}}},
                a2a_pb2.StreamResponse)
               for moment in ("1969-12-31T23:59:59.5Z", "2026-11-29T14:00:00Z", "0001-01-01T00:00:00.000001Z")),
             ({"tasks": [task], "nextPageToken": "", "pageSize": 50, "totalSize": 1}, a2a_pb2.ListTasksResponse),
             ({"configs": [{"id": "c", "taskId": "t", "url": "https://h", "authentication": {"scheme": "Bearer"}}]},
              a2a_pb2.ListTaskPushNotificationConfigsResponse)]
    card = (await node.http.get(f"{node.base}/agents/echo/.well-known/agent-card.json")).json()
    cases.append((card, a2a_pb2.AgentCard))
    cases += [({"message": message, "configuration": {"returnImmediately": True, "historyLength": 3,
                                                      "acceptedOutputModes": ["application/json"]},
               "metadata": {"k": [1, None]}, "tenant": "echo"}, a2a_pb2.SendMessageRequest),
              ({"id": "t1", "historyLength": 0}, a2a_pb2.GetTaskRequest), ({}, a2a_pb2.ListTasksRequest)]
    for value, kind in cases:
        parsed = ParseDict(value, kind(), ignore_unknown_fields=True)
        assert to_message(value, kind()) == parsed, kind
        assert to_json(parsed) == MessageToDict(parsed), kind
    with pytest.raises(ValueError):
        to_message({"task": {"status": {"state": "TASK_STATE_NOPE"}}}, a2a_pb2.SendMessageResponse())


async def test_a_required_extension_is_enforced_on_every_binding() -> None:
    extension = "urn:guildnet:test:required"
    async with serve_a2a(InMemoryTaskStore(), grpc=True, required_extensions=[extension]) as (base, service), \
            httpx.AsyncClient(timeout=30) as http:
        card = service.cards["echo"]
        assert card["capabilities"]["extensions"] == [{"uri": extension, "required": True}]
        body = {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"data": {"text": "x"}}]}}
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": body}
        refused = (await http.post(f"{base}/agents/echo/a2a", json=rpc, headers={"A2A-Version": "1.0"})).json()
        assert refused["error"]["code"] == a2a.EXTENSION_SUPPORT_REQUIRED
        accepted = (await http.post(f"{base}/agents/echo/a2a", json=rpc,
                                    headers={"A2A-Version": "1.0", "A2A-Extensions": f"urn:other, {extension}"})).json()
        assert accepted["result"]["task"]["status"]["state"] == a2a.COMPLETED
        rest = await http.post(f"{base}/agents/echo/rest/message:send", json=body, headers={"A2A-Version": "1.0"})
        assert rest.status_code == 400
        assert rest.json()["error"]["details"][0]["reason"] == "EXTENSION_SUPPORT_REQUIRED"
        grpc_url = card["supportedInterfaces"][2]["url"]
        async with grpc.aio.insecure_channel(grpc_url) as channel:
            stub = a2a_pb2_grpc.A2AServiceStub(channel)  # type: ignore[no-untyped-call]
            request = ParseDict({**body, "tenant": "echo"}, a2a_pb2.SendMessageRequest())
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.SendMessage(request, metadata=(("a2a-version", "1.0"),))
            assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            reply = await stub.SendMessage(request, metadata=(("a2a-version", "1.0"), ("a2a-extensions", extension)))
            assert reply.task.status.state == TaskState.TASK_STATE_COMPLETED


async def test_a_signed_grpc_call_names_its_caller() -> None:
    """Over gRPC a guildnet caller signs the method's path and the request's deterministic bytes; the task is then
    its own, and an anonymous caller does not see it."""
    caller = SigningKey.generate()
    async with serve_a2a(InMemoryTaskStore(), grpc=True) as (_base, service):
        grpc_url = service.cards["echo"]["supportedInterfaces"][2]["url"]
        async with grpc.aio.insecure_channel(grpc_url) as channel:
            stub = a2a_pb2_grpc.A2AServiceStub(channel)  # type: ignore[no-untyped-call]
            request = a2a_pb2.SendMessageRequest(message=sdk_message({"text": "x"}), tenant="echo")
            token = sign_call(caller.did, caller, method="POST", url=f"{grpc_url}/lf.a2a.v1.A2AService/SendMessage",
                              body=request.SerializeToString(deterministic=True))
            reply = await stub.SendMessage(request, metadata=(("a2a-version", "1.0"),
                                                              ("authorization", f"Bearer {token}")))
            assert reply.task.status.state == TaskState.TASK_STATE_COMPLETED
            stored = await service.tasks["echo"].store.get("echo", reply.task.id)
            assert stored is not None and stored.owner == caller.did
            with pytest.raises(grpc.aio.AioRpcError) as hidden:
                await stub.GetTask(a2a_pb2.GetTaskRequest(id=reply.task.id, tenant="echo"),
                                   metadata=(("a2a-version", "1.0"),))
            assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as forged:  # the token was for another request
                await stub.SendMessage(a2a_pb2.SendMessageRequest(message=sdk_message({"text": "y"}), tenant="echo"),
                                       metadata=(("a2a-version", "1.0"), ("authorization", f"Bearer {token}")))
            assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED
