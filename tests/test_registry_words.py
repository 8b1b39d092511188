"""Search by words from the registry's in-process word index (tantivy), on SQLite and PostgreSQL: a write is found
by the next search on any replica, before the index commits it; updates and revocations change what matches;
filters are exact; pages neither repeat nor skip; a common word is ranked over all of its matches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from registry_support import bump, live_registry, new_org

from guildnet.registry.client import RegistryClient
from guildnet.registry.server import STORE
from guildnet.registry.store.words import AgentText, WordIndex, _Idf, words_query


async def _word_index(registry: Any) -> WordIndex:
    store = registry.app[STORE]
    store.start()
    for _ in range(200):
        if store.word_index is not None:
            return store.word_index  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError("the word index was not built")


async def _ids(client: RegistryClient, q: str, **where: Any) -> list[str]:
    return [a.id for a in (await client.search(q=q, match="words", **where)).agents]


async def test_a_write_is_found_at_once_on_every_replica_and_a_revoked_agent_never(db_url: str) -> None:
    acme = new_org("acme")
    async with live_registry(db_url) as first, live_registry(db_url) as second, \
            RegistryClient(first.url) as writer, RegistryClient(second.url) as reader:
        indexes = [await _word_index(first), await _word_index(second)]
        key, facts = acme.agent("ledger-bot", description="reconciles quarterly ledgers")
        await writer.register(facts, key)
        for client in (writer, reader):
            assert await _ids(client, "ledgers") == [facts.id]
            assert await _ids(client, "quarterly reconcile") == [facts.id]  # stems, every word
            assert await _ids(client, "quarterly payroll") == []
        updated = bump(facts, version=2, description="forecasts payroll budgets")
        await writer.register(updated, key)
        for client in (writer, reader):
            assert await _ids(client, "quarterly") == []
            assert await _ids(client, "payroll") == [facts.id]
        await asyncio.gather(*(asyncio.to_thread(index.commit) for index in indexes))
        for client in (writer, reader):  # the same answers from the committed index
            assert await _ids(client, "quarterly") == [] and await _ids(client, "payroll") == [facts.id]
        await writer.revoke(facts.id, key)
        for client in (writer, reader):
            assert await _ids(client, "payroll") == []
            assert facts.id not in {a.id for a in (await client.search(q="payroll budgets")).agents}  # hybrid
        assert all(index.count == 0 for index in indexes)


async def test_filters_are_exact(db_url: str) -> None:
    acme, globex = new_org("acme"), new_org("globex")
    translate = {"id": "translate", "name": "Translation", "tags": ["language"]}
    summarise = {"id": "summarise", "name": "Summary", "tags": ["language"]}
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await _word_index(registry)
        agents = {}
        for org in (acme, globex):
            for skill in (translate, summarise):
                key, facts = org.agent(f"{org.name}-{skill['id']}", description="handles contracts",
                                       skills=[{**skill, "description": "x"}])
                await client.register(facts, key)
                agents[org.name, skill["id"]] = facts.id
        assert sorted(await _ids(client, "contracts")) == sorted(agents.values())
        assert sorted(await _ids(client, "contracts", skill="translate")) == sorted(
            [agents["acme", "translate"], agents["globex", "translate"]])
        assert sorted(await _ids(client, "contracts", org="acme")) == sorted(
            [agents["acme", "translate"], agents["acme", "summarise"]])
        assert await _ids(client, "contracts", org=globex.key.did, skill="summarise") == [agents["globex", "summarise"]]
        assert await _ids(client, "contracts", org="acme", skill="missing") == []
        assert sorted(await _ids(client, "contracts", live=True)) == sorted(agents.values())
        assert await _ids(client, "contracts", live=False) == []


async def test_pages_by_cursor_neither_repeat_nor_skip(db_url: str) -> None:
    acme = new_org("acme")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        index = await _word_index(registry)
        ids = set()
        for i in range(8):
            key, facts = acme.agent(f"worker{i}", description="parses shipping manifests " + "and more " * i)
            await client.register(facts, key)
            ids.add(facts.id)
        for commit in (False, True):  # pending agents, then the committed index
            if commit:
                await asyncio.to_thread(index.commit)
            seen, cursor = [], None
            while True:
                page = await client.search(q="manifests", match="words", limit=3, cursor=cursor)
                seen += [a.id for a in page.agents]
                if page.next is None:
                    break
                cursor = page.next
            assert sorted(seen) == sorted(ids) and len(seen) == len(ids)


async def test_a_common_word_is_ranked_over_all_its_matches(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database ranks a window of the newest matches (RANK_WINDOW); the word index ranks them all: the agent
    named for the word, registered first, ranks first although newer ones fill the window."""
    from guildnet.registry.store import search

    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    acme = new_org("acme")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        index = await _word_index(registry)
        key, best = acme.agent("invoice", description="reads invoice totals")
        await client.register(best, key)
        for i in range(6):
            key, facts = acme.agent(f"clerk{i}", description=f"files an invoice among {i} other papers")
            await client.register(facts, key)
        for commit in (False, True):
            if commit:
                await asyncio.to_thread(index.commit)
            found = await _ids(client, "invoice")
            assert found[0] == best.id and len(found) == 7
            assert (await client.search(q="invoice")).agents[0].id == best.id  # hybrid's words half too


def _agent(pk: int, description: str, *, name: str = "agent", skills: tuple[str, ...] = ("echo",)) -> AgentText:
    return AgentText(pk, name, " ".join(skills), description, "did:key:zorg", "acme", skills)


def test_pending_agents_replace_their_committed_copies_and_score_as_committed() -> None:
    index = WordIndex(0, postgres=False)
    index.add([_agent(1, "alpha beta"), _agent(2, "alpha gamma gamma"), _agent(3, "delta")])
    index.open()
    alpha = words_query("alpha", skill=None, org=None)
    assert alpha is not None and index.search(alpha, 10) == [1, 2]
    assert index.apply(0, 3, [(1, _agent(1, "beta")), (2, None), (4, _agent(4, "alpha", name="alpha"))])
    assert not index.apply(0, 4, [(3, None)]) and index.position == 3  # another catch-up moved it
    assert index.search(alpha, 10) == [4] and index.count == 3 and index.pending == 3
    pending = index._ready.pending[4]
    assert index.commit() == 3 and index.pending == 0
    assert index.search(alpha, 10) == [4] and index.count == 3
    # a pending agent is scored as tantivy scores it, given the same statistics (here, those after the commit)
    hits = index._ready.searcher.search(_tantivy_query(index, alpha), 1).hits
    score = index._score(_Idf(index._ready.searcher, index._docs), alpha.tokens, pending)
    assert abs(hits[0][0] - score) < 1e-3 * hits[0][0]
    skill = words_query("beta", skill="nothing", org=None)
    assert skill is not None and index.search(skill, 10) == []


def _tantivy_query(index: WordIndex, words: Any) -> Any:
    import tantivy

    from guildnet.registry.store.words import FIELDS
    return tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.boost_query(
        tantivy.Query.term_query(index._schema, name, token), weight)) for name, weight in FIELDS.items()
        for token in words.tokens])
