"""The registry API end to end over real sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from registry_support import LiveRegistry, bump, live_registry, new_org, snapshot

from guildnet.protocols import jws, keyhistory, signed_write
from guildnet.protocols.agentfacts import endorse
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient, RegistryError


async def post_raw(registry: LiveRegistry, path: str, body: bytes | str,
                   content_type: str = "application/jose") -> tuple[int, dict[str, Any], str]:
    async with aiohttp.ClientSession() as session, session.post(
            registry.url + path, data=body, headers={"Content-Type": content_type}) as response:
        text = await response.text()
        return response.status, json.loads(text), response.content_type


async def test_register_get_search_update(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("translator", skills=[
        {"id": "translate", "name": "Translate", "description": "Translate text between languages",
         "tags": ["language", "french"]}], description="Translates invoices and contracts")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        first = await client.register(facts, key)
        assert first["version"] == 1
        entry = await client.get(facts.id)
        assert entry.facts == facts and entry.live and not entry.revoked
        assert jws.verify_json(entry.jws or "")[1]["facts"] == facts.to_json()

        by_skill = await client.search(skill="translate")
        assert [a.id for a in by_skill.agents] == [facts.id]
        by_text = await client.search(q="invoices")
        assert [a.id for a in by_text.agents] == [facts.id]
        assert (await client.search(q="french")).agents[0].id == facts.id  # tags are searchable
        assert (await client.search(skill="nope")).agents == []
        assert [a.id for a in (await client.search(org=acme.key.did)).agents] == [facts.id]

        updated = bump(facts, version=2, description="Now also summarises")
        async with aiohttp.ClientSession() as session, session.post(
                registry.url + "/v1/agents", data=signed_write.make(key, {"action": "register",
                                                                         "facts": updated.to_json()}),
                headers={"Content-Type": "application/jose"}) as response:
            assert response.status == 200
        assert (await client.get(facts.id)).facts.version == 2
        assert (await client.search(q="summarises")).agents[0].id == facts.id
        assert (await client.search(q="invoices")).agents == []


async def test_first_registration_is_201(db_url: str) -> None:
    key, facts = new_org("acme").agent("a")
    async with live_registry(db_url) as registry:
        status, body, _ = await post_raw(registry, "/v1/agents",
                                         signed_write.make(key, {"action": "register", "facts": facts.to_json()}))
        assert status == 201 and body["id"] == facts.id


def _registration(key: SigningKey, facts_json: dict[str, Any], **overrides: Any) -> str:
    payload = {"action": "register", "facts": facts_json, "iat": int(time.time()),
               "nonce": signed_write.new_nonce(), **overrides}
    return jws.sign(payload, key)


def _tamper_signature(token: str) -> str:
    head, body, sig = token.split(".")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    return f"{head}.{body}.{flipped}"


@pytest.mark.parametrize("case", [
    "not-jws", "bad-json-payload", "bad-signature", "kid-not-facts-id", "stale-iat", "future-iat", "short-nonce",
    "invalid-facts", "forged-endorsement", "endorsement-of-other-facts", "expired-endorsement",
    "wrong-content-type", "too-large", "wrong-action", "too-many-skills", "schema-too-large", "description-too-long",
])
async def test_refused_registrations_change_nothing(db_url: str, case: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    existing_key, existing = acme.agent("existing")
    async with live_registry(db_url) as registry:
        async with RegistryClient(registry.url) as client:
            await client.register(existing, existing_key)
        before = await snapshot(registry)
        content_type = "application/jose"
        good = facts.to_json()
        if case == "not-jws":
            body, expected = "this is not a jws", 400
        elif case == "bad-json-payload":
            head = jws.b64url_encode(json.dumps({"alg": "EdDSA", "kid": key.did}).encode())
            payload = jws.b64url_encode(b"{not json")
            sig = jws.b64url_encode(key.sign(f"{head}.{payload}".encode()))
            body, expected = f"{head}.{payload}.{sig}", 400
        elif case == "bad-signature":
            body, expected = _tamper_signature(_registration(key, good)), 401
        elif case == "kid-not-facts-id":
            body, expected = _registration(SigningKey.generate(), good), 401
        elif case == "stale-iat":
            body, expected = _registration(key, good, iat=int(time.time()) - 301), 401
        elif case == "future-iat":
            body, expected = _registration(key, good, iat=int(time.time()) + 400), 401
        elif case == "short-nonce":
            body, expected = _registration(key, good, nonce="c2hvcnQ"), 400
        elif case == "invalid-facts":
            body, expected = _registration(key, {**good, "skills": []}), 400
        elif case == "forged-endorsement":
            forged = {**good, "organisation": {**good["organisation"], "endorsement": endorse(
                SigningKey.generate(), good)["organisation"]["endorsement"]}}
            body, expected = _registration(key, forged), 401
        elif case == "endorsement-of-other-facts":  # a stolen agent key moves the endpoint; the org never signed it
            moved = {**good, "endpoints": {"a2a": "https://attacker.example/a2a"}}
            body, expected = _registration(key, moved), 401
        elif case == "expired-endorsement":
            stale = endorse(acme.key, good, now=time.time() - 100, lifetime=60)
            body, expected = _registration(key, stale), 401
        elif case == "wrong-content-type":
            body, expected, content_type = _registration(key, good), 415, "application/json"
        elif case == "too-large":
            body, expected = _registration(key, {**good, "description": "x" * 300_000}), 413
        elif case == "too-many-skills":
            skills = [{"id": f"s{i}", "name": f"S{i}"} for i in range(65)]
            body, expected = _registration(key, {**good, "skills": skills}), 400
        elif case == "schema-too-large":
            schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(2000)}}
            body, expected = _registration(key, {**good, "skills": [{"id": "s", "name": "S",
                                                                   "input_schema": schema}]}), 400
        elif case == "description-too-long":
            body, expected = _registration(key, {**good, "description": "x" * 5000}), 400
        else:
            body, expected = _registration(key, good, action="heartbeat"), 400
        status, problem, response_type = await post_raw(registry, "/v1/agents", body, content_type)
        assert status == expected, problem
        assert response_type == "application/problem+json"
        assert problem["status"] == expected and problem["detail"] and problem["title"]
        assert await snapshot(registry) == before


@pytest.mark.parametrize("spelling", ["fragment", "leading-zero-digit"])
async def test_another_spelling_of_a_key_is_no_new_identity(db_url: str, spelling: str) -> None:
    """One key is one id (issue 17: ``did:key:...#clone0..2`` all registered, 201, as new agents of new
    organisations, sidestepping "a revoked id never registers again" and per-key limits). The agent's id, the
    JWS ``kid`` and the organisation all spelt so (the endorsement is the canonical one's: no library signs
    for such an id any more): refused for the spelling, in the registry's problem shape, nothing stored."""
    acme = new_org("acme")
    key, facts = acme.agent("a")
    async with live_registry(db_url) as registry:
        async with RegistryClient(registry.url) as client:
            await client.register(facts, key)  # the canonical id is registered already
        before = await snapshot(registry)
        other = {"fragment": f"{key.did}#clone0", "leading-zero-digit": f"did:key:z1{key.did[9:]}"}[spelling]
        org = {**facts.to_json()["organisation"], "id": other}
        clone = {**bump(facts, version=2).to_json(), "id": other, "organisation": org}
        payload = {"action": "register", "facts": clone, "iat": int(time.time()), "nonce": signed_write.new_nonce()}
        status, problem, response_type = await post_raw(registry, "/v1/agents",
                                                        jws.sign(payload, key, headers={"kid": other}))
        assert (status, response_type) == (400, "application/problem+json"), problem
        assert problem["status"] == 400 and "not a canonical Ed25519 did:key" in problem["detail"], problem
        assert await snapshot(registry) == before


async def test_replayed_nonce_and_stale_version_and_wrong_key_refused(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        first = _registration(key, facts.to_json())
        assert (await post_raw(registry, "/v1/agents", first))[0] == 201
        before = await snapshot(registry)

        # the same nonce on an otherwise valid, newer write: replay refused
        nonce = jws.verify_json(first)[1]["nonce"]
        replay = _registration(key, bump(facts, version=2).to_json(), nonce=nonce)
        status, problem, _ = await post_raw(registry, "/v1/agents", replay)
        assert status == 401 and "nonce" in problem["detail"]
        # the exact token again
        assert (await post_raw(registry, "/v1/agents", first))[0] == 401
        # same version again: 409
        status, problem, _ = await post_raw(registry, "/v1/agents", _registration(key, facts.to_json()))
        assert status == 409 and "version" in problem["detail"]
        # a lower version: 409
        lower_key_facts = bump(facts, version=1)
        assert (await post_raw(registry, "/v1/agents", _registration(key, lower_key_facts.to_json())))[0] == 409
        # someone else's key updating this agent: 401 (kid is not the agent's key)
        intruder = SigningKey.generate()
        status, _, _ = await post_raw(registry, "/v1/agents",
                                      _registration(intruder, bump(facts, version=5).to_json()))
        assert status == 401
        # heartbeat signed by a stranger
        with pytest.raises(RegistryError) as refused:
            await client.heartbeat(facts.id, intruder)
        assert refused.value.status == 401
        assert await snapshot(registry) == before


async def test_revocation_is_final(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a", skills=[{"id": "sum", "name": "Sum", "tags": ["math"]}])
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await client.register(facts, key)
        with pytest.raises(RegistryError) as stranger:
            await client.revoke(facts.id, SigningKey.generate())
        assert stranger.value.status == 401
        await client.revoke(facts.id, key)
        assert (await client.search(skill="sum")).agents == []
        assert (await client.search(q="Sum")).agents == []
        assert (await client.search()).agents == []
        entry = await client.get(facts.id)
        assert entry.revoked and not entry.live
        before = await snapshot(registry)
        attempts: list[Callable[[], Awaitable[dict[str, Any]]]] = [
            lambda: client.register(bump(facts, version=9), key), lambda: client.heartbeat(facts.id, key),
            lambda: client.revoke(facts.id, key)]
        for attempt in attempts:
            with pytest.raises(RegistryError) as refused:
                await attempt()
            assert refused.value.status == 409
        assert await snapshot(registry) == before


async def test_rotation_moves_authority_to_the_committed_next_key(db_url: str) -> None:
    acme = new_org("acme")
    chain, facts = acme.rotating_agent("a")
    old_key = chain.key
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await client.register(facts, chain.key, key_event=chain.inception)
        event, new_key = chain.next_rotation()
        stranger = SigningKey.generate()
        before = await snapshot(registry)
        with pytest.raises(RegistryError) as refused:  # a stranger cannot rotate, even with the right event
            await client.rotate(facts.id, stranger, event, bump(facts, version=2), new_key)
        assert refused.value.status == 401
        # a thief of the key in force cannot hand the identity to a key of its own: it was never committed to
        pretended = keyhistory.KeyState(facts.id, old_key.did, keyhistory.commitment(stranger.did), 0,
                                        keyhistory.event_digest(chain.inception))
        stolen = keyhistory.rotate(old_key, pretended, stranger.did, None)
        with pytest.raises(RegistryError) as refused:
            await client.rotate(facts.id, old_key, stolen, bump(facts, version=2), stranger)
        assert refused.value.status == 401 and "never committed to" in refused.value.detail
        assert await snapshot(registry) == before  # refused rotations change nothing
        await client.rotate(facts.id, old_key, event, bump(facts, version=2), new_key)
        chain.rotated(event)
        entry = await client.get(facts.id)  # verified from the id alone: the history proves the new key
        assert entry.current_key == new_key.did and entry.version == 2 and entry.id == old_key.did
        with pytest.raises(RegistryError) as old_refused:
            await client.heartbeat(facts.id, old_key)
        assert old_refused.value.status == 401
        await client.heartbeat(facts.id, new_key)
        await client.register(bump(facts, version=3), new_key)
        assert (await client.get(facts.id)).version == 3


async def test_liveness_follows_heartbeats_and_ttl(db_url: str) -> None:
    clock = [time.time()]
    acme = new_org("acme")
    key, facts = acme.agent("a", ttl_seconds=10)
    async with live_registry(db_url, clock=lambda: clock[0], sweep_interval=0.05) as registry, \
            RegistryClient(registry.url) as client:
        await client.register(facts, key)
        assert (await client.get(facts.id)).live
        clock[0] += 11
        assert not (await client.get(facts.id)).live
        assert (await client.search(live=True)).agents == []
        assert [a.id for a in (await client.search(live=False)).agents] == [facts.id]
        await asyncio.sleep(0.3)  # the sweeper announces the change
        changes = await registry.store.changes_since(0)
        assert [c.kind for c in changes] == ["registered", "live"]
        assert changes[-1].data == {"live": False}
        await client.heartbeat(facts.id, key)
        assert (await client.get(facts.id)).live
        assert (await registry.store.changes_since(changes[-1].seq))[0].data == {"live": True}


async def test_search_pagination_and_bad_queries(db_url: str) -> None:
    acme = new_org("acme")
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        ids = []
        for i in range(7):
            key, facts = acme.agent(f"worker{i}", description="parses shipping manifests")
            await client.register(facts, key)
            ids.append(facts.id)
        for query in ({"skill": "echo"}, {"q": "manifests"}):
            seen, cursor = [], None
            while True:
                page = await client.search(limit=3, cursor=cursor, **query)  # type: ignore[arg-type]
                seen += [a.id for a in page.agents]
                if page.next is None:
                    break
                cursor = page.next
            assert sorted(seen) == sorted(ids) and len(seen) == 7
        async with aiohttp.ClientSession() as session:
            for params in ({"limit": "0"}, {"limit": "x"}, {"cursor": "garbage!"}, {"live": "maybe"},
                           {"q": "x" * 300}):
                async with session.get(registry.url + "/v1/agents", params=params) as response:
                    assert response.status == 400
                    assert response.content_type == "application/problem+json"
            async with session.get(registry.url + "/v1/agents/did:key:nope") as response:
                assert response.status == 404
            async with session.get(registry.url + "/openapi.json") as response:
                spec = await response.json()
                assert "/v1/agents" in spec["paths"] and spec["openapi"].startswith("3.")
