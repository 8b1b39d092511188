"""The registry's transparency log over real sockets, on SQLite and PostgreSQL: every write leaves a leaf that
re-verifies on its own, proofs check with the RFC 9162 verifiers, and a registry that rewrites its history or
keeps a record out of the log is caught by the client."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from registry_support import (
    bump,
    database,
    downgrade_registry,
    key_path_for,
    live_registry,
    new_org,
    registry_process,
)
from sqlalchemy import text

from guildnet.protocols import jws, keyfile, merkle, signed_write
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.transparency import leaf_data, origin_for
from guildnet.registry.client import LogForked, RegistryClient, RegistryError, UntrustworthyRecord
from guildnet.registry.db import create_engine


async def get_json(url: str, params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        return response.status, await response.json(content_type=None)


async def execute(db_url: str, sql: str, **params: Any) -> None:
    """Change the database behind the registry's back (what a dishonest operator can do)."""
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def test_every_write_is_a_leaf_that_reverifies_and_proofs_check(db_url: str) -> None:
    acme = new_org("acme")
    (key0, facts0), (key2, facts2) = acme.agent("a0"), acme.agent("a2")
    chain1, facts1 = acme.rotating_agent("a1")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        results = [await client.register(facts0, key0),
                   await client.register(facts1, chain1.key, key_event=chain1.inception),
                   await client.register(facts2, key2)]
        assert [r["log_index"] for r in results] == [0, 1, 2]
        updated = await client.register(bump(facts0, version=2), key0)
        event, new_key = chain1.next_rotation()
        rotated = await client.rotate(facts1.id, chain1.key, event, bump(facts1, version=2), new_key)
        revoked = await client.revoke(facts2.id, key2)
        # a rotation is two leaves: the key event's write, then the facts registered under the new key
        assert (updated["log_index"], rotated["log_index"], revoked["log_index"]) == (3, 4, 6)
        # a refused write (stale version) appends nothing
        with pytest.raises(RegistryError):
            await client.register(bump(facts0, version=2), key0)

        status, head = await get_json(registry.url + "/v1/log/head")
        assert status == 200 and head["size"] == 7
        registry_key = keyfile.load(key_path_for(db_url))
        assert head["key"] == registry_key.did
        checkpoint = merkle.verify_checkpoint(head["checkpoint"], origin=origin_for(registry_key.did),
                                              signer=registry_key.did)
        assert checkpoint.size == 7 and checkpoint.root.hex() == head["root"]

        entries = await client.log_entries(0, 100)
        assert [e["kind"] for e in entries] == ["register"] * 4 + ["rotate", "register", "revoke"]
        leaves = []
        for entry in entries:  # each leaf stands alone: its JWS verifies and names the agent and action
            data = json.loads(entry["data"])
            verified, payload = jws.verify_json(data["jws"])
            assert verified.signer in {facts0.id, facts1.id, facts2.id, new_key.did}
            assert payload["action"] == entry["kind"] == data["kind"] and data["agent"] == entry["agent"]
            assert entry["leaf_hash"] == merkle.leaf_hash(entry["data"].encode()).hex()
            leaves.append(bytes.fromhex(entry["leaf_hash"]))
        assert merkle.root(leaves) == checkpoint.root  # recomputed by us, not taken from the registry

        for index in range(7):
            status, proof = await get_json(registry.url + "/v1/log/inclusion", {"index": str(index), "size": "7"})
            merkle.verify_inclusion(leaves[index], index, 7, [bytes.fromhex(p) for p in proof["proof"]],
                                    checkpoint.root)
        status, by_hash = await get_json(registry.url + "/v1/log/inclusion", {"leaf_hash": leaves[4].hex()})
        assert status == 200 and by_hash["index"] == 4 and by_hash["size"] == 7
        for old in range(8):
            status, proof = await get_json(registry.url + "/v1/log/consistency", {"old": str(old), "new": "7"})
            assert status == 200
            merkle.verify_consistency(old, 7, merkle.root(leaves[:old]), checkpoint.root,
                                      [bytes.fromhex(p) for p in proof["proof"]])

        # the agent record points at its registration now in force, and the client proves it is in the head
        record = await client.get(facts0.id, verify_inclusion=True)
        assert record.log_index == 3 and record.version == 2
        assert client.last_head is not None and client.last_head.size == 7


@pytest.mark.parametrize("params", [
    {"index": "6"}, {"index": "-1"}, {"index": "0", "size": "7"}, {"index": "x"}, {},
    {"index": "0", "leaf_hash": "00" * 32}, {"leaf_hash": "zz"}, {"leaf_hash": "ab" * 32},
])
async def test_bad_inclusion_queries_are_problems(db_url: str, params: dict[str, str]) -> None:
    acme = new_org("acme")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        for i in range(6):
            key, facts = acme.agent(f"a{i}")
            await client.register(facts, key)
        async with aiohttp.ClientSession() as session, session.get(registry.url + "/v1/log/inclusion",
                                                                   params=params) as response:
            assert response.status == 400 and response.content_type == "application/problem+json"
            assert (await response.json(content_type=None))["detail"]


async def test_bad_consistency_and_entries_queries(db_url: str) -> None:
    key, facts = new_org("acme").agent("a")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await client.register(facts, key)
        for path, params in (("consistency", {"old": "2", "new": "1"}), ("consistency", {"new": "1"}),
                             ("consistency", {"old": "0", "new": "5"}), ("entries", {"start": "0", "end": "300"}),
                             ("entries", {"start": "3", "end": "2"}), ("entries", {"start": "-1"})):
            status, problem = await get_json(f"{registry.url}/v1/log/{path}", params)
            assert status == 400 and problem["status"] == 400, (path, params)
        assert await client.log_entries(5, 10) == []


async def rewrite_history(db_url: str, case: str, victim: str, forged_token: str) -> None:
    if case == "altered":
        data = leaf_data("register", victim, forged_token)
        await execute(db_url, "UPDATE log_entries SET data = :data, leaf_hash = :hash WHERE idx = 1",
                      data=data.decode(), hash=merkle.leaf_hash(data))
    else:
        await execute(db_url, "DELETE FROM log_entries WHERE idx = (SELECT MAX(idx) FROM log_entries)")


@pytest.mark.parametrize("case", ["altered", "truncated"])
async def test_client_catches_a_registry_that_rewrites_history(db_url: str, case: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"a{i}") for i in range(3)]
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as setup:
        for key, facts in agents:
            await setup.register(facts, key)
    key1, facts1 = agents[1]
    forged = signed_write.make(key1, {"action": "register", "facts": bump(facts1, version=7).to_json()})
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as watcher:
        first = await watcher.log_head()
        assert first.size == 3
        await watcher.get(facts1.id, verify_inclusion=True)
    await rewrite_history(db_url, case, facts1.id, forged)
    async with live_registry(db_url) as registry:
        async with RegistryClient(registry.url, registry_key=watcher.registry_key) as returning:
            returning.last_head = watcher.last_head  # a client that saw the honest head before
            with pytest.raises(LogForked):
                await returning.log_head()
        if case == "altered":  # a newcomer has no old head, but the served record is not the logged one
            async with RegistryClient(registry.url) as newcomer:
                with pytest.raises(UntrustworthyRecord, match="not in the log"):
                    await newcomer.get(facts1.id, verify_inclusion=True)


async def test_a_record_kept_out_of_the_log_fails_inclusion(db_url: str) -> None:
    key, facts = new_org("acme").agent("a")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await client.register(facts, key)
        # the operator serves a genuinely signed newer registration it never logged (a split view)
        hidden = bump(facts, version=2)
        token = signed_write.make(key, {"action": "register", "facts": hidden.to_json()})
        await execute(db_url, "UPDATE agents SET facts = :facts, jws = :jws, version = 2 WHERE id = :id",
                      facts=json.dumps(hidden.to_json(), separators=(",", ":")), jws=token, id=facts.id)
        assert (await client.get(facts.id)).version == 2  # signatures alone cannot tell
        with pytest.raises(UntrustworthyRecord, match="not in the log"):
            await client.get(facts.id, verify_inclusion=True)


async def test_pinned_key_refuses_another_signer(db_url: str) -> None:
    async with live_registry(db_url) as registry:
        async with RegistryClient(registry.url, registry_key=SigningKey.generate().did) as client:
            with pytest.raises(UntrustworthyRecord, match="does not verify"):
                await client.log_head()
        async with RegistryClient(registry.url) as tofu:
            head = await tofu.log_head()
            assert head.size == 0 and tofu.registry_key == keyfile.load(key_path_for(db_url)).did


async def test_key_created_private_next_to_sqlite_file(tmp_path: Path) -> None:
    async with database("sqlite", tmp_path) as url, live_registry(url, key_path=None) as registry:
        path = tmp_path / "registry.key"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        status, head = await get_json(registry.url + "/v1/log/head")
        assert status == 200 and head["key"] == keyfile.load(path).did


async def test_migration_starts_the_log_with_existing_agents(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"a{i}") for i in range(3)]
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        for key, facts in agents:
            await client.register(facts, key)

    await downgrade_registry(db_url, "0001")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:  # upgrades again
        head = await client.log_head()
        assert head.size == 3
        for index, (_, facts) in enumerate(agents):
            entry = await client.get(facts.id, verify_inclusion=True)
            assert entry.log_index == index


@pytest.mark.postgres
async def test_replicas_answer_for_leaves_the_other_wrote(tmp_path: Path) -> None:
    acme = new_org("acme")
    async with database("postgresql", tmp_path) as url, registry_process(url) as first_url, \
            registry_process(url) as second_url, RegistryClient(first_url) as first, \
            RegistryClient(second_url) as second:
        assert (await second.log_head()).size == 0
        for i in range(3):
            key, facts = acme.agent(f"a{i}")
            await first.register(facts, key)
        entry = await second.get(facts.id, verify_inclusion=True)  # replica 2 catches up from the table
        assert entry.log_index == 2 and second.last_head is not None and second.last_head.size == 3
        key, facts = acme.agent("b")
        await second.register(facts, key)
        head = await first.log_head()
        assert head.size == 4 and first.registry_key == second.registry_key
        assert head.root == (await second.log_head()).root
        assert hashlib.sha256(b"").digest() != head.root
