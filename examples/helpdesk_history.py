"""The process data `make demo`'s flywheel cycle learns from: org A's helpdesk before it had a small model.

A's node serves the ticket classifier over A2A with the hosted 70B answering every ticket (LLM-only), and
records each call as a serving node does: scrubbed, in its database. `guildnet flywheel train` then trains on
the older accepted answers and holds out the newest (the Makefile's $(FLYWHEEL_DEMO)/candidate target runs
both). Why LLM-only: in bench/flywheel_cycle.py the base SmolLM2 in front kept none of the 400 logged tickets,
so the accepted answers are the 70B's either way, and asking it first would add ~2 s of CPU per ticket to the
one-time build for nothing it learns from.

    python examples/helpdesk_history.py --tasks 200 --db sqlite:///build/flywheel-demo/node.db
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from aiohttp import web
from helpdesk import SKILL, SPEC, free_port, hosted_70b, ticket_stream

from guildnet.node.a2a.client import A2AClient
from guildnet.node.config import resolve_db_url
from guildnet.node.identity import StaticIdentity
from guildnet.node.node import PROCESS_LOG, Node
from guildnet.node.publisher import PublishedAgent
from guildnet.node.slm import SLMAgent
from guildnet.protocols.keys import SigningKey


async def log_history(count: int, db: str, concurrency: int = 4) -> None:
    mix = ticket_stream(count)
    async with hosted_70b(mix) as large, A2AClient() as client:
        helpdesk = SLMAgent("a-helpdesk", [SPEC], large)
        port = free_port()
        node = Node(org_name="org-a", org_key=SigningKey.generate(),
                    agents=[PublishedAgent(helpdesk, StaticIdentity.generate())],
                    base_url=f"http://127.0.0.1:{port}", db_url=db, port=port)
        app = node.build_app()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        endpoint = f"http://127.0.0.1:{port}/agents/a-helpdesk/a2a"
        gate = asyncio.Semaphore(concurrency)
        done = 0
        started = time.perf_counter()

        async def one(text: str) -> None:
            nonlocal done
            async with gate:
                await client.call_skill(endpoint, SKILL.id, {"text": text})
            done += 1
            if done % 50 == 0 or done == count:
                print(f"  {done}/{count} tickets answered by the hosted 70B and logged "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)

        try:
            await asyncio.gather(*(one(ticket.text) for ticket in mix))
            await app[PROCESS_LOG].flush()
        finally:
            await node.close()
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200, help="tickets in the history")
    parser.add_argument("--db", required=True, help="the node database URL to log into")
    args = parser.parse_args()
    asyncio.run(log_history(args.tasks, resolve_db_url(args.db, Path.cwd())))


if __name__ == "__main__":
    main()
