"""Revocation and key rotation reach every watching node in under a second (each node: a PeerIndex on its
own watch connection), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from registry_support import live_registry, new_org

from guildnet.node.delegation.discovery import PeerIndex
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient

WATCHERS = 50


async def seen_by_all(indexes: list[PeerIndex], started: float, seq: int) -> float:
    """Seconds from ``started`` until every index has applied change ``seq``."""
    async with asyncio.timeout(5):
        await asyncio.gather(*(index.wait_for_position(seq) for index in indexes))
    return time.perf_counter() - started


async def test_revocation_and_rotation_reach_every_watcher_within_a_second(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("peer")
    async with live_registry(db_url, write_rate_per_ip=None) as registry, \
            RegistryClient(registry.url) as writer:
        await writer.register(facts, key)
        clients = [RegistryClient(registry.url) for _ in range(WATCHERS)]
        indexes = [PeerIndex(client) for client in clients]
        try:
            await asyncio.gather(*(index.track("echo") for index in indexes))
            assert all(index.get(facts.id) is not None for index in indexes)

            new_key = SigningKey.generate()
            started = time.perf_counter()
            rotation = await seen_by_all(indexes, started, (await writer.rotate(facts.id, key, new_key.did))["seq"])
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
