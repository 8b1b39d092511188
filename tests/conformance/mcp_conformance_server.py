"""Node MCP endpoint with the conformance fixtures, for the official conformance suite and Inspector.

Usage: python tests/conformance/mcp_conformance_server.py PORT_FILE [TASK_STORE_URL]
Listens on a free 127.0.0.1 port, writes the port number to PORT_FILE, serves until SIGTERM/SIGINT. MCP tasks
live in TASK_STORE_URL (an SQLAlchemy URL; in memory without one).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from aiohttp import web
from mcp_fixtures import INPUT_FIRST, TASK_SUPPORT, ConformanceAgent, MemoryEventStore, fixture_server

from guildnet.node.a2a.store import open_task_store
from guildnet.node.mcp.server import setup_mcp


async def main(port_file: Path) -> None:
    app = web.Application()
    store = open_task_store(sys.argv[2] if len(sys.argv) > 2 else None)
    await store.open()
    setup_mcp(app, [ConformanceAgent()], server=fixture_server(), name="guildnet-conformance", version="0.1.0",
              event_store=MemoryEventStore(), retry_interval_ms=100, task_store=store, task_support=TASK_SUPPORT,
              input_first=INPUT_FIRST)
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await asyncio.to_thread(port_file.write_text, str(port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
