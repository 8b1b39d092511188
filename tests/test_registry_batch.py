"""Registrations in batches (``POST /v1/registrations``): each signed write of a batch is checked, stored and logged
exactly as it would be alone, a refused one fails alone, a malformed batch stores nothing; over real sockets on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from registry_support import bump, live_registry, new_org, pass_through, snapshot

from guildnet.protocols import signed_write
from guildnet.protocols.transparency import leaf_data
from guildnet.registry.client import (
    REGISTRATION_BATCH,
    REGISTRATION_BATCH_BYTES,
    AgentRegistration,
    RegistryClient,
    RegistryError,
    _batches,
)
from guildnet.registry.records import MAX_REGISTRATIONS
from guildnet.registry.state import METRICS


def test_the_client_batches_within_the_registry_limit() -> None:
    assert REGISTRATION_BATCH == MAX_REGISTRATIONS


def registration(facts: Any) -> dict[str, Any]:
    return {"action": "register", "facts": facts.to_json()}


async def post_batch(url: str, body: Any, content_type: str = "application/json") -> tuple[int, str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as session, session.post(
            url + "/v1/registrations", data=data, headers={"Content-Type": content_type}) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def test_a_batch_stores_and_logs_each_registration_as_alone(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"a{i}", description=f"reads customs manifests {i}") for i in range(130)]
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        answers = await client.register_many([AgentRegistration(facts, key) for key, facts in agents])
        assert [a["status"] for a in answers if isinstance(a, dict)] == [201] * 130
        metrics = registry.app[METRICS]  # two requests (at most 100 a request), every registration counted
        assert metrics.requests.labels("/v1/registrations", "POST", "200")._value.get() == 2
        assert metrics.writes.labels("register", "accepted")._value.get() == 130
        for (_, facts), answer in zip(agents, answers, strict=True):
            assert isinstance(answer, dict) and answer["id"] == facts.id
            record = await client.get(facts.id, verify_inclusion=True)  # in the log the client audits
            assert record.facts == facts and record.log_index == answer["log_index"]
        leaves = await client.log_entries(0, 130)
        assert sorted(e["agent"] for e in leaves) == sorted(f.id for _, f in agents)
        for entry in leaves:  # each leaf is the registration's own signed write, verifiable alone
            token = json.loads(entry["data"])["jws"]
            assert signed_write.open_write(token).signer == entry["agent"] and entry["kind"] == "register"
            assert entry["data"] == leaf_data("register", entry["agent"], token).decode()
        updated = bump(agents[0][1], version=2, description="reads customs manifests, faster")
        [answer] = await client.register_many([AgentRegistration(updated, agents[0][0])])
        assert isinstance(answer, dict) and answer["status"] == 200 and answer["version"] == 2


async def test_a_refused_registration_fails_alone(db_url: str) -> None:
    acme = new_org("acme")
    (good_key, good), (bad_key, bad), (old_key, old), (last_key, last) = (
        acme.agent(name) for name in ("good", "forged", "older", "last"))
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await client.register(bump(old, version=5), old_key)
        replayed = signed_write.make(good_key, registration(good))
        forged = signed_write.make(new_org("mallory").key, registration(bad))  # not the agent's key
        malformed = signed_write.make(bad_key, {"action": "register", "facts": {"id": bad.id}})
        stale = signed_write.make(old_key, registration(old))  # version 1 after version 5
        tokens = [replayed, forged, malformed, stale, replayed, signed_write.make(last_key, registration(last))]
        before = await snapshot(registry)
        status, _, answer = await post_batch(registry.url, {"registrations": tokens})
        assert status == 200
        results = answer["results"]
        assert [r["status"] for r in results] == [201, 401, 400, 409, 401, 201]
        for refused in results[1:5]:  # each refusal is a problem details object, as the write alone would get
            assert refused["type"].startswith("https://guildnet.dev/problems/") and refused["detail"]
        assert "nonce" in results[4]["detail"]  # the same write twice in one batch is a replay
        after = await snapshot(registry)  # the two good writes and nothing of the four refused ones
        for table in ("agents", "nonces", "changes", "log_entries"):
            assert len(after[table]) == len(before[table]) + 2, table
        assert registry.app[METRICS].refusals.labels("401")._value.get() == 2  # counted, though the request is 200
        assert (await client.get(good.id)).facts == good and (await client.get(last.id)).facts == last
        with pytest.raises(RegistryError) as missing:
            await client.get(bad.id)
        assert missing.value.status == 404
        assert (await client.get(old.id)).facts.version == 5


@pytest.mark.parametrize("case", ["not-json", "no-list", "empty", "too-many", "not-strings", "repeated-key",
                                  "other-member", "media-type", "too-large"])
async def test_a_malformed_batch_is_refused_whole_and_stores_nothing(db_url: str, case: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    token = signed_write.make(key, registration(facts))
    body: Any = {"registrations": [token]}
    content_type = "application/json"
    expected = 400
    if case == "not-json":
        body = b"{registrations"
    elif case == "no-list":
        body = {"registrations": token}
    elif case == "empty":
        body = {"registrations": []}
    elif case == "too-many":
        body = {"registrations": [token] * (MAX_REGISTRATIONS + 1)}
    elif case == "not-strings":
        body = {"registrations": [token, {"jws": token}]}
    elif case == "repeated-key":  # which list would count is the parser's choice: refused, as in signed writes
        body = b'{"registrations": [], "registrations": ["' + token.encode() + b'"]}'
    elif case == "other-member":  # a member this release would ignore: refused, so none is ever ignored
        body = {"registrations": [token], "atomic": True}
    elif case == "media-type":
        content_type, expected = "application/jose", 415
    elif case == "too-large":
        body, expected = {"registrations": [token + "A" * 300_000]}, 413
    async with live_registry(db_url) as registry:
        before = await snapshot(registry)
        status, media_type, answer = await post_batch(registry.url, body, content_type)
        assert (status, media_type) == (expected, "application/problem+json"), answer
        assert answer["status"] == expected and answer["detail"]
        assert await snapshot(registry) == before
        assert registry.app[METRICS].writes.labels("register", "refused")._value.get() == 1


async def test_every_registration_of_a_batch_spends_the_address_budget(db_url: str) -> None:
    acme = new_org("acme")
    agents = [acme.agent(f"a{i}") for i in range(7)]
    tokens = [signed_write.make(key, registration(facts)) for key, facts in agents]
    async with live_registry(db_url, write_rate_per_ip="5/minute") as registry:
        before = await snapshot(registry)
        status, _, answer = await post_batch(registry.url, {"registrations": tokens[:6]})
        assert status == 429 and answer["title"] == "Too many writes"  # six writes, over a budget of five
        assert await snapshot(registry) == before
        status, _, answer = await post_batch(registry.url, {"registrations": tokens[:4]})
        assert status == 200 and [r["status"] for r in answer["results"]] == [201] * 4
        status, _, answer = await post_batch(registry.url, {"registrations": tokens[4:6]})
        assert status == 429  # four spent: two more are over the budget


async def test_the_key_budget_applies_to_each_write_of_a_batch(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    tokens = [signed_write.make(key, registration(facts)),
              signed_write.make(key, registration(bump(facts, version=2)))]  # the same key twice
    async with live_registry(db_url, write_rate_per_key="1/minute") as registry:
        status, _, answer = await post_batch(registry.url, {"registrations": [f" {tokens[0]}\n", tokens[1]]})
        assert status == 200 and sorted(r["status"] for r in answer["results"]) == [201, 429]  # stripped, as alone
        [over] = [r for r in answer["results"] if r["status"] == 429]
        assert over["title"] == "Too many writes" and over["retry_after"] >= 1


def test_the_client_cuts_batches_by_count_and_by_size() -> None:
    assert [len(b) for b in _batches(["x" * 10] * 250)] == [100, 100, 50]
    big = "y" * 100_000  # two fit in a body, a third does not
    assert [len(b) for b in _batches([big, big, big, "z"])] == [2, 2]
    assert all(sum(len(t) + 4 for t in b) <= REGISTRATION_BATCH_BYTES for b in _batches([big] * 7))


@pytest.fixture
async def registry_without_batches(db_url: str) -> AsyncIterator[tuple[str, list[str]]]:
    """A registry of an older release: ``POST /v1/registrations`` is unknown there (404), single writes pass
    through to a real registry. Yields its URL and the paths it was asked for."""
    asked: list[str] = []

    def older(request: web.Request) -> web.Response | None:
        asked.append(request.path)
        if request.path != "/v1/registrations":
            return None
        return web.json_response({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no route"},
                                 status=404, content_type="application/problem+json")

    async with live_registry(db_url) as registry, pass_through(registry.url, older) as (url,):
        yield url, asked


async def test_the_client_registers_one_at_a_time_with_a_registry_without_batches(
        registry_without_batches: tuple[str, list[str]]) -> None:
    url, asked = registry_without_batches
    acme = new_org("acme")
    agents = [acme.agent(f"a{i}") for i in range(3)]
    _, forged = acme.agent("forged")
    async with RegistryClient(url) as client:
        answers = await client.register_many([*(AgentRegistration(f, k) for k, f in agents),
                                               AgentRegistration(forged, new_org("mallory").key)])
        assert [a["status"] if isinstance(a, dict) else a.status for a in answers] == [201, 201, 201, 401]
        assert isinstance(answers[3], RegistryError)
        assert asked == ["/v1/registrations", *["/v1/agents"] * 4]
        assert (await client.get(agents[2][1].id)).facts == agents[2][1]
