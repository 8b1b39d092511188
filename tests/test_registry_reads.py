"""The hot reads (get by id, search pages): one statement each, the page's change-feed position read with it, and
PostgreSQL reads that outlive their connections without a ping at each checkout."""

from __future__ import annotations

import asyncpg
import pytest
from registry_support import PG_ADMIN_DSN, live_registry, new_org
from sqlalchemy.engine import make_url

from guildnet.registry.client import RegistryClient
from guildnet.registry.store.reads import positional


def test_named_parameters_become_positional_and_casts_stay() -> None:
    sql, names = positional("SELECT :a, :b, :a, 'x'::text, ''::bytea FROM t WHERE c = :b_2")
    assert sql == "SELECT $1, $2, $1, 'x'::text, ''::bytea FROM t WHERE c = $3"
    assert names == ("a", "b", "b_2")


async def test_each_page_carries_the_position_it_was_read_at(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"reader-{i}", skills=[{"id": "summarise", "name": "Summarise"}],
                         description="summarises contracts") for i in range(3)]
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        for key, facts in agents:
            await client.register(facts, key)
        position = await registry.store.last_seq()
        assert position >= 3
        by_skill = await client.search(skill="summarise", limit=2)
        assert len(by_skill.agents) == 2 and by_skill.next and by_skill.seq == position
        assert (await client.search(skill="summarise", cursor=by_skill.next)).seq == position
        assert (await client.search(q="contracts", match="words")).seq == position
        assert (await client.search(skill="nothing-has-this")).seq == position  # no row to carry it
        await client.revoke(agents[0][1].id, agents[0][0])
        after = await client.search(skill="summarise")
        assert after.seq == await registry.store.last_seq() > position
        assert agents[0][1].id not in [a.id for a in after.agents]


@pytest.mark.postgres
async def test_reads_outlive_their_connections(tmp_path: object) -> None:
    """Reads keep no per-checkout ping (a round trip each): a connection the server dropped is found dead on use,
    discarded, and the read retried once on a new one."""
    from registry_support import database

    acme = new_org("acme")
    key, facts = acme.agent("survivor", skills=[{"id": "translate", "name": "Translate"}],
                            description="translates invoices")
    async with database("postgresql", tmp_path) as db_url, live_registry(db_url) as registry, \
            RegistryClient(registry.url) as client:
        await client.register(facts, key)
        for _ in range(3):  # open a few reader connections
            assert (await client.get(facts.id)).facts == facts
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 "
                "AND pid <> pg_backend_pid()", make_url(db_url).database)
        finally:
            await admin.close()
        assert killed >= 1
        assert (await client.get(facts.id)).facts == facts
        assert [a.id for a in (await client.search(skill="translate")).agents] == [facts.id]
        assert [a.id for a in (await client.search(q="invoices", match="words")).agents] == [facts.id]


@pytest.mark.postgres
async def test_read_sessions_plan_each_query_and_scan_from_the_first_page(tmp_path: object) -> None:
    """A common word's page ranks the first matches a sequential scan finds: a synchronised scan would start
    where the previous one stopped (on a table larger than a quarter of shared_buffers), and the same query would
    rank a different window each time (the hybrid's word ranking too, on the store's engine)."""
    from registry_support import database
    from sqlalchemy import text

    async with database("postgresql", tmp_path) as db_url, live_registry(db_url) as registry:
        rows = await registry.store._rows.rows(
            text("SELECT current_setting('synchronize_seqscans'), current_setting('plan_cache_mode')"), {})
        assert tuple(rows[0]) == ("off", "force_custom_plan")
        async with registry.store.engine.connect() as conn:  # the hybrid's word ranking reads on these
            assert (await conn.execute(text("SHOW synchronize_seqscans"))).scalar() == "off"

@pytest.mark.postgres
async def test_text_index_pending_list_stays_short(tmp_path: object) -> None:
    """Every text search reads the GIN index's whole pending list: migration 0011 caps it at 64 kB (PostgreSQL's
    default is 4 MB, ~2 ms of a search's CPU when full), and a search finds pending and merged agents alike."""
    from registry_support import database, downgrade_registry

    acme = new_org("acme")
    # 500 distinct words each: ~12 kB of index entries per agent, so twelve outgrow 64 kB (~140 kB, 18 pages)
    agents = [acme.agent(f"wordy-{n}", description=" ".join(f"k{n}w{i:03d}" for i in range(500)))
              for n in range(12)]
    async with database("postgresql", tmp_path) as db_url:
        dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
        async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
            for key, facts in agents:
                await client.register(facts, key)
            conn = await asyncpg.connect(dsn)
            try:
                assert await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'ix_agents_search'") \
                    == ["gin_pending_list_limit=64"]
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
                pending = await conn.fetchval("SELECT pending_pages FROM pgstatginindex('ix_agents_search')")
                assert pending <= 64 // 8
            finally:
                await conn.close()
            for n, (_, facts) in enumerate(agents):  # the first were merged into the index, the last are pending
                assert [a.id for a in (await client.search(q=f"k{n}w499", match="words")).agents] == [facts.id]
        await downgrade_registry(db_url, "0010")
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'ix_agents_search'") is None
        finally:
            await conn.close()
