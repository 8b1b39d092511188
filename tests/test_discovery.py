"""The node's peer index follows the registry's watch stream, and survives a registry outage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from registry_support import bump, live_registry, new_org

from guildnet.node.delegation.discovery import PeerIndex
from guildnet.registry.client import RegistryClient

WITHIN = 5.0


async def settle(index: PeerIndex, client: RegistryClient) -> None:
    async with asyncio.timeout(WITHIN):
        await index.wait_for_position((await client.search(limit=1)).seq)


async def test_index_follows_registrations_updates_revocations_and_liveness(tmp_path: Path) -> None:
    acme, globex = new_org("acme"), new_org("globex")
    skill = [{"id": "translate", "name": "Translate", "tags": ["language"]}]
    a_key, a = acme.agent("a", skills=skill, ttl_seconds=10)
    b_key, b = globex.agent("b", skills=skill)
    c_key, c = globex.agent("c", skills=[{"id": "other", "name": "Other"}])
    clock = [time.time()]
    db = f"sqlite+aiosqlite:///{tmp_path}/r.db"
    async with live_registry(db, clock=lambda: clock[0], sweep_interval=0.05) as registry, \
            RegistryClient(registry.url) as client:
        await client.register(a, a_key)
        index = PeerIndex(client)
        await index.track("translate")
        assert [e.id for e in index.candidates("translate")] == [a.id]

        await client.register(b, b_key)          # a new peer appears without a search
        await client.register(c, c_key)          # an agent of an untracked skill is not fetched
        await settle(index, client)
        assert {e.id for e in index.candidates("translate")} == {a.id, b.id}
        assert index.get(c.id) is None
        assert [e.id for e in index.candidates("translate", exclude_org=acme.key.did)] == [b.id]

        await client.register(bump(a, version=2, description="now faster"), a_key)
        await settle(index, client)
        entry = index.get(a.id)
        assert entry is not None and entry.facts.version == 2

        await client.revoke(b.id, b_key)         # revocation drops the peer at once
        await settle(index, client)
        assert [e.id for e in index.candidates("translate")] == [a.id] and index.is_revoked(b.id)

        clock[0] += a.ttl_seconds + 1            # a's heartbeat is overdue: the registry announces it stale
        await asyncio.sleep(0.3)
        await settle(index, client)
        assert index.candidates("translate") == []
        await client.heartbeat(a.id, a_key)
        await settle(index, client)
        assert [e.id for e in index.candidates("translate")] == [a.id]
        await index.close()


async def test_index_keeps_serving_while_the_registry_is_down_and_catches_up_on_revocations(tmp_path: Path) -> None:
    acme = new_org("acme")
    skill = [{"id": "translate", "name": "Translate"}]
    a_key, a = acme.agent("a", skills=skill)
    b_key, b = acme.agent("b", skills=skill)
    db = f"sqlite+aiosqlite:///{tmp_path}/r.db"
    async with live_registry(db) as registry:
        port = int(registry.url.rsplit(":", 1)[1])
        async with RegistryClient(registry.url) as client:
            await client.register(a, a_key)
            await client.register(b, b_key)
    # the registry is gone: the node still has its candidates
    client = RegistryClient(f"http://127.0.0.1:{port}")
    failures: list[BaseException] = []
    index = PeerIndex(client, on_stream_failure=failures.append)
    async with live_registry(db) as first_run:
        index.client = RegistryClient(first_run.url)
        await index.track("translate")
        assert len(index.candidates("translate")) == 2
        reconnect_url = first_run.url
    assert len(index.candidates("translate")) == 2  # served from the cache while the registry is down
    # while the node is cut off, b is revoked through another registry process on the same database
    async with live_registry(db) as other, RegistryClient(other.url) as other_client:
        revoked_at = (await other_client.revoke(b.id, b_key))["seq"]
    assert len(index.candidates("translate")) == 2  # nothing told the node yet
    # the registry comes back where the node expects it; the stream resumes from its last position
    from aiohttp import web

    from guildnet.registry.server import RegistryConfig, create_app

    runner = web.AppRunner(create_app(RegistryConfig(db_url=db)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(reconnect_url.rsplit(":", 1)[1])).start()
    try:
        async with asyncio.timeout(WITHIN):
            await index.wait_for_position(revoked_at)
        assert index.get(b.id) is None and index.is_revoked(b.id)
        assert [e.id for e in index.candidates("translate")] == [a.id]
        assert failures  # each break of the stream was reported (the node counts them in its metrics)
    finally:
        await index.close()
        await index.client.close()
        await client.close()
        await runner.cleanup()
