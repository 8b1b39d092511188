"""Three organisations on 127.0.0.1: A delegates a skill that B and C both offer; C is cheaper but fails often.

Runs a registry (SQLite, A's organisation pre-trusted), two nodes (B: reliable, C: cheap, fails every
third task), and A's delegator. Every round A ranks the live candidates by the reputation lower bound the
registry computes from receipts both sides signed, calls the winner over A2A, checks its signed receipt,
countersigns it and submits it. The table shows A's choices shifting to B as the reputations diverge.

Then one turn of the flywheel at A's helpdesk (helpdesk_cycle.py): the LoRA adapter `make` trained once from
A's process data is evaluated against the embedded SmolLM2-135M in service, promoted, hot-swapped into A's
serving node, and answers live tickets SLM-first, escalating to a hosted 70B only when not confident.

    python examples/three_orgs.py [--rounds 30] [--db sqlite:///three-orgs.db] [--prepared build/flywheel-demo]
                                  [--novel 40] [--live 6] [--no-slm]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from helpdesk import free_port
from helpdesk_cycle import flywheel_cycle
from pydantic import BaseModel

from guildnet.node.a2a.client import A2AClient
from guildnet.node.agent import FunctionAgent, SkillError
from guildnet.node.delegation.delegator import DelegationFailed, Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.identity import StaticIdentity
from guildnet.node.node import Node
from guildnet.node.publisher import PublishedAgent
from guildnet.protocols.agentfacts import AgentFacts, ModelFacts, endorse
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient, RegistryError
from guildnet.registry.db import normalise_url
from guildnet.registry.server import RegistryConfig, create_app


class Text(BaseModel):
    text: str


def translator(name: str, *, fail_every: int, price: float) -> FunctionAgent:
    agent = FunctionAgent(name, description=f"{name} translates short texts",
                          model=ModelFacts(family="demo-slm", parameters=135_000_000, cost_per_1k_input=price,
                                           cost_per_1k_output=price))
    calls = [0]

    async def translate(data: Text) -> Text:
        calls[0] += 1
        if fail_every and calls[0] % fail_every == 0:
            raise SkillError("translation failed")
        return Text(text=data.text[::-1])

    agent.add_skill(translate, id="translate", name="Translate", description="Translate a short text",
                    tags=["language"])
    return agent


async def reputation(registry: RegistryClient, agent_id: str) -> tuple[float, int]:
    """(lower bound, receipts) for the translate skill; (0, 0) until the registry's first recompute is done."""
    try:
        report = await registry.reputation(agent_id, "translate")
    except RegistryError as exc:
        if exc.status != 503:
            raise
        return 0.0, 0
    return report.lower_bound, report.receipts


async def first_reputations(registry: RegistryClient, agent_id: str) -> None:
    """Wait (at most a minute) for the registry's first reputation recompute: it runs in a worker process whose
    start can take seconds on a busy machine, and until it is done every round would see no reputation at all."""
    async with asyncio.timeout(60):
        while True:
            try:
                await registry.reputation(agent_id, "translate")
                return
            except RegistryError as exc:
                if exc.status != 503:
                    raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def serve(app: web.Application, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def node_app(org: str, agents: list[FunctionAgent], registry_url: str, db: str) -> tuple[web.Application, int, str]:
    port = free_port()
    node = Node(org_name=org, org_key=SigningKey.generate(),
                agents=[PublishedAgent(agent, StaticIdentity.generate(), ttl_seconds=30) for agent in agents],
                base_url=f"http://127.0.0.1:{port}", db_url=db, registry_url=registry_url, port=port)
    return node.build_app(), port, node.agents[0].identity.id



async def main(rounds: int, workdir: Path, db: str | None, cycle: dict[str, Any] | None) -> None:
    org_a, planner = SigningKey.generate(), SigningKey.generate()
    registry_db = normalise_url(db or f"sqlite:///{workdir}/registry.db")
    config = RegistryConfig(db_url=registry_db, key_path=str(workdir / "registry.key"),
                            pretrusted_orgs=(org_a.did,), reputation_interval=0.2)
    async with serve(create_app(config), free_port()) as registry_url, RegistryClient(registry_url) as registry, \
            A2AClient() as a2a_client:
        print(f"registry  {registry_url}  (pre-trusted: organisation A)")
        await registry.register(AgentFacts.model_validate(endorse(org_a, {
            "id": planner.did, "name": "planner", "version": 1, "description": "A's planning agent",
            "organisation": {"id": org_a.did, "name": "org-a"},
            "skills": [{"id": "plan", "name": "Plan"}], "endpoints": {"a2a": "http://127.0.0.1:9/agents/planner/a2a"}})),
            planner)
        b_app, b_port, b_id = node_app("org-b", [translator("b-translator", fail_every=0, price=0.02)],
                                       registry_url, f"sqlite+aiosqlite:///{workdir}/b.db")
        c_app, c_port, c_id = node_app("org-c", [translator("c-translator", fail_every=3, price=0.002)], registry_url,
                                       f"sqlite+aiosqlite:///{workdir}/c.db")
        async with serve(b_app, b_port) as b_url, serve(c_app, c_port) as c_url:
            print(f"org-b     {b_url}  reliable, price 0.02 per 1k tokens")
            print(f"org-c     {c_url}  fails every 3rd task, price 0.002 per 1k tokens\n")
            seen = 0
            async with asyncio.timeout(15):
                async for change in registry.watch(0):
                    seen += change["kind"] == "registered"
                    if seen == 3:
                        break
            await first_reputations(registry, b_id)
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, a2a_client, StaticIdentity(planner), org_a.did, reputation_ttl=0.0)
            print(f"{'round':>5}  {'chosen':<13} {'result':<8} {'B lower':>8} {'B n':>4} {'C lower':>8} {'C n':>4}  "
                  "attempts")
            for number in range(1, rounds + 1):
                try:
                    result = await delegator.delegate("translate", {"text": f"task {number}"}, min_reputation=0.5,
                                                      deadline=10)
                    chosen, outcome = result.agent.facts.name, "ok"
                    attempts = " -> ".join(f"{a.name}:{a.outcome}" for a in result.attempts)
                except DelegationFailed as exc:
                    chosen, outcome = "-", "failed"
                    attempts = " -> ".join(f"{a.name}:{a.outcome}" for a in exc.attempts)
                await delegator.flush()
                await asyncio.sleep(0.35)  # the registry recomputes reputation from the new receipts
                b_lower, b_n = await reputation(registry, b_id)
                c_lower, c_n = await reputation(registry, c_id)
                print(f"{number:>5}  {chosen:<13} {outcome:<8} {b_lower:>8.3f} {b_n:>4} {c_lower:>8.3f} {c_n:>4}  "
                      f"{attempts}")
            print("\nwhy the last choice was made:")
            print((await delegator.explain("translate", min_reputation=0.5)).explain())
            head = await registry.log_head()
            print(f"\ntransparency log: {head.size} entries, root {head.root.hex()[:32]}…, signed by the registry "
                  f"and checked consistent with every earlier head this client saw")
            await index.close()
    if cycle is not None:
        await flywheel_cycle(org_a, workdir, **cycle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--db", help="registry database URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--prepared", type=Path, default=Path("build/flywheel-demo"),
                        help="where make built the candidate adapter (the Makefile's FLYWHEEL_DEMO)")
    parser.add_argument("--novel", type=int, default=40, help="novel phrasings to score both models on (<= 40)")
    parser.add_argument("--live", type=int, default=6, help="live tickets before and after the promotion")
    parser.add_argument("--no-slm", action="store_true", help="skip the flywheel part (needs the slm extra)")
    args = parser.parse_args()
    cycle = None if args.no_slm else {"prepared": args.prepared, "novel": args.novel, "live": args.live}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            asyncio.run(main(args.rounds, Path(tmp), args.db, cycle))
        except KeyboardInterrupt:
            sys.exit(130)
