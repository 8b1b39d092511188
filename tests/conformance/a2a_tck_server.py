"""A node-less A2A server for the TCK: the node's A2A service with the TCK test-mode agent.

Usage: python tests/conformance/a2a_tck_server.py PORT [--db URL] [--grpc-port N]
Prints ``READY <port>`` once it listens on 127.0.0.1. In-memory task store unless --db is given. Every binding
is served (JSON-RPC and HTTP+JSON on PORT, gRPC on its own port), with push notifications (webhooks on this
machine allowed: the TCK's receiver listens on localhost) and the extended agent card.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket

from aiohttp import web
from tck_agent import TckAgent, TckExecutor

from guildnet.cli.common import new_event_loop
from guildnet.node.a2a.push import PushService
from guildnet.node.a2a.push_store import InMemoryPushStore, PushStore, SqlPushStore
from guildnet.node.a2a.service import A2AService
from guildnet.node.a2a.store import SqlTaskStore, open_task_store
from guildnet.node.identity import StaticIdentity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(port: int, db: str | None, grpc_port: int) -> None:
    agent = TckAgent()
    identities = {agent.name: StaticIdentity.generate()}
    store = open_task_store(db)
    push_store: PushStore = SqlPushStore(store.engine) if isinstance(store, SqlTaskStore) else InMemoryPushStore()
    push = PushService(push_store, identities, allow_networks=[ipaddress.ip_network("127.0.0.0/8"),
                                                                ipaddress.ip_network("::1/128")])
    service = A2AService([agent], store, f"http://127.0.0.1:{port}", identities, version="1.0.0",
                         provider=("guildnet", "https://example.invalid/guildnet"),
                         executors={agent.name: TckExecutor()}, push=push, grpc_url=f"127.0.0.1:{grpc_port}",
                         extended_card=True)
    app = web.Application()
    service.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    grpc = service.grpc_binding()
    await grpc.start("127.0.0.1", grpc_port)
    print(f"READY {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await grpc.stop()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--db", default=None)
    parser.add_argument("--grpc-port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the event loop a node serves on
        runner.run(serve(args.port, args.db, args.grpc_port or free_port()))


if __name__ == "__main__":
    main()
