"""Key rotation end to end, with real processes: a node rotates its agent's key while it serves, keeps its id,
and from the rotation on only the new key's signatures count: registry writes, receipts, reputation."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from registry_support import KeyChain, bump, free_port, live_registry, new_org
from test_node import node_process, write_config
from test_registry_receipts import claim_token

from guildnet.node.a2a.client import A2AClient
from guildnet.node.delegation.delegator import Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.identity import AgentIdentity, StaticIdentity, sidecar_path
from guildnet.protocols import jws, keyfile
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.receipts import caller_countersign
from guildnet.registry.client import RegistryClient, RegistryError


async def rotate_cli(config: Path, agent: str = "echo") -> dict[str, str]:
    """``guildnet node rotate`` as a real process (awaited: the registry in this process must keep serving)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "guildnet.cli", "node", "rotate", str(config),
                                                   "--agent", agent, "--json", stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result: dict[str, str] = json.loads(out)
    return result


@pytest.mark.slow
async def test_a_running_node_rotates_and_only_the_new_key_counts_from_then_on(tmp_path: Path, db_url: str) -> None:
    acme = new_org("acme")
    planner_chain: KeyChain = KeyChain()
    planner_key, planner = acme.agent("planner", key=planner_chain.key)
    async with live_registry(db_url, pretrusted_orgs=(acme.key.did,), reputation_interval=0.2) as registry, \
            RegistryClient(registry.url) as client, A2AClient() as a2a_client:
        await client.register(planner, planner_key, key_event=planner_chain.inception)
        port = free_port()
        config = write_config(tmp_path, port, registry.url)
        async with node_process(config, port):
            index = PeerIndex(client)
            delegator = Delegator(client, index, a2a_client, StaticIdentity(planner_key), acme.key.did,
                                  reputation_ttl=0.0)
            first = await delegator.delegate("echo", {"text": "before"}, min_reputation=0.0)
            agent_id, old_key = first.agent.id, first.agent.current_key
            assert agent_id == old_key  # never rotated: the key is the id

            rotated = await rotate_cli(config)
            assert rotated["via"] == "running node" and rotated["agent"] == agent_id
            new_key = rotated["key"]
            assert new_key != old_key
            entry = await client.get(agent_id, verify_inclusion=True)  # proven from the id alone
            assert entry.current_key == new_key and len(entry.key_events) == 2

            # the same running node, the same id: its receipts are now signed by the new key, and they count
            # a bound on waiting for the event, not a speed claim (5 s was too short at load 10)
            await asyncio.wait_for(index.wait_for_position((await client.search(skill="echo")).seq), 30)
            second = await delegator.delegate("echo", {"text": "after"}, min_reputation=0.0)
            assert second.agent.id == agent_id and [a.outcome for a in second.attempts] == ["success"]
            claim = jws.verify_json(jws.verify_json(second.receipt)[1]["receipt"])[0]
            assert claim.signer == new_key
            await delegator.flush()
            assert delegator.refused_receipts == []

            # on disk: the key file holds the new key; the sidecar keeps the id and the history, not the old key
            assert keyfile.load(tmp_path / "keys" / "echo.key").did == new_key
            sidecar = json.loads(sidecar_path(tmp_path / "keys" / "echo.key").read_text())
            assert sidecar["agent"] == agent_id and len(sidecar["events"]) == 2
            assert AgentIdentity.load_or_create(tmp_path / "keys" / "echo.key").key.did == new_key
            await index.close()

        # reputation reads both receipts under the one id
        await asyncio.sleep(0.6)
        report = await client.reputation(agent_id, "echo")
        assert report.receipts == 2

        # stopped: the rotation goes through the key files and the registry directly, and a restart signs anew
        offline = await rotate_cli(config)
        assert offline["via"] == "key files" and offline["key"] not in (old_key, new_key)
        async with node_process(config, port):
            entry = await client.get(agent_id)
            assert entry.current_key == offline["key"]


async def test_receipts_and_writes_by_a_retired_key_are_refused(db_url: str) -> None:
    """The callee rotated: a claim its old key signs no longer counts, nor does a heartbeat by that key."""
    acme, beta = new_org("acme"), new_org("beta")
    caller_key, caller = acme.agent("caller")
    chain, callee = beta.rotating_agent("callee")
    old_key = chain.key
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await client.register(caller, caller_key)
        await client.register(callee, chain.key, key_event=chain.inception)
        def signed_by(key: SigningKey, task: str) -> str:
            return caller_countersign(claim_token(caller.id, key, task, callee=callee.id), caller_key, "success")

        await client.submit_receipt(signed_by(old_key, "t1"), caller_key)
        event, new_key = chain.next_rotation()
        await client.rotate(callee.id, old_key, event, bump(callee, version=2), new_key)
        with pytest.raises(RegistryError) as refused:
            await client.submit_receipt(signed_by(old_key, "t2"), caller_key)
        assert refused.value.status == 403 and "key in force" in refused.value.detail
        accepted = await client.submit_receipt(signed_by(new_key, "t3"), caller_key)
        assert accepted["log_index"] > 0
        with pytest.raises(RegistryError) as refused:
            await client.heartbeat(callee.id, old_key)
        assert refused.value.status == 401
