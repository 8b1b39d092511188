"""The /v1/watch change stream: order, resume, and fan-out across replicas through PostgreSQL NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from registry_support import bump, database, live_registry, new_org, registry_process

from guildnet.registry.client import RegistryClient
from guildnet.registry.server import HUB


async def collect(client: RegistryClient, since: int, count: int, within: float = 10.0) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def run() -> None:
        async for change in client.watch(since):
            seen.append(change)
            if len(seen) == count:
                return

    await asyncio.wait_for(run(), within)
    return seen


async def test_watch_streams_changes_in_order_and_resumes(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    other_key, other = acme.agent("b")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        watcher = asyncio.create_task(collect(client, 0, 4))
        await asyncio.sleep(0.2)
        await client.register(facts, key)
        await client.register(bump(facts, version=2), key)
        await client.register(other, other_key)
        await client.revoke(facts.id, key)
        changes = await watcher
        assert [(c["kind"], c["agent"]) for c in changes] == [
            ("registered", facts.id), ("updated", facts.id), ("registered", other.id), ("revoked", facts.id)]
        seqs = [c["seq"] for c in changes]
        assert seqs == sorted(seqs) and len(set(seqs)) == 4
        resumed = await collect(client, seqs[1], 2)
        assert [c["seq"] for c in resumed] == seqs[2:]


async def test_slow_watcher_catches_up_from_the_table(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"a{i}") for i in range(30)]
    async with live_registry(db_url, watch_queue_size=2) as registry, RegistryClient(registry.url) as client:
        hub = registry.app[HUB]
        stream = hub.subscribe(0)
        for key, facts in agents:
            await client.register(facts, key)
        received = []
        async for change in stream:  # starts reading only after all writes: its queue overflowed long ago
            received.append(change.seq)
            if len(received) == len(agents):
                break
        await stream.aclose()
        assert received == sorted(received) and len(set(received)) == len(agents)


async def test_with_no_watcher_the_hub_reads_no_changes_and_a_later_watcher_misses_none(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"n{i}") for i in range(6)]
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        store = registry.app[HUB].store
        reads: list[int] = []
        changes_since = store.changes_since

        async def counted(seq: int, limit: int = 500) -> Any:
            reads.append(seq)
            return await changes_since(seq, limit)

        store.changes_since = counted  # type: ignore[method-assign]
        for key, facts in agents[:3]:
            await client.register(facts, key)
        await asyncio.sleep(0.2)  # the hub woke after each commit
        assert reads == []  # nobody watched: nothing was read for them
        watcher = asyncio.create_task(collect(client, 0, 6))
        await asyncio.sleep(0.2)
        for key, facts in agents[3:]:
            await client.register(facts, key)
        assert [c["agent"] for c in await watcher] == [facts.id for _, facts in agents]


@contextlib.asynccontextmanager
async def two_replicas(tmp_path: Any) -> AsyncIterator[tuple[str, str]]:
    """Two `guildnet registry serve` processes on one PostgreSQL database."""
    poll = ("--watch-poll-interval", "60")  # only NOTIFY can wake a watcher within the test's bound
    async with database("postgresql", tmp_path) as url, registry_process(url, *poll) as first, \
            registry_process(url, *poll) as second:
        yield first, second


@pytest.mark.postgres
async def test_two_replicas_share_data_and_watchers_see_each_others_writes(tmp_path: Any) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    async with two_replicas(tmp_path) as (first_url, second_url), \
            RegistryClient(first_url) as first, RegistryClient(second_url) as second:
        watcher = asyncio.create_task(collect(second, 0, 2, within=5.0))
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await first.register(facts, key)          # written through replica 1 ...
        await first.revoke(facts.id, key)
        changes = await watcher                    # ... seen by a watcher of replica 2
        elapsed = loop.time() - started
        assert [c["kind"] for c in changes] == ["registered", "revoked"]
        assert elapsed < 2.0
        assert (await second.get(facts.id)).revoked
