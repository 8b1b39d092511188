"""Delegation across organisations over real sockets: ranking, receipts, reputation moving, fallbacks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from delegation_support import running_node, translator, wait_for_registrations
from registry_support import live_registry, reputation_requests

from guildnet.node.a2a.client import A2AClient
from guildnet.node.delegation.delegator import DelegationFailed, Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import receipts
from guildnet.protocols.agentfacts import AgentFacts, endorse
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient


async def caller_identity(registry: RegistryClient) -> tuple[SigningKey, SigningKey]:
    """Organisation A and its registered 'planner' agent, the caller named in receipts."""
    org, agent = SigningKey.generate(), SigningKey.generate()
    facts = AgentFacts.model_validate(endorse(org, {
        "id": agent.did, "name": "planner", "version": 1, "organisation": {"id": org.did, "name": "org-a"},
        "skills": [{"id": "plan", "name": "Plan"}], "endpoints": {"a2a": "http://127.0.0.1:9/agents/planner/a2a"}}))
    await registry.register(facts, agent)
    return org, agent


async def settle(index: PeerIndex, registry: RegistryClient) -> None:
    async with asyncio.timeout(5):
        await index.wait_for_position((await registry.search(limit=1)).seq)


async def test_reputation_shifts_choices_from_a_cheap_flaky_peer_to_a_reliable_one(tmp_path: Path) -> None:
    org_a = SigningKey.generate()
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", pretrusted_orgs=(org_a.did,),
                             reputation_interval=0.2) as registry_server, \
            RegistryClient(registry_server.url) as registry, A2AClient() as a2a_client:
        _, planner = await caller_identity(registry)  # org A's own agent is registered (needed for receipts)
        await registry.register(AgentFacts.model_validate(endorse(org_a, {
            **(await registry.get(planner.did)).facts.to_json(), "version": 2,
            "organisation": {"id": org_a.did, "name": "org-a"}})),
            planner)
        async with running_node("org-b", translator("reliable", price=0.01), registry_server.url,
                                f"sqlite+aiosqlite:///{tmp_path}/b.db") as b, \
                running_node("org-c", translator("flaky", fail_every=2, price=0.001), registry_server.url,
                             f"sqlite+aiosqlite:///{tmp_path}/c.db") as c:
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, a2a_client, StaticIdentity(planner), org_a.did, reputation_ttl=0.0)
            await wait_for_registrations(registry, 3)  # the planner and the two translators
            chosen = []
            for i in range(24):
                result = await delegator.delegate("translate", {"text": f"hello {i}"}, min_reputation=0.3,
                                                  deadline=10)
                assert result.output == {"text": f"HELLO {i}"}
                assert receipts.verify_receipt(result.receipt).success
                chosen.append(result.agent.facts.name)
                await delegator.flush()
                await asyncio.sleep(0.3)  # let the registry recompute reputation
            # with no evidence both fall below the bar and the cheap one is tried first; as receipts
            # accumulate, the flaky one's lower bound stays low and the reliable one clears the bar
            assert chosen[:2].count("flaky") >= 1
            assert chosen[-6:] == ["reliable"] * 6
            reliable = await registry.reputation(b.agent_key.did, "translate")
            flaky = await registry.reputation(c.agent_key.did, "translate")
            assert reliable.lower_bound > flaky.lower_bound and reliable.receipts > 5 and flaky.receipts >= 1
            decision = await delegator.explain("translate", min_reputation=0.3)
            assert decision.order[0].name == "reliable" and "clears the bar" in decision.explain()
            await index.close()


async def test_timeouts_and_revoked_peers_fall_through_within_the_deadline(tmp_path: Path) -> None:
    org_a = SigningKey.generate()
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", pretrusted_orgs=(org_a.did,)) as server, \
            RegistryClient(server.url) as registry, A2AClient() as a2a_client:
        _, planner = await caller_identity(registry)
        async with running_node("org-slow", translator("slow", delay=5.0, price=0.0001), server.url,
                                f"sqlite+aiosqlite:///{tmp_path}/s.db") as slow, \
                running_node("org-ok", translator("steady", price=0.01), server.url,
                             f"sqlite+aiosqlite:///{tmp_path}/o.db") as steady, \
                running_node("org-gone", translator("gone", price=0.00001), server.url,
                             f"sqlite+aiosqlite:///{tmp_path}/g.db") as gone:
            await wait_for_registrations(registry, 4)
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, a2a_client, StaticIdentity(planner), "did:key:zOrgA")
            await index.track("translate")
            revoked = await registry.revoke(gone.agent_key.did, gone.agent_key)
            async with asyncio.timeout(5):
                await index.wait_for_position(revoked["seq"])
            assert all(c.agent_id != gone.agent_key.did for c in await delegator.candidates("translate"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            result = await delegator.delegate("translate", {"text": "x"}, deadline=3.0)
            elapsed = loop.time() - started
            assert result.agent.id == steady.agent_key.did and elapsed < 3.0
            assert [a.outcome for a in result.attempts] == ["timeout", "success"]
            assert result.attempts[0].agent_id == slow.agent_key.did
            assert result.traceparent.startswith("00-") and len(result.traceparent.split("-")[1]) == 32
            with pytest.raises(DelegationFailed):
                await delegator.delegate("no-such-skill", {"text": "x"}, deadline=1.0)
            await delegator.flush()
            await index.close()


async def test_a_registry_that_computes_no_reputation_is_asked_again_only_after_the_retry_time(
        tmp_path: Path) -> None:
    """Without pre-trusted organisations the registry answers every reputation request 503: each delegation
    asking again cost it a round trip (most of the delegation overhead bench/delegation.py measured)."""
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as server, \
            RegistryClient(server.url) as registry, A2AClient() as a2a_client:
        org_a, planner = await caller_identity(registry)
        async with running_node("org-b", translator("steady"), server.url, f"sqlite+aiosqlite:///{tmp_path}/b.db"):
            await wait_for_registrations(registry, 2)
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, a2a_client, StaticIdentity(planner), org_a.did,
                                  reputation_retry=0.5)
            before = await reputation_requests(server.url)
            for i in range(3):
                result = await delegator.delegate("translate", {"text": f"x{i}"}, min_reputation=0.0)
                assert result.output == {"text": f"X{i}"} and result.decision.order[0].evidence == 0.0
            assert await reputation_requests(server.url) - before == 1
            await asyncio.sleep(0.6)
            await delegator.delegate("translate", {"text": "again"}, min_reputation=0.0)
            assert await reputation_requests(server.url) - before == 2
            await delegator.flush()
            await index.close()


async def test_slm_agent_escalates_to_a_peer_through_the_node_and_records_its_model_call(tmp_path: Path) -> None:
    from sqlalchemy import text

    from guildnet.node import flywheel
    from guildnet.node.flywheel.process_log import create_engine
    from guildnet.node.slm import ModelSkill, ScriptedBackend, SLMAgent
    from guildnet.protocols.agentfacts import Skill

    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    skill = Skill(id="translate", name="Translate", input_schema=schema, output_schema=schema)
    small = ScriptedBackend(["this is not JSON"], model="tiny-slm")  # fails the output schema: escalate
    slm = SLMAgent("slm-translator", [ModelSkill(skill, "Translate the text.")], small)
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as server, \
            RegistryClient(server.url) as registry, A2AClient() as client:
        async with running_node("org-b", translator("b-translator"), server.url,
                                f"sqlite+aiosqlite:///{tmp_path}/b.db"), \
                running_node("org-a", slm, server.url, f"sqlite+aiosqlite:///{tmp_path}/a.db") as a:
            await wait_for_registrations(registry, 2)
            task, output = await client.call_skill(f"{a.node.base_url}/agents/slm-translator/a2a", "translate",
                                                   {"text": "bonjour"})
            assert output == {"text": "BONJOUR"}  # the small model failed; the peer of org B answered
            assert task["status"]["state"] == "TASK_STATE_COMPLETED"
            await a.node.close()
        traces: dict[str, set[str]] = {}
        for org in ("a", "b"):
            engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/{org}.db")
            async with engine.connect() as conn:
                query = text("SELECT direction, outcome, model, trace_id FROM process_calls")
                found = (await conn.execute(query)).all()
                if org == "a":
                    rows = [tuple(r[:3]) for r in found]
                    report = await flywheel.report(engine)
            await engine.dispose()
            traces[org] = {r[3] for r in found}
        assert ("model", "rejected", "tiny-slm") in rows   # the SLM's answer, refused
        assert any(r[0] == "in" and r[1] == "ok" for r in rows)  # the inbound A2A call itself
        assert ("out", "ok", "demo") in rows  # the delegation to org B's agent
        # The call came without a traceparent: node A started one, and every row of the task, at A and at B, has it.
        assert len(traces["a"]) == 1 and traces["a"] == traces["b"] and None not in traces["a"]
        assert [(s.name, s.volume) for s in report.by_skill] == [("translate", 1)]
