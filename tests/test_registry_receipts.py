"""Receipts and reputation in the registry, over real sockets on SQLite and PostgreSQL: a countersigned receipt
between two organisations counts once and is logged; every other kind is refused and changes nothing; the
reputation the API serves is the one anyone recomputes from the log."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import aiohttp
import pytest
from registry_support import LiveRegistry, live_registry, new_org, snapshot

from guildnet.protocols import jws, signed_write
from guildnet.protocols.canonical import canonical_json
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.receipts import (
    VERDICT_TYP,
    TaskClaim,
    callee_sign,
    caller_countersign,
    receipt_id,
    verify_receipt,
)
from guildnet.protocols.reputation import Params, Rating, compute
from guildnet.registry.client import RegistryClient, RegistryError
from guildnet.registry.server import REPUTATION


def claim_token(caller: str, callee_key: SigningKey, task_id: str, *, status: str = "completed",
                skill: str = "echo", callee: str | None = None) -> str:
    """The callee's claim, signed by ``callee_key`` (for a rotated callee, ``callee`` is its id)."""
    now = int(time.time() * 1000)
    claim = TaskClaim.model_validate({
        "task_id": task_id, "caller": caller, "callee": callee or callee_key.did, "skill": skill,
        "input_sha256": hashlib.sha256(b"in").hexdigest(), "output_sha256": hashlib.sha256(b"out").hexdigest(),
        "started_at": now - 20, "ended_at": now, "status": status})
    return callee_sign(claim, callee_key)


def receipt(caller_key: SigningKey, callee_key: SigningKey, task_id: str, verdict: str = "success") -> str:
    status = "completed" if verdict == "success" else "failed"
    return caller_countersign(claim_token(caller_key.did, callee_key, task_id, status=status), caller_key,
                              verdict)  # type: ignore[arg-type]


async def post_receipt(registry: LiveRegistry, signer: SigningKey, token: str,
                       **overrides: Any) -> tuple[int, dict[str, Any]]:
    payload = {"action": "receipt", "receipt": token, "iat": int(time.time()), "nonce": signed_write.new_nonce(),
               **overrides}
    async with aiohttp.ClientSession() as session, session.post(
            registry.url + "/v1/receipts", data=jws.sign(payload, signer),
            headers={"Content-Type": "application/jose"}) as response:
        body = await response.json(content_type=None)
        if response.status >= 400:
            assert response.content_type == "application/problem+json" and body["detail"]
        return response.status, body


class World:
    """Two organisations with one agent each, a second agent of the caller's organisation, a stranger."""

    def __init__(self) -> None:
        self.acme, self.beta = new_org("acme"), new_org("beta")
        self.caller_key, self.caller = self.acme.agent("caller")
        self.sibling_key, self.sibling = self.acme.agent("sibling")
        self.callee_key, self.callee = self.beta.agent("callee")
        self.outsider_key, self.outsider = self.beta.agent("outsider")  # never registered
        self.stranger = SigningKey.generate()

    async def register(self, client: RegistryClient) -> None:
        for key, facts in ((self.caller_key, self.caller), (self.sibling_key, self.sibling),
                           (self.callee_key, self.callee)):
            await client.register(facts, key)


async def test_receipt_counts_once_and_is_logged(db_url: str) -> None:
    world = World()
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await world.register(client)
        token = receipt(world.caller_key, world.callee_key, "task-1")
        accepted = await client.submit_receipt(token, world.caller_key)
        assert accepted["receipt_id"] == receipt_id("task-1", world.caller.id, world.callee.id)
        assert accepted["log_index"] == 3
        [entry] = await client.log_entries(3, 4)
        data = json.loads(entry["data"])
        assert entry["kind"] == data["kind"] == "receipt" and entry["agent"] == world.callee.id
        verified, payload = jws.verify_json(data["jws"])  # the signed write as received, re-verifiable
        assert verified.signer == world.caller.id and payload["action"] == "receipt"
        assert verify_receipt(payload["receipt"]).receipt_id == accepted["receipt_id"]
        assert (await client.log_head()).size == 4


@pytest.mark.parametrize("case", [
    "callee-signature-only", "replayed", "re-signed-same-task", "same-organisation", "non-party-signer",
    "callee-submits", "unregistered-party", "revoked-party", "tampered", "not-a-receipt", "wrong-action",
    "self-dealing",
])
async def test_refused_receipts_change_nothing(db_url: str, case: str) -> None:
    world = World()
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await world.register(client)
        signer = world.caller_key
        token = receipt(world.caller_key, world.callee_key, "task-1")
        overrides: dict[str, Any] = {}
        if case in ("replayed", "re-signed-same-task"):
            assert (await post_receipt(registry, signer, token))[0] == 201
            if case == "re-signed-same-task":  # same task, other verdict and times: still the same receipt id
                token = receipt(world.caller_key, world.callee_key, "task-1", verdict="failure")
            expected = 409
        elif case == "callee-signature-only":
            token, expected = claim_token(world.caller.id, world.callee_key, "task-1"), 422
        elif case == "same-organisation":
            token, expected = receipt(world.caller_key, world.sibling_key, "task-1"), 422
        elif case == "non-party-signer":
            signer, expected = world.stranger, 401
        elif case == "callee-submits":
            signer, expected = world.callee_key, 401
        elif case == "unregistered-party":
            token, expected = receipt(world.caller_key, world.outsider_key, "task-1"), 422
        elif case == "revoked-party":
            await client.revoke(world.callee.id, world.callee_key)
            expected = 422
        elif case == "tampered":
            head, body, sig = token.split(".")
            token, expected = f"{head}.{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}", 401
        elif case == "not-a-receipt":
            token, expected = "not a token", 422
        elif case == "wrong-action":
            overrides, expected = {"action": "register"}, 400
        else:  # a caller that signs both halves for itself
            inner = jws.sign(canonical_json({**json.loads(jws.verify(claim_token(
                world.caller.id, world.callee_key, "t")).payload), "callee": world.caller.id}),
                world.caller_key, typ="guildnet-receipt-claim+jws")
            token = jws.sign(canonical_json({"receipt": inner, "verdict": "success"}), world.caller_key,
                             typ=VERDICT_TYP)
            expected = 422
        before = await snapshot(registry)
        status, problem = await post_receipt(registry, signer, token, **overrides)
        assert status == expected, problem
        assert await snapshot(registry) == before


@pytest.mark.parametrize("where", ["verdict", "signed-write"])
async def test_a_repeated_key_in_a_signed_payload_is_refused_and_stores_nothing(db_url: str, where: str) -> None:
    """Issue 17: ``"verdict":"failure","verdict":"success"`` verified, was logged with both keys and counted as a
    success (JSON readers disagree on which repeat wins). Repeated in the caller's verdict: 422, as every receipt
    that does not parse; in the signed write around it: 400, as every malformed write. Nothing stored."""
    world = World()
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await world.register(client)
        before = await snapshot(registry)
        claim = claim_token(world.caller.id, world.callee_key, "task-1")
        token = receipt(world.caller_key, world.callee_key, "task-1")
        expected = {"verdict": (422, "Malformed receipt", "verdict"), "signed-write": (400, "Malformed signed write",
                                                                                     "action")}[where]
        if where == "verdict":
            token = jws.sign(b'{"receipt":"' + claim.encode() + b'","verdict":"failure","verdict":"success"}',
                             world.caller_key, typ=VERDICT_TYP)
            payload = jws.compact_json({"action": "receipt", "receipt": token, "iat": int(time.time()),
                                        "nonce": signed_write.new_nonce()})
        else:
            payload = jws.compact_json({"action": "receipt", "receipt": token, "iat": int(time.time()),
                                        "nonce": signed_write.new_nonce()})[:-1] + b',"action":"register"}'
        async with aiohttp.ClientSession() as session, session.post(
                registry.url + "/v1/receipts", data=jws.sign(payload, world.caller_key),
                headers={"Content-Type": "application/jose"}) as response:
            problem = await response.json(content_type=None)
            assert response.content_type == "application/problem+json"
        assert (problem["status"], problem["title"]) == expected[:2], problem
        assert problem["detail"] == f"JWS payload: the key '{expected[2]}' appears twice in one object", problem
        assert await snapshot(registry) == before


async def test_reputation_is_served_with_its_inputs_and_recomputes_from_the_log(db_url: str) -> None:
    world = World()
    async with live_registry(db_url, pretrusted_orgs=(world.acme.key.did,), reputation_interval=3600) as registry, \
            RegistryClient(registry.url) as client:
        await world.register(client)
        for ask in (client.reputation(world.callee.id, "echo"), client.reputations([world.callee.id], "echo")):
            with pytest.raises(RegistryError) as not_yet:  # nothing is served before the first recompute
                await ask
            assert (not_yet.value.status, not_yet.value.title) == (503, "Reputation not computed yet")
        verdicts = ["success", "success", "failure", "success"]
        indices = []
        for i, verdict in enumerate(verdicts):
            token = receipt(world.caller_key, world.callee_key, f"task-{i}", verdict)
            indices.append((await client.submit_receipt(token, world.caller_key))["log_index"])
        snapshot_ = await registry.app[REPUTATION].refresh(force=True)
        assert snapshot_ is not None and snapshot_.receipts == 4

        rep = await client.reputation(world.callee.id, "echo")
        assert rep.receipts == 4 and rep.skill == "echo"
        assert rep.evidence == pytest.approx(4.0, rel=1e-6)  # acme is the most trusted rater: weight 1
        assert rep.score == pytest.approx(4 / 6, rel=1e-6)  # Beta(1 + 3, 1 + 1)
        assert rep.interval[0] == rep.lower_bound < rep.score < rep.interval[1]
        [rater] = rep.raw["inputs"]["raters"]
        assert rater.pop("trust") > 0
        assert rater == {"org": world.acme.key.did, "weight": 1.0, "receipts": 4, "successes": 3}
        assert sorted(r["log_index"] for r in rep.raw["inputs"]["receipts"]) == indices
        assert rep.raw["pretrusted"] == [world.acme.key.did] and rep.log_size == indices[-1] + 1

        # anyone holding the log recomputes the same number from the receipts in it
        ratings = []
        orgs = {world.caller.id: world.acme.key.did, world.callee.id: world.beta.key.did}
        for entry in await client.log_entries(0, rep.log_size):
            if entry["kind"] == "receipt":
                checked = verify_receipt(jws.verify_json(json.loads(entry["data"])["jws"])[1]["receipt"])
                claim = checked.claim
                ratings.append(Rating(claim.caller, orgs[claim.caller], claim.callee, orgs[claim.callee],
                                      claim.skill, checked.success, claim.ended_at / 1000.0))
        mine = compute(ratings, [world.acme.key.did], Params(now=rep.raw["params"]["now"])).score(
            world.callee.id, "echo")
        assert mine.mean == pytest.approx(rep.score, rel=1e-12)

        # an unrated agent has the prior; an unknown one is 404
        assert (await client.reputation(world.sibling.id)).score == pytest.approx(0.5)
        with pytest.raises(RegistryError) as unknown:
            await client.reputation(SigningKey.generate().did)
        assert unknown.value.status == 404


async def test_reputation_without_pretrusted_orgs_is_503(db_url: str) -> None:
    world = World()
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await world.register(client)
        for ask in (client.reputation(world.callee.id), client.reputations([world.callee.id])):
            with pytest.raises(RegistryError) as refused:
                await ask
            assert (refused.value.status, refused.value.title) == (503, "Reputation not configured")
            assert "pre-trusted" in refused.value.detail
