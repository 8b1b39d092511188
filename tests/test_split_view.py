"""A registry that shows two parties two different trees (a split view) is caught by a client requiring witnesses.

Real processes: two `guildnet witness serve`, one `guildnet registry serve` that submits to them, and in this
process a man-in-the-middle holding the registry's own key (the registry is the liar). Through one port it
passes everything through; through the other it shows its victim a forked tree: the honest log with its last
leaf swapped for another, signed with the registry key. Without witnesses the victim, whose first head this
is, has nothing to compare it with and accepts it; requiring 2 of 2 witnesses, it refuses every way the
attacker can dress the fork, and the honest path still works.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from registry_support import key_path_for, new_org, pass_through, registry_process
from witness_support import wait_for_head, witness_process

from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import Checkpoint, MerkleTree, leaf_hash, sign_checkpoint, split_note
from guildnet.protocols.transparency import leaf_data
from guildnet.protocols.witness import AddCheckpoint, WitnessPolicy, cosign
from guildnet.registry.client import RegistryClient, UntrustworthyRecord


@contextlib.asynccontextmanager
async def man_in_the_middle(upstream: str, forked_head: dict[str, Any]) -> AsyncIterator[tuple[str, str]]:
    """Two URLs in front of ``upstream``: the first passes every request through, the second answers
    ``/v1/log/head`` with ``forked_head`` (which the test may change) and passes the rest through."""
    victim_port: list[int] = []

    def fork(request: web.Request) -> web.Response | None:
        if request.path == "/v1/log/head" and request.url.port in victim_port:
            return web.json_response(forked_head)
        return None

    async with pass_through(upstream, fork, sites=2) as (honest, victim):
        victim_port.append(int(victim.rsplit(":", 1)[1]))
        yield honest, victim


@pytest.mark.slow
async def test_split_view_is_refused_by_a_client_requiring_two_of_two_witnesses(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/registry.db"
    registry_key = keyfile.load_or_create(key_path_for(db_url))
    org = new_org("acme")
    async with witness_process(tmp_path, "w1", registry_key.did) as w1, \
            witness_process(tmp_path, "w2", registry_key.did) as w2:
        policy = WitnessPolicy((w1.witness, w2.witness), 2)
        witness_flags = [flag for w in (w1, w2) for flag in ("--witness", f"{w.witness.name},{w.witness.key},{w.url}")]
        async with registry_process(db_url, *witness_flags, "--cosign-interval", "0.1") as registry:
            async with RegistryClient(registry) as client:
                agents = [org.agent(f"agent{i}") for i in range(4)]
                for key, facts in agents:
                    await client.register(facts, key)
            honest = await wait_for_head(registry, lambda b: b["size"] == 4 and len(b["witnesses"]) == 2)

            # The fork: the same first three leaves, then the attacker's registration, signed with the registry key.
            async with RegistryClient(registry) as client:
                entries = await client.log_entries(0, 4)
            attacker_key = SigningKey.generate()
            forged = leaf_hash(leaf_data("register", attacker_key.did, "forged.registration.token"))
            tree = MerkleTree.from_leaf_hashes([bytes.fromhex(e["leaf_hash"]) for e in entries[:3]] + [forged])
            fork = sign_checkpoint(Checkpoint(honest["origin"], 4, tree.root()), registry_key)
            assert tree.root().hex() != honest["root"]
            forked_head = {**honest, "root": tree.root().hex(), "checkpoint": fork, "witnesses": []}

            # The witnesses will not cosign the fork: each holds the honest tree of size 4.
            async with aiohttp.ClientSession() as session:
                for witness in (w1, w2):
                    for old, proof in ((4, []), (3, tree.consistency_proof(3, 4)), (0, [])):
                        body = AddCheckpoint(old, tuple(proof), fork).encode()
                        async with session.post(witness.url + "/add-checkpoint", data=body) as response:
                            assert response.status in (409, 422), (old, response.status)

            async with man_in_the_middle(registry, forked_head) as (honest_url, victim_url):
                # Without witnesses, the victim (a first look, nothing to compare with) accepts the fork.
                async with RegistryClient(victim_url, registry_key=registry_key.did) as victim:
                    assert (await victim.log_head()).root == tree.root()

                honest_lines = split_note(honest["checkpoint"])[1]
                pasted = "".join(f"\u2014 {name} {base64.b64encode(raw).decode()}\n"
                                 for name, raw in honest_lines if name.startswith("witness.test/"))
                sockpuppet = cosign(split_note(fork)[0], SigningKey.generate(), w2.witness.name, 1_760_000_000)
                dressed = {
                    "no cosignatures": (fork, "missing: witness.test/w1, witness.test/w2"),
                    "the honest tree's cosignatures pasted on": (fork + pasted, "does not verify over this checkpoint"),
                    "a cosignature by an unknown key under a witness's name": (fork + sockpuppet, "missing: "),
                }
                for what, (note, reason) in dressed.items():
                    forked_head["checkpoint"] = note
                    async with RegistryClient(victim_url, registry_key=registry_key.did, witnesses=policy) as victim:
                        with pytest.raises(UntrustworthyRecord, match=reason):
                            await victim.log_head()
                        assert victim.last_head is None, what  # nothing of the fork was remembered

                # The honest path, through the same man in the middle, still works, inclusion included.
                async with RegistryClient(honest_url, registry_key=registry_key.did, witnesses=policy) as client:
                    head = await client.log_head()
                    assert (head.size, head.root.hex()) == (4, honest["root"])
                    entry = await client.get(agents[3][1].id, verify_inclusion=True)
                    assert entry.id == agents[3][1].id
