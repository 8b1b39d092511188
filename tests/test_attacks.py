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
from guildnet.registry.client import RegistryClient, RegistryError
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
        await registry.app[REPUTATION].refresh(force=True)  # the honest work is in the snapshot admission reads
        log_size = (await client.log_head()).size
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
        # within one organisation: refused outright; across 50 organisations nobody trusted: held out of the
        # log, where they would count for nothing and stay for ever
        assert accepted == 0 and (await client.log_head()).size == log_size
        refused = {str(r) for r in results if r is not None}
        assert any(("same organisation" if ring_orgs == 1 else "no trust here yet") in why for why in refused)


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


async def test_receipts_from_organisations_nobody_trusts_stay_out_of_the_log(tmp_path: Path) -> None:
    """Issue 18's flood: organisations with no trust could append receipts to the log without bound. Now a
    receipt enters the log when its caller's organisation has trust, or the work was done by a pre-trusted
    organisation's agent (how a newcomer builds a history); the rest are refused and the log does not grow."""
    customers, x_org, y_org = new_org("customer"), new_org("x"), new_org("y")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", pretrusted_orgs=(customers.key.did,),
                             reputation_interval=3600) as registry, RegistryClient(registry.url) as client:
        buyer = await register(client, customers, "buyer")
        x, y = await register(client, x_org, "x"), await register(client, y_org, "y")
        await registry.app[REPUTATION].refresh(force=True)
        size = (await client.log_head()).size
        with pytest.raises(RegistryError, match="no trust here yet") as refused:
            await rate(client, x, y, ["success"])
        assert refused.value.status == 422 and (await client.log_head()).size == size
        await rate(client, x, buyer, ["success"])  # work a pre-trusted organisation's agent signed: admitted
        await rate(client, buyer, x, ["success"])  # the pre-trusted organisation rates x's agent
        assert (await client.log_head()).size == size + 2
        await registry.app[REPUTATION].refresh(force=True)  # x now has trust: its receipts count, and enter
        await rate(client, x, y, ["success"])
        assert (await client.log_head()).size == size + 3
