"""Concurrent first registrations share their statements (registry/store/bulk.py); a run holding a write that
must be refused falls back to one write at a time, and the result is what one at a time would have stored."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from registry_support import live_registry, new_org
from sqlalchemy.engine import Connection

from guildnet.protocols import signed_write
from guildnet.protocols.merkle import leaf_hash
from guildnet.protocols.signed_write import UnauthorizedWrite
from guildnet.protocols.transparency import leaf_data
from guildnet.registry.client import RegistryClient, RegistryError
from guildnet.registry.store import RegistryStore
from guildnet.registry.verifier import RegistrationVerifier


def count_runs(store: RegistryStore) -> list[int]:
    """Wrap the store's bulk function: the lengths of the runs it is asked to store."""
    runs: list[int] = []
    bulk = store._register_new

    def counted(conn: Connection, items: list[Any]) -> list[Any]:
        runs.append(len(items))
        return bulk(conn, items)

    store._register_new = counted  # type: ignore[assignment]
    return runs


async def _post_all(url: str, tokens: list[str]) -> list[int]:
    async with aiohttp.ClientSession() as session:
        async def post(token: str) -> int:
            async with session.post(url + "/v1/agents", data=token,
                                    headers={"Content-Type": "application/jose"}) as response:
                await response.read()
                return response.status
        return list(await asyncio.gather(*(post(t) for t in tokens)))


async def test_a_burst_of_registrations_is_stored_as_one_at_a_time_would(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"a{i}", description=f"parses manifests {i}") for i in range(40)]
    tokens = [signed_write.make(key, {"action": "register", "facts": facts.to_json()}) for key, facts in agents]
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        runs = count_runs(registry.store)
        assert await _post_all(registry.url, tokens) == [201] * 40
        assert runs and max(runs) > 1  # the burst was stored in runs, not one at a time
        changes = await registry.store.changes_since(0)
        assert sorted(c.agent_id for c in changes) == sorted(f.id for _, f in agents)
        assert [c.seq for c in changes] == list(range(changes[0].seq, changes[0].seq + 40))
        for _, facts in agents:
            record = await client.get(facts.id)
            assert record.live and record.facts == facts and record.log_index is not None
            page = await client.log_entries(record.log_index, record.log_index + 1)
            assert page[0]["agent"] == facts.id
            assert page[0]["leaf_hash"] == leaf_hash(leaf_data("register", facts.id, record.jws or "")).hex()
        assert {a.id for a in (await client.search(q="manifests", limit=100)).agents} == {f.id for _, f in agents}
        assert {a.id for a in (await client.search(skill="echo", limit=100)).agents} == {f.id for _, f in agents}


async def test_a_burst_with_replays_and_updates_refuses_only_those(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"b{i}") for i in range(30)]
    tokens = [signed_write.make(key, {"action": "register", "facts": facts.to_json()}) for key, facts in agents]
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await client.register(agents[0][1], agents[0][0])  # registered before: the burst's copy is a stale update
        # a replay of a token inside the same burst, and a registration signed by a key that is not the agent's
        forged_facts = agents[5][1]
        forged = signed_write.make(agents[6][0], {"action": "register", "facts": forged_facts.to_json()})
        burst = [*tokens, tokens[3], forged]
        runs = count_runs(registry.store)
        statuses = await _post_all(registry.url, burst)
        assert statuses[0] == 409 and statuses[31] == 401
        assert sorted([statuses[3], statuses[30]]) == [201, 401]  # the replay is refused, whichever came first
        assert [s for i, s in enumerate(statuses[1:30], 1) if i != 3] == [201] * 28
        assert runs  # a run was tried, and fell back where it held a write to refuse
        for _, facts in agents:
            assert (await client.get(facts.id)).version == 1
        changes = await registry.store.changes_since(0)
        assert len(changes) == 30 and len({c.agent_id for c in changes}) == 30
        assert all(c.data["version"] == 1 for c in changes)


@pytest.mark.slow
async def test_registrations_checked_in_worker_processes_are_accepted_and_refused_alike(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("w")
    other_key, other = acme.agent("x")
    unendorsed = {**other.to_json(), "description": "changed after the organisation signed"}
    async with live_registry(db_url, verify_workers=1) as registry:
        statuses = await _post_all(registry.url, [
            signed_write.make(key, {"action": "register", "facts": facts.to_json()}),
            signed_write.make(other_key, {"action": "register", "facts": unendorsed}),
            signed_write.make(other_key, {"action": "register", "facts": {"id": other.id}}),
            signed_write.make(other_key, {"action": "register", "facts": other.to_json()})[:-4] + "AAAA"])
        assert statuses == [201, 401, 400, 401]
        async with RegistryClient(registry.url) as client:
            assert (await client.get(facts.id)).live
            with pytest.raises(RegistryError) as missing:
                await client.get(other.id)
            assert missing.value.status == 404


@pytest.mark.slow
async def test_a_burst_goes_to_the_verifier_workers_in_batches_and_a_refusal_stays_its_own() -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"v{i}") for i in range(40)]
    tokens = [signed_write.make(key, {"action": "register", "facts": facts.to_json()}) for key, facts in agents]
    tokens[7] = tokens[7][:-4] + "AAAA"  # a broken signature in the middle of the burst
    verifier = RegistrationVerifier(workers=1)
    pool = verifier._pool
    assert pool is not None
    tasks: list[int] = []
    submit = pool.submit

    def counted(fn: Any, requests: list[Any]) -> Any:
        tasks.append(len(requests))
        return submit(fn, requests)

    pool.submit = counted  # type: ignore[method-assign, assignment]
    try:
        outcomes = await asyncio.gather(*(verifier.open(t, now=time.time(), window=300) for t in tokens),
                                        return_exceptions=True)
    finally:
        verifier.close()
    assert isinstance(outcomes[7], UnauthorizedWrite)
    for i, outcome in enumerate(outcomes):
        if i != 7:
            assert not isinstance(outcome, BaseException)
            write, registration = outcome
            assert registration.facts == agents[i][1] and write.token == tokens[i] and registration.embedding
    assert sum(tasks) == 40 and len(tasks) <= 4  # two go at once, the rest wait and go together
