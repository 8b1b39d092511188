"""`guildnet witness serve` over real HTTP, and a registry collecting cosignatures from witnesses (both back ends)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import aiohttp
import pytest
from registry_support import key_path_for, live_registry, new_org
from sqlalchemy import text
from witness_support import wait_for_head, witness_in_process, witness_process

from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import Checkpoint, MerkleTree, leaf_hash, sign_checkpoint, split_note
from guildnet.protocols.transparency import origin_for
from guildnet.protocols.witness import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    WitnessPolicy,
    verify_cosignatures,
    verify_witnessed,
)
from guildnet.registry.client import RegistryClient, UntrustworthyRecord
from guildnet.registry.cosigning import WitnessEndpoint
from guildnet.registry.db import create_engine


def leaves(n: int, salt: bytes = b"") -> MerkleTree:
    return MerkleTree.from_leaf_hashes([leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)])


@pytest.mark.slow
async def test_witness_process_cosigns_growth_refuses_the_rest_and_remembers_across_restarts(tmp_path: Path) -> None:
    log_key = SigningKey.generate()
    origin = origin_for(log_key.did)
    tree, fork = leaves(20), leaves(20, b"fork")

    def note(size: int, t: MerkleTree = tree, key: SigningKey = log_key, log_origin: str = origin) -> str:
        return sign_checkpoint(Checkpoint(log_origin, size, t.root(size)), key)

    async def add(session: aiohttp.ClientSession, url: str, old: int, proof: list[bytes], body: str
                  ) -> tuple[int, str, str]:
        data = AddCheckpoint(old, tuple(proof), body).encode()
        async with session.post(url + "/add-checkpoint", data=data) as response:
            return response.status, await response.text(), response.content_type

    async with witness_process(tmp_path, "w1", log_key.did) as endpoint, aiohttp.ClientSession() as session:
        assert stat.S_IMODE(os.stat(tmp_path / "w1.key").st_mode) == 0o600
        status, lines, _ = await add(session, endpoint.url, 0, [], note(5))
        assert status == 200
        [first] = verify_cosignatures(note(5) + lines, [endpoint.witness])
        assert first.timestamp > 0
        assert (await add(session, endpoint.url, 5, tree.consistency_proof(5, 9), note(9)))[0] == 200
        # refused, and nothing changes: an inconsistent fork, a shrunken tree, a stale old size, a forged signature
        assert (await add(session, endpoint.url, 9, fork.consistency_proof(9, 12), note(12, fork)))[0] == 422
        assert (await add(session, endpoint.url, 9, [], note(4)))[0] == 400
        assert await add(session, endpoint.url, 4, [], note(4)) == (409, "9\n", SIZE_CONTENT_TYPE)
        assert (await add(session, endpoint.url, 9, tree.consistency_proof(9, 12), note(12, key=SigningKey.generate())
                          ))[0] == 403
        stranger = SigningKey.generate()
        assert (await add(session, endpoint.url, 0, [], note(3, key=stranger, log_origin=origin_for(stranger.did)))
                )[0] == 404
        async with session.post(endpoint.url + "/add-checkpoint", data=b"old 1\nnot base64\n\nx") as response:
            assert response.status == 400
        async with session.get(f"{endpoint.url}/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint") as got:
            held = await got.text()
        assert split_note(held)[0] == split_note(note(9))[0]
        assert verify_cosignatures(held, [endpoint.witness])

    async with witness_process(tmp_path, "w1", log_key.did) as endpoint, aiohttp.ClientSession() as session:
        assert await add(session, endpoint.url, 0, [], note(12)) == (409, "9\n", SIZE_CONTENT_TYPE)
        assert (await add(session, endpoint.url, 9, fork.consistency_proof(9, 12), note(12, fork)))[0] == 422
        assert (await add(session, endpoint.url, 9, tree.consistency_proof(9, 12), note(12)))[0] == 200


async def register_agents(url: str, count: int) -> None:
    org = new_org("acme")
    async with RegistryClient(url) as client:
        for i in range(count):
            key, facts = org.agent(f"agent{i}")
            await client.register(facts, key)


async def test_registry_collects_cosignatures_and_serves_the_cosigned_head(db_url: str, tmp_path: Path) -> None:
    log_key = keyfile.load_or_create(key_path_for(db_url)).did
    async with witness_in_process(tmp_path, "w1", log_key) as w1, witness_in_process(tmp_path, "w2", log_key) as w2:
        policy = WitnessPolicy((w1.witness, w2.witness), 2)
        async with live_registry(db_url, witnesses=(w1, w2), cosign_interval=0.05) as registry:
            await register_agents(registry.url, 3)
            body = await wait_for_head(registry.url, lambda b: b["size"] == 3 and len(b["witnesses"]) == 2)
            assert body["witnesses"] == ["witness.test/w1", "witness.test/w2"] and body["tip"] == 3
            assert verify_witnessed(body["checkpoint"], log_key=log_key, policy=policy).checkpoint.size == 3
            async with RegistryClient(registry.url, registry_key=log_key, witnesses=policy) as client:
                assert (await client.log_head()).size == 3
                await register_agents(registry.url, 1)
                await wait_for_head(registry.url, lambda b: b["size"] == 4 and len(b["witnesses"]) == 2)
                assert (await client.log_head()).size == 4  # and consistent with 3
            async with registry.store.engine.connect() as conn:
                stored = (await conn.execute(text("SELECT witness, size FROM witness_cosignatures "
                                                  "ORDER BY size, witness"))).all()
            assert {("witness.test/w1", 4), ("witness.test/w2", 4)} <= {tuple(r) for r in stored}
            assert max(r[1] for r in stored) == 4
        engine = create_engine(db_url)
        async with engine.begin() as conn:  # the registry forgets what the witnesses hold
            await conn.execute(text("DELETE FROM witness_cosignatures"))
        await engine.dispose()
        async with live_registry(db_url, witnesses=(w1, w2), cosign_interval=0.05) as registry:
            await register_agents(registry.url, 1)  # each witness answers 409 with size 4; the registry resumes
            body = await wait_for_head(registry.url, lambda b: b["size"] == 5 and len(b["witnesses"]) == 2)
            assert verify_witnessed(body["checkpoint"], log_key=log_key, policy=policy).checkpoint.size == 5


async def test_a_head_short_of_the_clients_quorum_is_refused_naming_the_missing_witness(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/registry.db"
    log_key = keyfile.load_or_create(key_path_for(db_url)).did
    async with witness_in_process(tmp_path, "w1", log_key) as w1:
        down = WitnessEndpoint("http://127.0.0.1:9", w1.witness.__class__("witness.test/down",
                                                                           SigningKey.generate().did))
        async with live_registry(db_url) as plain, RegistryClient(plain.url, registry_key=log_key) as client:
            # a head nobody cosigned: fine without witnesses, refused with them
            assert (await client.log_head()).size == 0
            client.witnesses = WitnessPolicy((w1.witness,), 1)
            with pytest.raises(UntrustworthyRecord, match=r"witness\.test/w1"):
                await client.log_head()
        async with live_registry(db_url, witnesses=(w1, down), witness_quorum=1, cosign_interval=0.05) as registry:
            async with RegistryClient(registry.url, registry_key=log_key) as client:
                await register_agents(registry.url, 2)
                await wait_for_head(registry.url, lambda b: b["size"] == 2 and b["witnesses"] == ["witness.test/w1"])
                client.witnesses = WitnessPolicy((w1.witness, down.witness), 1)
                assert (await client.log_head()).size == 2
                client.witnesses = WitnessPolicy((w1.witness, down.witness), 2)
                with pytest.raises(UntrustworthyRecord, match=r"missing: witness\.test/down"):
                    await client.log_head()
