"""Attacks on reputation through the running registry: every receipt is a signed write to the real API,
scored by the registry's own recompute, ranked by the node's own ranking policy."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from registry_support import Org, live_registry, new_org
from test_registry_receipts import receipt

from guildnet.node.delegation.ranking import Candidate, rank
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient
from guildnet.registry.server import REPUTATION

SKILL = [{"id": "echo", "name": "Echo"}, {"id": "cheap", "name": "Cheap"}]
counter = itertools.count()


async def register(client: RegistryClient, org: Org, name: str) -> SigningKey:
    key, facts = org.agent(name, skills=SKILL)
    await client.register(facts, key)
    return key


async def rate(client: RegistryClient, caller: SigningKey, callee: SigningKey, verdicts: list[str],
               skill: str = "echo") -> None:
    from test_registry_receipts import claim_token

    from guildnet.protocols.receipts import caller_countersign

    for verdict in verdicts:
        task = f"task-{next(counter)}"
        if skill == "echo":
            token = receipt(caller, callee, task, verdict)
        else:
            status = "completed" if verdict == "success" else "failed"
            token = caller_countersign(claim_token(caller.did, callee, task, status=status, skill=skill), caller,
                                       verdict)  # type: ignore[arg-type]
        await client.submit_receipt(token, caller)


def as_candidate(agent_id: str, name: str, lower: float, score: float, evidence: float) -> Candidate:
    return Candidate(agent_id=agent_id, name=name, organisation=name, endpoint="", live=True,
                     reputation_lower=lower, reputation_score=score, evidence=evidence, price=0.001)


@pytest.mark.slow
@pytest.mark.parametrize("ring_orgs", [1, 50])
async def test_sybil_ring_ranks_below_an_honest_agent(tmp_path: Path, ring_orgs: int) -> None:
    customers = new_org("customer")  # the pre-trusted organisation: real callers
    honest_org = new_org("honest")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", pretrusted_orgs=(customers.key.did,),
                             reputation_interval=3600) as registry, RegistryClient(registry.url) as client:
        buyers = [await register(client, customers, f"buyer{i}") for i in range(4)]
        honest = await register(client, honest_org, "honest")
        for i in range(20):  # 20 successes for real callers
            await rate(client, buyers[i % 4], honest, ["success"])
        ring_org_list = [new_org(f"sybil{i}") for i in range(ring_orgs)]
        ring = [await register(client, ring_org_list[i % ring_orgs], f"sybil{i}") for i in range(50)]
        tasks = []
        for i in range(1000):  # the ring rates itself 1,000 times, all successes
            caller, callee = ring[i % 50], ring[(i * 7 + 1) % 50]
            if caller.did == callee.did or (ring_orgs == 1):
                callee = ring[(i + 1) % 50]
            tasks.append(rate(client, caller, callee, ["success"]))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        accepted = sum(r is None for r in results)
        await registry.app[REPUTATION].refresh(force=True)
        honest_rep = await client.reputation(honest.did, "echo")
        sybil_reps = [await client.reputation(s.did, "echo") for s in ring]
        best_sybil = max(sybil_reps, key=lambda r: r.lower_bound)
        decision = rank([as_candidate(honest.did, "honest", honest_rep.lower_bound, honest_rep.score,
                                      honest_rep.evidence)]
                        + [as_candidate(r.agent, "sybil", r.lower_bound, r.score, r.evidence) for r in sybil_reps],
                        min_reputation=0.5, prefer="reputation")
        assert decision.order[0].agent_id == honest.did
        assert honest_rep.lower_bound > 0.7 and honest_rep.receipts == 20
        assert best_sybil.lower_bound < 0.2 and best_sybil.evidence < 1.0
        if ring_orgs == 1:
            assert accepted == 0  # receipts within one organisation are refused outright
        else:
            assert accepted == 1000  # accepted, but their raters have no trust from real callers


@pytest.mark.slow
async def test_agent_failing_30_percent_falls_below_a_reliable_one_within_100_tasks(tmp_path: Path) -> None:
    customers, flaky_org, steady_org = new_org("customer"), new_org("flaky"), new_org("steady")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", pretrusted_orgs=(customers.key.did,),
                             reputation_interval=3600) as registry, RegistryClient(registry.url) as client:
        buyer = await register(client, customers, "buyer")
        flaky = await register(client, flaky_org, "flaky")
        steady = await register(client, steady_org, "steady")
        await rate(client, buyer, flaky, ["success"] * 100, skill="cheap")  # easy wins elsewhere
        pattern = (["success"] * 7 + ["failure"] * 3) * 10
        steady_pattern = (["success"] * 49 + ["failure"]) * 2
        first_below = None
        for n in range(10, 101, 10):
            await rate(client, buyer, flaky, pattern[n - 10:n])
            await rate(client, buyer, steady, steady_pattern[n - 10:n])
            await registry.app[REPUTATION].refresh(force=True)
            f = await client.reputation(flaky.did, "echo")
            s = await client.reputation(steady.did, "echo")
            if first_below is None and f.lower_bound < s.lower_bound:
                first_below = n
        assert first_below is not None and first_below <= 100
        f = await client.reputation(flaky.did, "echo")
        s = await client.reputation(steady.did, "echo")
        assert f.interval[1] < s.interval[0] or f.score < s.score - 0.2  # clearly apart after 100 tasks
        assert (await client.reputation(flaky.did, "cheap")).score > 0.95  # cheap successes stay on their skill
