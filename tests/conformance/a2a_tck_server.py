"""A node-less A2A server for the TCK: the node's A2A service with the TCK test-mode agent.

Usage: python tests/conformance/a2a_tck_server.py PORT [--db URL]
Prints ``READY <port>`` once it listens on 127.0.0.1. In-memory task store unless --db is given.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web
from tck_agent import TckAgent, TckExecutor

from guildnet.node.a2a.service import A2AService
from guildnet.node.a2a.store import open_task_store
from guildnet.node.identity import StaticIdentity


async def serve(port: int, db: str | None) -> None:
    agent = TckAgent()
    service = A2AService([agent], open_task_store(db), f"http://127.0.0.1:{port}",
                         {agent.name: StaticIdentity.generate()}, version="1.0.0", provider=("guildnet", "https://example.invalid/guildnet"),
                         executors={agent.name: TckExecutor()})
    app = web.Application()
    service.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"READY {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.db))


if __name__ == "__main__":
    main()
