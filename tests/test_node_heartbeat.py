"""Node-level heartbeats: one write signed by the organisation key keeps all of a node's agents live, over real
sockets on SQLite and PostgreSQL; refused ones change nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from delegation_support import translator
from registry_support import Org, live_registry, new_org, snapshot
from sqlalchemy import text

from guildnet.node.identity import StaticIdentity
from guildnet.node.publisher import PublishedAgent, Publisher, RegistrationsRefused
from guildnet.protocols import signed_write
from guildnet.registry.client import NODE_HEARTBEAT_BATCH, RegistryClient
from guildnet.registry.db import create_engine, migrate
from guildnet.registry.records import MAX_NODE_HEARTBEAT_AGENTS
from guildnet.registry.state import METRICS
from guildnet.registry.store.writes import _NAMED_AGENTS


def test_the_client_batches_within_the_registry_limit() -> None:
    assert NODE_HEARTBEAT_BATCH == MAX_NODE_HEARTBEAT_AGENTS


async def test_one_organisation_signature_keeps_every_agent_live(db_url: str) -> None:
    clock = [time.time()]
    acme, other = new_org("acme"), new_org("other")
    async with live_registry(db_url, clock=lambda: clock[0], sweep_interval=0.05) as registry, \
            RegistryClient(registry.url) as client:
        agents = [acme.agent(f"a{i}", ttl_seconds=10 + i) for i in range(5)]
        for key, facts in agents:
            await client.register(facts, key)
        stranger_key, stranger = other.agent("s", ttl_seconds=10)
        await client.register(stranger, stranger_key)
        revoked_key, revoked = acme.agent("gone", ttl_seconds=10)
        await client.register(revoked, revoked_key)
        await client.revoke(revoked.id, revoked_key)

        clock[0] += 20  # every TTL passed: all stale
        await asyncio.sleep(0.3)  # the sweeper announces it
        assert (await client.search(live=True)).agents == []
        before = await registry.store.last_seq()

        ids = [facts.id for _, facts in agents]
        missing = await client.node_heartbeat([*ids, stranger.id, revoked.id, "did:key:zUnknown"], acme.key)
        assert missing == [stranger.id, revoked.id, "did:key:zUnknown"]
        for _, facts in agents:
            record = await client.get(facts.id)
            assert record.live and record.last_seen == clock[0]
        assert not (await client.get(stranger.id)).live  # another organisation's agent is not its word to give
        assert (await client.get(revoked.id)).revoked
        # each agent that came back is announced live, as a per-agent heartbeat would
        changes = await registry.store.changes_since(before)
        assert sorted(c.agent_id for c in changes) == sorted(ids)
        assert all(c.kind == "live" and c.data == {"live": True} for c in changes)

        clock[0] += 10.5  # each agent keeps its own TTL: a0 (10 s) is stale again, a4 (14 s) is not
        live = {a.id for a in (await client.search(live=True)).agents}
        assert agents[0][1].id not in live and agents[4][1].id in live


@pytest.mark.parametrize("case", ["agent-key", "no-agents", "duplicate", "not-a-list", "too-many", "replay"])
async def test_refused_node_heartbeats_change_nothing(db_url: str, case: str) -> None:
    clock = [time.time()]
    acme = new_org("acme")
    async with live_registry(db_url, clock=lambda: clock[0]) as registry, RegistryClient(registry.url) as client:
        key, facts = acme.agent("a", ttl_seconds=10)
        await client.register(facts, key)
        clock[0] += 5
        signer, agents = acme.key, [facts.id]
        if case == "agent-key":
            signer = key  # an agent's own key speaks for itself only: nothing is kept live
        body: dict[str, object] = {"action": "node_heartbeat", "agents": agents}
        if case == "no-agents":
            body["agents"] = []
        elif case == "duplicate":
            body["agents"] = [facts.id, facts.id]
        elif case == "not-a-list":
            body["agents"] = facts.id
        elif case == "too-many":
            body["agents"] = [f"did:key:z{i}" for i in range(MAX_NODE_HEARTBEAT_AGENTS + 1)]
        token = signed_write.make(signer, body)
        if case == "replay":
            await client._signed_post("/v1/heartbeats", signer, body)  # accepted once ...
        before = await snapshot(registry)
        async with client.session.post(registry.url + "/v1/heartbeats", data=token,
                                       headers={"Content-Type": "application/jose"}) as first:
            if case == "replay":
                assert first.status == 200
                async with client.session.post(registry.url + "/v1/heartbeats", data=token,
                                               headers={"Content-Type": "application/jose"}) as again:
                    assert again.status == 401 and again.content_type == "application/problem+json"
                return
            answer = await first.json(content_type=None)
        if case == "agent-key":
            assert first.status == 200 and answer["live"] == 0 and answer["missing"] == [facts.id]
            assert (await client.get(facts.id)).last_seen < clock[0]
            return
        assert first.status in (400, 413) and first.content_type == "application/problem+json", answer
        assert await snapshot(registry) == before


def acme_node(registry_url: str, agents: int, **published: Any) -> tuple[Org, list[PublishedAgent], Publisher]:
    """An organisation, ``agents`` translators with fixed keys, and the publisher of a node serving them."""
    acme = new_org("acme")
    agents_published = [PublishedAgent(translator(f"t{i}"), StaticIdentity.generate(), **published)
                        for i in range(agents)]
    return acme, agents_published, Publisher(registry_url, agents_published, org_key=acme.key, org_name="acme",
                                             base_url="http://127.0.0.1:9")


async def test_a_node_with_several_agents_registers_in_one_request_and_heartbeats_with_its_org_key(db_url: str) -> None:
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        _, published, publisher = acme_node(registry.url, 3)
        try:
            await publisher.register_all()
            requests = registry.app[METRICS].requests  # the three registrations went in one request
            assert requests.labels("/v1/registrations", "POST", "200")._value.get() == 1
            assert requests.labels("/v1/agents", "POST", "201")._value.get() == 0
            await publisher.heartbeat()
            writes = registry.app[METRICS].writes
            assert writes.labels("node_heartbeat", "accepted")._value.get() == 1
            assert writes.labels("heartbeat", "accepted")._value.get() == 0
            assert publisher.registered == {p.identity.id for p in published}
            gone = published[1].identity
            await client.revoke(gone.id, gone.key)
            await publisher.heartbeat()  # the registry names the one it no longer keeps live: registered again
            assert publisher.registered == {published[0].identity.id, published[2].identity.id}
        finally:
            await publisher.stop()


async def test_agents_a_registry_refuses_do_not_stop_the_others_and_are_said_once(db_url: str) -> None:
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        acme, published, publisher = acme_node(registry.url, 3, ttl_seconds=6)
        for gone in (published[0].identity, published[1].identity):  # revoked for ever: refused with 409
            key, facts = acme.agent("old", key=gone.key)
            await client.register(facts, key)
            await client.revoke(gone.id, gone.key)
        try:
            with pytest.raises(RegistrationsRefused) as refused:
                await publisher.register_all()
            assert refused.value.status == 409
            assert refused.value.detail.startswith("agent t0: ") and "(and 1 more of this node's agents)" in (
                refused.value.detail)
            assert publisher.registered == {published[2].identity.id}  # the one after them is in
            writes = registry.app[METRICS].writes
            await publisher.start()  # round after round: t0 and t1 are tried again, t2 is kept live meanwhile
            for _ in range(100):
                if writes.labels("node_heartbeat", "accepted")._value.get() >= 2:
                    break
                await asyncio.sleep(0.1)
            assert writes.labels("node_heartbeat", "accepted")._value.get() >= 2
            assert writes.labels("register", "accepted")._value.get() == 1 + 2  # t2 once (and the two old ones)
            record = await client.get(published[2].identity.id)
            assert record.live and record.facts.name == "t2"
        finally:
            await publisher.stop()


async def test_a_round_without_every_answer_sends_a_higher_version_next(db_url: str) -> None:
    """A batch stored by the registry whose answer was lost (the connection dropped) must not be refused as not
    newer when the node sends it again."""
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        _, published, publisher = acme_node(registry.url, 2)
        try:
            await publisher.register_all()
            first = publisher.version
            publisher.registered.clear()  # what a round that lost its answers knows: nothing
            publisher._unsettled = True
            await publisher.register_all()  # stored already: without a higher version, 409 for both
            assert publisher.version > first
            assert publisher.registered == {p.identity.id for p in published}
            assert (await client.get(published[0].identity.id)).facts.version == publisher.version
        finally:
            await publisher.stop()


async def test_sqlite_looks_a_heartbeats_agents_up_by_id_not_by_organisation(tmp_path: Path) -> None:
    """The organisation's index would read every agent of the organisation (20,000 at 1M agents) per heartbeat;
    looking each named id up reads 2,048 at most, whatever the registry's size."""
    engine = create_engine(f"sqlite:///{tmp_path}/plan.db")
    try:
        await migrate(engine)
        async with engine.connect() as conn:
            plan = (await conn.execute(text(f"EXPLAIN QUERY PLAN {_NAMED_AGENTS[False].text}"),
                                       {"ids": "[]"})).all()
    finally:
        await engine.dispose()
    steps = " / ".join(row[-1] for row in plan)
    assert "SEARCH a USING INDEX sqlite_autoindex_agents_1 (id=?)" in steps and "org_id" not in steps, steps
