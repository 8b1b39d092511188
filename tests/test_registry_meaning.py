"""Search by meaning through the registry API, on SQLite and PostgreSQL: a request in the user's own words finds
the agent whose facts share none of them; words alone do not; filters, paging, revocation and the migration
that fills in agents stored before it."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import numpy as np
import pytest
from registry_support import downgrade_registry, live_registry, new_org

from guildnet.embedding import default_embedder, search_embedder
from guildnet.registry.client import RegistryClient
from guildnet.registry.meaning import (
    MIN_COSINE,
    STORED_DTYPE,
    agent_text,
    embed_facts,
    embed_query,
    fuse,
    query_text,
    rank_by_meaning,
    stack,
)
from guildnet.registry.server import STORE

CATALOGUE: list[tuple[str, str, dict[str, Any]]] = [
    ("invoice-reader", "Extracts line items and totals from supplier invoices",
     {"id": "extract-invoice", "name": "Invoice extraction", "tags": ["accounting", "pdf"]}),
    ("translator", "Translates web pages and documents into French, German or Spanish",
     {"id": "translate", "name": "Translation", "tags": ["language"]}),
    ("parcel-tracker", "Tracks parcels and reports where a shipment is and when it will arrive",
     {"id": "track-shipment", "name": "Shipment tracking", "tags": ["logistics"]}),
    ("test-writer", "Writes unit tests for Python functions",
     {"id": "write-tests", "name": "Test generation", "tags": ["software"]}),
    ("room-booker", "Books meeting rooms and sends calendar invitations",
     {"id": "book-room", "name": "Room booking", "tags": ["office"]}),
]
PARAPHRASES = {  # what a user asks -> the agent that does it; no word in common with its facts
    "pull the amounts out of a vendor bill": "invoice-reader",
    "has my package been delivered yet": "parcel-tracker",
    "schedule a conference with my colleagues": "room-booker",
    # mostly function words: found only because the query is embedded without them (query_text)
    "can you set it up so that we all meet on the next free day": "room-booker",
}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


async def _register_catalogue(client: RegistryClient, org_name: str = "acme") -> dict[str, Any]:
    org = new_org(org_name)
    registered = {}
    for name, description, skill in CATALOGUE:
        key, facts = org.agent(name, description=description, skills=[{**skill, "description": description}])
        await client.register(facts, key)
        registered[name] = (key, facts)
    return registered


def _facts_words(name: str) -> set[str]:
    entry = next(c for c in CATALOGUE if c[0] == name)
    return _words(" ".join([entry[0], entry[1], entry[2]["id"], entry[2]["name"], *entry[2]["tags"]]))


async def test_a_paraphrase_with_no_shared_word_finds_the_agent(db_url: str) -> None:
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        registered = await _register_catalogue(client)
        for request, expected in PARAPHRASES.items():
            assert not _words(request) & _facts_words(expected), request
            assert (await client.search(q=request, match="words")).agents == []  # full-text search finds nothing
            for match in (None, "meaning"):
                found = (await client.search(q=request, match=match)).agents
                assert found and found[0].id == registered[expected][1].id, (request, match,
                                                                               [a.facts.name for a in found])


async def test_words_and_meaning_agree_first_and_filters_still_apply(db_url: str) -> None:
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        registered = await _register_catalogue(client)
        other = await _register_catalogue(client, "globex")
        hybrid = (await client.search(q="supplier invoices"))
        assert {a.id for a in hybrid.agents[:2]} == {registered["invoice-reader"][1].id,
                                                     other["invoice-reader"][1].id}
        acme_only = (await client.search(q="pull the amounts out of a vendor bill", org="acme")).agents
        assert acme_only[0].id == registered["invoice-reader"][1].id
        assert all(a.facts.organisation.name == "acme" for a in acme_only)
        by_skill = (await client.search(q="has my package been delivered yet", skill="track-shipment")).agents
        assert sorted(a.id for a in by_skill) == sorted([other["parcel-tracker"][1].id,
                                                         registered["parcel-tracker"][1].id])
        key, facts = registered["parcel-tracker"]
        await client.revoke(facts.id, key)
        after = (await client.search(q="has my package been delivered yet")).agents
        assert facts.id not in {a.id for a in after} and after[0].id == other["parcel-tracker"][1].id


async def test_hybrid_pages_continue_without_repeats(db_url: str) -> None:
    acme = new_org("acme")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        ids = set()
        for i in range(7):
            key, facts = acme.agent(f"worker{i}", description="parses shipping manifests and customs declarations")
            await client.register(facts, key)
            ids.add(facts.id)
        seen, cursor = [], None
        while True:
            page = await client.search(q="read the cargo paperwork", limit=3, cursor=cursor)
            seen += [a.id for a in page.agents]
            if page.next is None:
                break
            cursor = page.next
        assert sorted(seen) == sorted(ids)


async def test_a_bad_match_is_a_problem_and_a_query_of_no_word_matches_nothing(db_url: str) -> None:
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await _register_catalogue(client)
        async with aiohttp.ClientSession() as session:
            async with session.get(registry.url + "/v1/agents", params={"q": "bill", "match": "vibes"}) as response:
                assert response.status == 400 and response.content_type == "application/problem+json"
                assert "match must be one of hybrid, words, meaning" in (await response.json())["detail"]
        assert (await client.search(q="?!  --")).agents == []


async def test_the_migration_fills_in_agents_stored_before_it(db_url: str) -> None:
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        registered = await _register_catalogue(client)

    await downgrade_registry(db_url, "0008")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:  # upgrades again
        found = (await client.search(q="pull the amounts out of a vendor bill", match="meaning")).agents
        assert found[0].id == registered["invoice-reader"][1].id


async def _stored_vectors(db_url: str) -> dict[str, bytes]:
    from sqlalchemy import text

    from guildnet.registry import db as registry_db
    engine = registry_db.create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT a.id, v.embedding FROM agents a "
                                            "JOIN agent_vectors v ON v.agent_pk = a.pk"))).all()
    finally:
        await engine.dispose()
    return {row[0]: bytes(row[1]) for row in rows}


async def test_vectors_follow_the_search_model_across_migration_0012(db_url: str) -> None:
    """0012 re-embeds every stored vector with the search model; downgrading it, with the model older code used:
    vectors of one model are never compared with queries of the other."""
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        registered = await _register_catalogue(client)
    facts = {facts.id: json.loads(facts.model_dump_json(by_alias=True, exclude_none=True))
             for _, facts in registered.values()}
    assert await _stored_vectors(db_url) == {did: embed_facts(f) for did, f in facts.items()}
    await downgrade_registry(db_url, "0011")
    old = {did: default_embedder().embed([agent_text(f)])[0].astype(STORED_DTYPE).tobytes()
           for did, f in facts.items()}
    assert await _stored_vectors(db_url) == old != {did: embed_facts(f) for did, f in facts.items()}
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:  # upgrades again
        found = (await client.search(q="pull the amounts out of a vendor bill", match="meaning")).agents
        assert found[0].id == registered["invoice-reader"][1].id
    assert await _stored_vectors(db_url) == {did: embed_facts(f) for did, f in facts.items()}


def test_a_query_is_embedded_without_its_function_words() -> None:
    assert query_text("What do we owe on this purchase receipt?") == "owe purchase receipt?"
    assert query_text("too long, didn't read: shorten this for me") == "long, read: shorten"
    assert query_text("who is it") == "who is it"  # nothing else left: the query as it is
    assert query_text("Invoice OCR") == "Invoice OCR"
    embedder = search_embedder()
    assert np.array_equal(embed_query("what do we owe on this receipt"), embedder.embed(["owe receipt"])[0])
    agents = embedder.embed([agent_text({"name": name, "description": description, "skills": [skill]})
                             for name, description, skill in CATALOGUE])
    names = [name for name, _, _ in CATALOGUE]
    for request, expected in [("I want it in a language they can read", "translator"),
                              ("can you set it up so that we all meet on the next free day", "room-booker")]:
        assert names[int(np.argmax(agents @ embed_query(request)))] == expected, request


def test_fusion_ranks_agreement_first_and_keeps_either_alone() -> None:
    assert fuse([1, 2, 3], [3, 4]) == [3, 1, 2, 4]
    assert fuse([1, 2], [2, 1]) == [1, 2]  # equal scores: by pk
    assert fuse([], [5, 6]) == [5, 6] and fuse([7], []) == [7]


def test_meaning_ranking_drops_distant_and_foreign_vectors() -> None:
    query = np.zeros(4, dtype=np.float32)
    query[0] = 1.0
    close = np.array([0.9, 0.1, 0.0, 0.0], dtype=STORED_DTYPE).tobytes()
    closer = np.array([1.0, 0.0, 0.0, 0.0], dtype=STORED_DTYPE).tobytes()
    distant = np.array([MIN_COSINE - 0.05, 1.0, 0.0, 0.0], dtype=STORED_DTYPE).tobytes()
    foreign = np.ones(8, dtype=STORED_DTYPE).tobytes()  # another model's width: never compared
    ids, matrix = stack(query, [1, 2, 3, 4], [close, distant, closer, foreign])
    assert ids.tolist() == [1, 2, 3] and matrix.shape == (3, 4)
    assert rank_by_meaning(query, ids, matrix, depth=10) == [3, 1]
    assert rank_by_meaning(query, *stack(query, [1, 3], [close, closer]), depth=1) == [3]
    assert rank_by_meaning(np.zeros(4, dtype=np.float32), *stack(query, [1], [closer]), depth=10) == []
    assert rank_by_meaning(query, *stack(query, [], []), depth=10) == []


async def test_the_explorer_finds_by_meaning(db_url: str) -> None:
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await _register_catalogue(client)
        async with aiohttp.ClientSession() as session, session.get(
                registry.url + "/", params={"q": "pull the amounts out of a bill we received"}) as response:
            page = await response.text()
        assert response.status == 200 and "invoice-reader" in page
        others = [page.index(name) for name, _, _ in CATALOGUE if name != "invoice-reader" and name in page]
        assert all(page.index("invoice-reader") < position for position in others)


async def _index_ready(registry: Any) -> None:
    store = registry.app[STORE]
    for _ in range(200):
        if store.vector_index is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the vector index was not built")


async def test_the_index_compares_every_agent_and_filters_fall_back_to_the_window(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vector index ranks every agent, whatever MEANING_WINDOW; a filtered search the index cannot fill (all
    it returned were close, too few passed the filter) falls back to brute force over the newest candidates."""
    from guildnet.registry.store import hybrid

    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        registered = await _register_catalogue(client)  # invoice-reader first, room-booker last
        await _index_ready(registry)
        request = "pull the amounts out of a bill we received"
        monkeypatch.setattr(hybrid, "MEANING_WINDOW", 2)
        assert (await client.search(q=request, match="meaning")).agents[0].id == registered["invoice-reader"][1].id
        monkeypatch.setattr(hybrid, "OVERFETCH", 1)  # the index's one answer passes the filter: too few, more close
        found = {a.id for a in (await client.search(q=request, match="meaning", org="acme")).agents}
        assert found <= {registered["test-writer"][1].id, registered["room-booker"][1].id}
        newest = (await client.search(q="schedule a conference with my colleagues", match="meaning",
                                      org="acme")).agents
        assert newest[0].id == registered["room-booker"][1].id


async def test_a_replica_finds_and_drops_what_another_wrote(db_url: str) -> None:
    """Each registry process holds its own vector index: it learns of another's writes from the change feed,
    before it answers a search."""
    async with live_registry(db_url) as first, live_registry(db_url) as second, \
            RegistryClient(first.url) as writer, RegistryClient(second.url) as reader:
        await _index_ready(second)
        registered = await _register_catalogue(writer)
        request = "pull the amounts out of a vendor bill"
        found = (await reader.search(q=request, match="meaning")).agents
        assert found[0].id == registered["invoice-reader"][1].id
        index = second.app[STORE].vector_index
        assert index is not None and index.count == len(CATALOGUE)
        key, facts = registered["invoice-reader"]
        await writer.revoke(facts.id, key)
        for match in ("meaning", None):
            assert facts.id not in {a.id for a in (await reader.search(q=request, match=match)).agents}
        assert index.count == len(CATALOGUE) - 1


async def test_on_postgresql_a_hybrid_page_is_read_on_the_pool_once_both_indexes_are_caught_up(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: with both indexes built and caught up, a hybrid page (filtered or not) is single statements on
    the read pool, not a session of ~5 round trips (SQLite reads on its reader thread, one hop, as before)."""
    from guildnet.registry.store import hybrid

    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        registered = await _register_catalogue(client)
        other = await _register_catalogue(client, "globex")
        store = registry.app[STORE]
        await _index_ready(registry)
        for _ in range(200):
            vectors, words = store.vector_index, store.word_index
            position = await store.last_seq()
            if vectors is not None and words is not None and min(vectors.position, words.position) >= position:
                break
            await asyncio.sleep(0.05)
        sessions: list[Any] = []
        in_session = hybrid.HybridQuery.run

        def run(*args: Any) -> Any:
            sessions.append(args)
            return in_session(*args)

        monkeypatch.setattr(hybrid.HybridQuery, "run", run)
        found = (await client.search(q="supplier invoices")).agents
        assert {a.id for a in found[:2]} == {registered["invoice-reader"][1].id, other["invoice-reader"][1].id}
        by_skill = (await client.search(q="has my package been delivered yet", skill="track-shipment")).agents
        assert sorted(a.id for a in by_skill) == sorted([other["parcel-tracker"][1].id,
                                                         registered["parcel-tracker"][1].id])
        acme_only = (await client.search(q="pull the amounts out of a vendor bill", org="acme")).agents
        assert acme_only[0].id == registered["invoice-reader"][1].id
        assert all(a.facts.organisation.name == "acme" for a in acme_only)
        assert len(sessions) == (0 if db_url.startswith("postgresql") else 3)


def test_the_vector_index_sets_removes_and_skips_a_stale_catch_up() -> None:
    from guildnet.registry.store.vectors import VectorIndex

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((5, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    index = VectorIndex(8, [(np.arange(1, 6, dtype=np.int64), rows.astype(STORED_DTYPE))], position=7)
    ids, scores = index.search(rows[2], 1)
    assert ids.tolist() == [3] and abs(scores[0] - 1.0) < 0.01  # 8-bit codes: cosines within ~0.005
    moved = rows[0].astype(STORED_DTYPE).tobytes()
    assert index.apply(7, 9, [3, 4, 4], [moved, None, None])  # 3 now reads as 1, 4 revoked
    assert index.count == 4 and set(index.search(rows[0], 2)[0].tolist()) == {1, 3}
    assert 4 not in index.search(rows[3], 5)[0].tolist()
    assert not index.apply(7, 10, [5], [None]) and index.count == 4 and index.position == 9  # another moved it
