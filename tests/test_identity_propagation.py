"""Revocation and key rotation reach every watching node in under a second (each node: a PeerIndex on its
own watch connection), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from registry_support import bump, live_registry, new_org

from guildnet.node.delegation.discovery import PeerIndex
from guildnet.registry.client import RegistryClient

WATCHERS = 50


async def seen_by_all(indexes: list[PeerIndex], started: float, seq: int) -> float:
    """Seconds from ``started`` until every index has applied change ``seq``."""
    async with asyncio.timeout(5):
        await asyncio.gather(*(index.wait_for_position(seq) for index in indexes))
    return time.perf_counter() - started


async def test_revocation_and_rotation_reach_every_watcher_within_a_second(db_url: str) -> None:
    acme = new_org("acme")
    chain, facts = acme.rotating_agent("peer")
    key = chain.key
    async with live_registry(db_url, write_rate_per_ip=None) as registry, \
            RegistryClient(registry.url) as writer:
        await writer.register(facts, key, key_event=chain.inception)
        clients = [RegistryClient(registry.url) for _ in range(WATCHERS)]
        indexes = [PeerIndex(client) for client in clients]
        try:
            await asyncio.gather(*(index.track("echo") for index in indexes))
            assert all(index.get(facts.id) is not None for index in indexes)

            event, new_key = chain.next_rotation()
            started = time.perf_counter()
            rotated = await writer.rotate(facts.id, key, event, bump(facts, version=2), new_key)
            rotation = await seen_by_all(indexes, started, rotated["seq"])
            assert all(getattr(index.get(facts.id), "current_key", None) == new_key.did for index in indexes)

            started = time.perf_counter()
            revocation = await seen_by_all(indexes, started, (await writer.revoke(facts.id, new_key))["seq"])
            assert all(index.candidates("echo") == [] and index.is_revoked(facts.id) for index in indexes)
        finally:
            for index, client in zip(indexes, clients, strict=True):
                await index.close()
                await client.close()
    print(f"\n{WATCHERS} watchers: rotation seen by all after {rotation * 1000:.0f} ms, "
          f"revocation after {revocation * 1000:.0f} ms")
    assert rotation < 1.0 and revocation < 1.0
