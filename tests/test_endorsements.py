"""An organisation's endorsement of its agents: withdrawn by the organisation key (signed, logged, at once in
search, watch and reputation), and renewed by the node before it expires."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from delegation_support import translator
from registry_support import live_registry, new_org, snapshot
from test_registry_receipts import receipt

from guildnet.node.identity import StaticIdentity
from guildnet.node.publisher import PublishedAgent, Publisher
from guildnet.protocols import jws, keyfile
from guildnet.protocols.transparency import leaf_data
from guildnet.registry.client import RegistryClient, RegistryError
from guildnet.registry.state import REPUTATION


async def test_an_organisation_withdraws_an_agent_whose_key_it_no_longer_trusts(db_url: str) -> None:
    acme, other = new_org("acme"), new_org("other")
    async with live_registry(db_url, pretrusted_orgs=(other.key.did,), reputation_interval=3600) as registry, \
            RegistryClient(registry.url) as client:
        stolen_key, agent = acme.agent("billing")
        buyer_key, buyer = other.agent("buyer")
        await client.register(agent, stolen_key)
        await client.register(buyer, buyer_key)
        await client.submit_receipt(receipt(buyer_key, stolen_key, "t1"), buyer_key)
        await registry.app[REPUTATION].refresh(force=True)
        assert (await client.reputation(agent.id, "echo")).receipts == 1

        # nobody but the organisation that endorsed it can withdraw it: not the agent's key, not another org
        before = await snapshot(registry)
        for key in (stolen_key, other.key):
            with pytest.raises(RegistryError) as refused:
                await client.withdraw(agent.id, key)
            assert refused.value.status == 401
        assert await snapshot(registry) == before

        answer = await client.withdraw(agent.id, acme.key)
        entry = await client.get(agent.id)
        assert entry.revoked and not entry.live
        assert agent.id not in {e.id for e in (await client.search(skill="echo")).agents}
        async with asyncio.timeout(5):
            change = await anext(aiter(client.watch(answer["seq"] - 1)))
        assert (change["kind"], change["agent"], change["by"]) == ("revoked", agent.id, "organisation")
        # the withdrawal is a log leaf anyone can verify: signed by the organisation key, naming the agent
        [logged] = await client.log_entries(answer["log_index"], answer["log_index"] + 1)
        leaf = json.loads(logged["data"])
        verified, payload = jws.verify_json(leaf["jws"])
        assert logged["kind"] == "withdraw" and logged["data"].encode() == leaf_data("withdraw", agent.id, leaf["jws"])
        assert verified.signer == acme.key.did and payload["action"] == "withdraw" and payload["agent"] == agent.id
        # at once in reputation: no score, whatever its receipts said; and the stolen key spends nothing more
        report = await client.reputation(agent.id, "echo")
        assert report.raw["revoked"] is True and report.receipts == 0 and report.evidence == 0.0  # the prior
        [standing] = (await client.reputations([agent.id], "echo")).values()
        assert standing.receipts == 0
        for write in (client.heartbeat(agent.id, stolen_key), client.register(agent, stolen_key),
                      client.submit_receipt(receipt(stolen_key, buyer_key, "t2"), stolen_key)):
            with pytest.raises(RegistryError) as refused:
                await write
            assert refused.value.status in (409, 422)


async def test_the_withdraw_command(tmp_path: Path) -> None:
    acme = new_org("acme")
    keyfile.save(acme.key, tmp_path / "org.key")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as registry, \
            RegistryClient(registry.url) as client:
        key, agent = acme.agent("billing")
        await client.register(agent, key)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guildnet.cli", "registry", "withdraw", agent.id, "--org-key",
            str(tmp_path / "org.key"), "--registry", registry.url, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert out.decode().startswith(f"withdrawn: {agent.id}")
        assert (await client.get(agent.id)).revoked


async def test_a_running_node_renews_its_endorsements_before_they_expire(tmp_path: Path) -> None:
    """Endorsements expire (30 days); the node's publisher registers its agents again, freshly endorsed, after
    a third of that (here half a second)."""
    acme = new_org("acme")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as registry, \
            RegistryClient(registry.url) as client:
        published = PublishedAgent(translator("t"), StaticIdentity.generate(), ttl_seconds=5)
        publisher = Publisher(registry.url, [published], org_key=acme.key, org_name="acme",
                              base_url="http://127.0.0.1:9", renew_after=0.5)
        await publisher.register_all()
        first = await client.get(published.identity.id)
        await publisher.start()
        try:
            async with asyncio.timeout(10):
                async for change in client.watch((await client.search(limit=1)).seq):
                    if change["kind"] == "updated" and change["agent"] == published.identity.id:
                        break
        finally:
            await publisher.stop()
        renewed = await client.get(published.identity.id)
        assert renewed.version > first.version
        assert renewed.endorsement is not None and first.endorsement is not None
        assert renewed.endorsement.issued_at >= first.endorsement.issued_at
        assert renewed.endorsement.expires_at > time.time() + 29 * 86400
