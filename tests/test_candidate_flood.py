"""One organisation registers 2,000 agents for a skill (issue 17 did it in 6 s, and one delegation then took
3.9 s and 2,000 reputation requests). A node considers at most 4 of them, asks the registry for all its
candidates' reputations in one request, calls one of that organisation's agents at most, and the honest
organisation's agent answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from delegation_support import running_node, translator
from registry_support import live_registry, new_org, reputation_requests

from guildnet.node.a2a.client import A2AClient
from guildnet.node.delegation.delegator import Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.identity import StaticIdentity
from guildnet.registry.client import RegistryClient

FLOOD = 2000
SKILL = [{"id": "translate", "name": "Translate"}]


@pytest.mark.slow
async def test_a_flood_of_agents_from_one_organisation_is_bounded(tmp_path: Path) -> None:
    caller_org, mallory = new_org("caller-org"), new_org("mallory")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", pretrusted_orgs=(caller_org.key.did,),
                             reputation_interval=0.2, write_rate_per_ip=None) as server, \
            RegistryClient(server.url) as registry:
        caller_key, caller = caller_org.agent("planner")
        await registry.register(caller, caller_key)
        started = time.perf_counter()
        for first in range(0, FLOOD, 100):  # dead endpoints, cheaper than anyone
            flood = [mallory.agent(f"sybil-{n}", skills=SKILL) for n in range(first, first + 100)]
            await asyncio.gather(*(registry.register(facts, key) for key, facts in flood))
        registering = time.perf_counter() - started
        async with running_node("honest-org", translator("honest", price=0.01), server.url,
                                f"sqlite+aiosqlite:///{tmp_path}/h.db"), \
                A2AClient(signer=StaticIdentity(caller_key)) as a2a_client:
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, a2a_client, StaticIdentity(caller_key), caller_org.key.did)
            try:
                await index.track("translate")
                async with asyncio.timeout(30):
                    await index.wait_for_position((await registry.search(limit=1)).seq)
                assert len(index.candidates("translate")) == FLOOD + 1
                before = await reputation_requests(server.url)
                started = time.perf_counter()
                result = await delegator.delegate("translate", {"text": "hola"}, deadline=10, min_reputation=0.0)
                took = time.perf_counter() - started
                considered = [c for c in result.decision.order if c.organisation == "mallory"]
                assert len(considered) == delegator.max_per_org == 4
                assert [(a.name.split("-")[0], a.outcome) for a in result.attempts] == [("sybil", "error"),
                                                                                       ("honest", "success")]
                assert await reputation_requests(server.url) - before == 1
                assert took < 5.0, took
                print(f"\n{FLOOD} agents registered in {registering:.1f} s; one delegation took {took * 1000:.0f} ms "
                      f"with {len(result.decision.order)} candidates ranked")
            finally:
                await delegator.flush()
                await index.close()
