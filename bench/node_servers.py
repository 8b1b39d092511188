"""Servers for bench/node.py, one per subprocess: ``python bench/node_servers.py KIND STORE PORT [DB_PATH]``.

KIND is ``node`` (our aiohttp app: A2AService at ``/`` plus the MCP endpoint at ``/mcp``, as a node serves
them, without the process-data recorder; HTTP+JSON under ``/agents/echo/rest``), ``node-signed`` (the same,
refusing every request that does not carry a caller token signed by the caller's agent key, as a node with
``anonymous = "off"``), ``sdk-a2a`` (a2a-sdk 1.3's JSON-RPC routes at ``/`` and REST routes under ``/rest`` in
Starlette on uvicorn), ``sdk-mcp`` (a plain ``mcp.server.MCPServer`` app on uvicorn), ``floor`` (a bare
aiohttp handler that answers every A2A request with a canned reply: the client-and-loopback floor the others
are bounded by) or ``floor-sync`` (the same, its gRPC floor on grpcio's synchronous server). STORE is
``memory`` or ``sqlite`` (ignored by ``sdk-mcp`` and the floors). Every server hosts the same echo agent: input
``{"text": ...}``, output the same object, returned by the A2A servers as one artifact with a ``data`` part and a
JSON ``text`` part. Server stacks are imported lazily, so a process loads only the one it serves; the pydantic
models live at module level because the tools' type hints must resolve there.

With ``GRPC_PORT`` in the environment, ``node`` and ``sdk-a2a`` also serve the gRPC binding on that port (ours:
node/a2a/grpc_binding.py; the SDK's: its ``GrpcHandler`` on ``grpc.aio``), in the same process and event loop, and
``floor`` answers gRPC calls with canned replies there (a bare ``grpc.aio`` handler: the gRPC floor), ``floor-sync``
the same replies from ``grpc.server`` on a thread pool (grpcio's synchronous stack: another floor, to tell whether
leaving grpc.aio could lower it).

Our node and the floor run on the event loop ``guildnet node run`` serves on (uvloop: ``cli.common.new_event_loop``),
and our node, once started, freezes its start-up heap as ``guildnet node run`` does (``cli.common.freeze_startup_heap``:
the collector's full collections no longer walk the ~150,000 objects of the loaded modules; one such collection
took a quarter of a second in this server).
a2a-sdk's A2A server runs on ``asyncio.run``'s loop (on uvloop its cost is the same: docs/a2a-bindings.md); the SDK's
MCP server on the one ``uvicorn.run`` picks (uvloop, as it is installed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import BaseModel


class EchoIn(BaseModel):
    text: str


class EchoOut(BaseModel):
    text: str


def serve_node(store: str, port: int, db_path: str | None, *, signed: bool = False) -> None:
    from aiohttp import web

    from guildnet.cli.common import freeze_startup_heap, new_event_loop
    from guildnet.node.a2a.service import A2AService
    from guildnet.node.a2a.store import InMemoryTaskStore, SqlTaskStore, TaskStore
    from guildnet.node.agent import FunctionAgent
    from guildnet.node.callers import Authenticator
    from guildnet.node.identity import StaticIdentity
    from guildnet.node.mcp.server import setup_mcp

    async def echo(data: EchoIn) -> EchoOut:
        return EchoOut(text=data.text)

    agent = FunctionAgent("echo", description="Echoes text")
    agent.add_skill(echo, id="echo", name="Echo", description="Returns its text unchanged", tags=["text"])
    task_store: TaskStore = (InMemoryTaskStore() if store == "memory"
                             else SqlTaskStore(f"sqlite+aiosqlite:///{db_path}"))
    app = web.Application()
    base = f"http://127.0.0.1:{port}"
    authenticator = Authenticator(base, anonymous="off") if signed else None
    setup_mcp(app, [agent], authenticator=authenticator, task_store=task_store)  # as a node: MCP tasks on
    grpc_port = os.environ.get("GRPC_PORT")
    service = A2AService([agent], task_store, base, {"echo": StaticIdentity.generate()}, authenticator=authenticator,
                         grpc_url=f"127.0.0.1:{grpc_port}" if grpc_port else None)
    service.add_routes(app)
    if grpc_port:
        binding = service.grpc_binding()

        async def grpc_lifespan(_app: web.Application) -> AsyncIterator[None]:
            await binding.start("127.0.0.1", int(grpc_port))
            yield
            await binding.stop(0)

        app.cleanup_ctx.append(grpc_lifespan)

    async def loaded(_app: web.Application) -> None:  # as `guildnet node run` does once all has started
        freeze_startup_heap()

    app.on_startup.append(loaded)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_event_loop())


def serve_sdk_a2a(store: str, port: int, db_path: str | None) -> None:
    import uvicorn
    from a2a.helpers import new_task_from_user_message
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
    from a2a.server.tasks import DatabaseTaskStore, InMemoryTaskStore, TaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
    from google.protobuf import struct_pb2
    from google.protobuf.json_format import MessageToDict
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine
    from starlette.applications import Starlette

    class Echo(AgentExecutor):
        async def execute(self, context: RequestContext, queue: EventQueue) -> None:
            assert context.message is not None
            task = context.current_task or new_task_from_user_message(context.message)
            await queue.enqueue_event(task)
            updater = TaskUpdater(queue, task.id, task.context_id)
            output = MessageToDict(context.message.parts[0].data)
            value = struct_pb2.Value()
            value.struct_value.update(output)
            text = json.dumps(output, separators=(",", ":"), ensure_ascii=False)
            await updater.add_artifact([Part(data=value), Part(text=text, media_type="application/json")],
                                       name="echo-result")
            await updater.complete()

        async def cancel(self, context: RequestContext, queue: EventQueue) -> None:
            raise NotImplementedError("echo finishes at once")

    card = AgentCard(
        name="echo", description="Echoes text", version="1",
        supported_interfaces=[AgentInterface(url=f"http://127.0.0.1:{port}/", protocol_binding="JSONRPC",
                                             protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True), default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=[AgentSkill(id="echo", name="Echo", description="Returns its text unchanged", tags=["text"])])
    task_store: TaskStore
    if store == "memory":
        task_store = InMemoryTaskStore()
    else:
        # a2a-sdk's DatabaseTaskStore fails with "database is locked" under concurrency on a default SQLite
        # file; WAL and a busy timeout (what our store sets too) make it work.
        engine = create_async_engine(f"sqlite+aiosqlite:///{db_path}")

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(connection: object, _record: object) -> None:
            cursor = connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        task_store = DatabaseTaskStore(engine, create_table=True)
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=task_store, agent_card=card)
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/"),
                            *create_rest_routes(handler, path_prefix="/rest")])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http="h11")
    grpc_port = os.environ.get("GRPC_PORT")

    async def serve() -> None:
        if grpc_port:
            import grpc
            from a2a.server.request_handlers import GrpcHandler
            from a2a.types import a2a_pb2_grpc

            server = grpc.aio.server()
            a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), server)  # type: ignore[no-untyped-call]
            server.add_insecure_port(f"127.0.0.1:{grpc_port}")
            await server.start()
        await uvicorn.Server(config).serve()

    asyncio.run(serve())


def serve_sdk_mcp(port: int) -> None:
    import uvicorn
    from mcp.server import MCPServer

    mcp = MCPServer("sdk")

    @mcp.tool(name="echo", description="Returns its text unchanged")
    async def echo(text: str) -> EchoOut:
        return EchoOut(text=text)

    # h11, as plain ``pip install uvicorn`` gives (httptools is not installed here)
    uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                http="h11")


def serve_floor(port: int, *, sync_grpc: bool = False) -> None:
    from aiohttp import web

    from guildnet.cli.common import new_event_loop

    status = {"state": "TASK_STATE_COMPLETED"}
    artifact = {"artifactId": "a", "parts": [{"data": {"text": "hello"}}]}
    task = {"id": "t", "contextId": "c", "status": status, "artifacts": [artifact]}
    reply = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"task": task}}).encode()
    events = [{"task": {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}},
              {"artifactUpdate": {"taskId": "t", "contextId": "c", "artifact": artifact}},
              {"statusUpdate": {"taskId": "t", "contextId": "c", "status": status}}]
    frames = [b"data: " + json.dumps({"jsonrpc": "2.0", "id": 1, "result": e}).encode() + b"\n\n" for e in events]

    async def rpc(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["method"] != "SendStreamingMessage":
            return web.Response(body=reply, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for frame in frames:  # one write per event, as a server that streams them as they happen
            await response.write(frame)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/", rpc)
    grpc_port = os.environ.get("GRPC_PORT")
    if grpc_port:
        serve = grpc_sync_floor if sync_grpc else grpc_floor
        app.cleanup_ctx.append(lambda _app: serve(int(grpc_port)))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=new_event_loop())


async def grpc_floor(port: int) -> AsyncIterator[None]:
    """The gRPC floor: a bare ``grpc.aio`` handler answering SendMessage with one canned reply and
    SendStreamingMessage with three canned events (:func:`canned_grpc`), serialised per call as any server does:
    what grpcio, this client and loopback allow, whatever the server does besides."""
    import grpc

    reply, stream = canned_grpc()

    async def send(_request: object, _context: object) -> object:
        return reply

    async def send_streaming(_request: object, _context: object) -> AsyncIterator[object]:
        for event in stream:
            yield event

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((floor_handler(send, send_streaming),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    yield
    await server.stop(0)


async def grpc_sync_floor(port: int) -> AsyncIterator[None]:
    """The same floor on grpcio's synchronous server: handlers on a thread pool, fed by grpcio's polling thread
    (no event loop in the call's path)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    reply, stream = canned_grpc()

    def send(_request: object, _context: object) -> object:
        return reply

    def send_streaming(_request: object, _context: object) -> Iterator[object]:
        yield from stream

    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((floor_handler(send, send_streaming),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield
    server.stop(0)


def canned_grpc() -> tuple[Any, list[Any]]:
    """The gRPC floors' replies: a SendMessageResponse and three StreamResponse events of the size and shape the
    node and the SDK send for the bench's request (ids, timestamps, the history with the user message, the artifact
    with its ``data`` and JSON ``text`` parts). Why not the HTTP floor's smaller canned task: the client's cost per
    call grows with what it reads back (``MessageToDict``), and at c=1 that cost is in every round trip, so a floor
    with smaller replies is not a bound on the servers' (3.84x the SDK against 3.39x for SendMessage, 3.27x
    against 2.90x for the stream: docs/a2a-bindings.md, fifth round)."""
    import uuid

    from a2a.types import a2a_pb2
    from google.protobuf.json_format import ParseDict

    task_id, context_id, artifact_id = (str(uuid.uuid4()) for _ in range(3))
    stamp = "2026-01-01T00:00:00.123456Z"
    user = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"data": {"text": "hello"}}],
            "contextId": context_id, "taskId": task_id}
    artifact = {"artifactId": artifact_id, "name": "echo-result",
                "parts": [{"data": {"text": "hello"}}, {"text": '{"text":"hello"}', "mediaType": "application/json"}]}
    done = {"state": "TASK_STATE_COMPLETED", "timestamp": stamp}
    task = {"id": task_id, "contextId": context_id, "status": done, "artifacts": [artifact], "history": [user]}
    submitted = {"id": task_id, "contextId": context_id, "history": [user],
                 "status": {"state": "TASK_STATE_SUBMITTED", "timestamp": stamp}}
    ids = {"taskId": task_id, "contextId": context_id}
    events = [{"task": submitted}, {"artifactUpdate": {**ids, "artifact": artifact}},
              {"statusUpdate": {**ids, "status": done}}]
    return (ParseDict({"task": task}, a2a_pb2.SendMessageResponse()),
            [ParseDict(event, a2a_pb2.StreamResponse()) for event in events])


def floor_handler(send: Any, send_streaming: Any) -> Any:
    """The two methods the gRPC cases call, for either grpcio stack."""
    import grpc
    from a2a.types import a2a_pb2

    from guildnet.node.a2a.grpc_wire import SERVICE

    read = a2a_pb2.SendMessageRequest.FromString
    return grpc.method_handlers_generic_handler(SERVICE, {
        "SendMessage": grpc.unary_unary_rpc_method_handler(
            send, request_deserializer=read, response_serializer=a2a_pb2.SendMessageResponse.SerializeToString),
        "SendStreamingMessage": grpc.unary_stream_rpc_method_handler(
            send_streaming, request_deserializer=read, response_serializer=a2a_pb2.StreamResponse.SerializeToString),
    })


def main(argv: list[str]) -> None:
    if len(argv) not in (3, 4):
        raise SystemExit(__doc__)
    kind, store, port, db_path = argv[0], argv[1], int(argv[2]), (argv[3] if len(argv) == 4 else None)
    if store not in ("memory", "sqlite") or (store == "sqlite" and db_path is None):
        raise SystemExit("STORE is memory or sqlite; sqlite needs DB_PATH")
    if kind in ("node", "node-signed"):
        serve_node(store, port, db_path, signed=kind == "node-signed")
    elif kind == "sdk-a2a":
        serve_sdk_a2a(store, port, db_path)
    elif kind == "sdk-mcp":
        serve_sdk_mcp(port)
    elif kind in ("floor", "floor-sync"):
        serve_floor(port, sync_grpc=kind == "floor-sync")
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
