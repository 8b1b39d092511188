"""Abuse: write rate limits (429 + Retry-After), no fetching of URLs handed to the registry, no secrets out."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from registry_support import bump, free_port, live_registry, new_org, snapshot, start_cli
from test_node import write_config

from guildnet.protocols import jws, keyfile, signed_write
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.receipts import TaskClaim, callee_sign, caller_countersign
from guildnet.registry.client import RegistryClient, RegistryError
from guildnet.registry.state import WATCHERS


async def post_jose(url: str, token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=token, headers={"Content-Type": "application/jose"}) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


def sign_raw(key: SigningKey, payload_text: str) -> str:
    """A validly signed write whose payload is exactly ``payload_text`` (JSON no serialiser of ours would emit)."""
    header = jws.b64url_encode(json.dumps({"alg": "EdDSA", "kid": key.did}).encode())
    body = jws.b64url_encode(payload_text.encode())
    return f"{header}.{body}.{jws.b64url_encode(key.sign(f'{header}.{body}'.encode()))}"


async def test_per_key_write_limit_answers_429_with_retry_after_and_stores_nothing(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("busy")
    other_key, other = acme.agent("quiet")
    async with live_registry(db_url, write_rate_per_key="3/minute") as registry, \
            RegistryClient(registry.url) as client:
        await client.register(facts, key)
        await client.heartbeat(facts.id, key)
        await client.heartbeat(facts.id, key)
        before = await snapshot(registry)
        token = signed_write.make(key, {"action": "heartbeat", "agent": facts.id})
        status, problem, headers = await post_jose(f"{registry.url}/v1/agents/{facts.id}/heartbeat", token)
        assert status == 429
        assert problem["status"] == 429 and "key" in problem["detail"]
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert await snapshot(registry) == before
        await client.register(other, other_key)  # another key keeps its own budget


async def test_per_address_write_limit_applies_before_the_body_is_read(db_url: str) -> None:
    acme = new_org("acme")
    async with live_registry(db_url, write_rate_per_ip="2/minute") as registry:
        for _ in range(2):
            status, _, _ = await post_jose(f"{registry.url}/v1/agents", "not-a-jws")
            assert status == 400
        before = await snapshot(registry)
        key, facts = acme.agent("late")
        token = signed_write.make(key, {"action": "register", "facts": facts.to_json()})
        status, problem, headers = await post_jose(f"{registry.url}/v1/agents", token)
        assert status == 429 and "address" in problem["detail"] and int(headers["Retry-After"]) >= 1
        assert await snapshot(registry) == before


async def test_forged_writes_naming_a_victim_do_not_spend_its_budget(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("victim")
    attacker = SigningKey.generate()
    async with live_registry(db_url, write_rate_per_key="3/minute") as registry, \
            RegistryClient(registry.url) as client:
        await client.register(facts, key)
        forged = signed_write.make(attacker, {"action": "heartbeat", "agent": facts.id})
        _, payload, signature = forged.split(".")
        victim_header = base64.urlsafe_b64encode(
            f'{{"alg":"EdDSA","kid":"{facts.id}"}}'.encode()).rstrip(b"=").decode()
        for _ in range(10):  # claims to be the victim's key, signed by another: refused, never counted
            status, _, _ = await post_jose(f"{registry.url}/v1/agents/{facts.id}/heartbeat",
                                           f"{victim_header}.{payload}.{signature}")
            assert status == 401
        await client.heartbeat(facts.id, key)
        await client.heartbeat(facts.id, key)
        with pytest.raises(RegistryError) as limited:
            await client.heartbeat(facts.id, key)
        assert limited.value.status == 429


async def test_the_registry_never_fetches_urls_it_is_given(db_url: str) -> None:
    """Endpoints in AgentFacts are data for callers, not addresses for the registry to visit (no SSRF)."""
    connections: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")))
        writer.close()

    trap = await asyncio.start_server(record, "127.0.0.1", 0)
    port = trap.sockets[0].getsockname()[1]
    acme = new_org("acme")
    key, facts = acme.agent("lure", a2a=f"http://127.0.0.1:{port}/latest/meta-data/")
    try:
        async with live_registry(db_url) as registry, RegistryClient(registry.url) as client, \
                aiohttp.ClientSession() as session:
            await client.register(facts, key)
            await client.heartbeat(facts.id, key)
            await client.search(skill="echo")
            await client.get(facts.id)
            for page in ("/", f"/agents/{facts.id}", "/log"):
                async with session.get(registry.url + page) as response:
                    assert response.status == 200
            await asyncio.sleep(0.2)
    finally:
        trap.close()
        await trap.wait_closed()
    assert connections == []


async def test_no_secret_reaches_logs_or_error_bodies(tmp_path: Path) -> None:
    """Registry and node at debug level, JSON logs, fed good and bad requests: neither their logs nor any
    error body holds a private key (raw, hex, base64, PEM) of any key they loaded."""
    registry_port, node_port = free_port(), free_port()
    registry_url, node_url = f"http://127.0.0.1:{registry_port}", f"http://127.0.0.1:{node_port}"
    bodies: list[str] = []
    with tempfile.TemporaryFile() as registry_log, tempfile.TemporaryFile() as node_log:
        registry = await start_cli("registry", "serve", "--port", str(registry_port), "--db",
                                   f"sqlite:///{tmp_path}/r.db", "--key", str(tmp_path / "registry.key"),
                                   "--log-level", "debug", "--log-format", "json", url=registry_url,
                                   stderr=registry_log)
        node = await start_cli("node", "run", str(write_config(tmp_path, node_port, registry_url)),
                               "--log-level", "debug", "--log-format", "json", url=node_url, stderr=node_log)
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(50):
                    async with session.get(f"{registry_url}/v1/agents?skill=echo") as response:
                        if (await response.json())["agents"]:
                            break
                    await asyncio.sleep(0.1)
                requests = [
                    ("POST", f"{registry_url}/v1/agents", b"eyJhbGciOiJFZERTQSJ9.e30.AAAA", "application/jose"),
                    ("POST", f"{registry_url}/v1/agents", b"{}", "application/json"),
                    ("GET", f"{registry_url}/v1/agents/did:key:zNope", b"", "text/plain"),
                    ("POST", f"{node_url}/agents/echo/a2a", b'{"jsonrpc":"2.0","id":1,"method":"SendMessage",'
                                                            b'"params":{"message":{"parts":[{"data":{"t":1}}]}}}',
                     "application/json"),
                    ("POST", f"{node_url}/agents/echo/a2a", b"{not json", "application/json"),
                    ("POST", f"{node_url}/mcp", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}',
                     "application/json"),
                ]
                for method, url, body, content_type in requests:
                    async with session.request(method, url, data=body, headers={
                            "Content-Type": content_type, "A2A-Version": "1.0",
                            "Accept": "application/json, text/event-stream"}) as response:
                        assert response.status < 500
                        bodies.append(await response.text())
        finally:
            for process in (node, registry):
                process.terminate()
                await asyncio.wait_for(process.wait(), 20)
        registry_log.seek(0)
        node_log.seek(0)
        text = "\n".join([registry_log.read().decode(), node_log.read().decode(), *bodies])

    keys = [tmp_path / "registry.key", *(tmp_path / "keys").glob("*.key")]
    assert len(keys) == 3 and "guildnet registry" in text  # the registry, the org and the agent keys; logs exist
    for path in keys:
        secret = keyfile.load(path).private_key.private_bytes_raw()
        pem_body = "".join(path.read_text().splitlines()[1:-1])
        for encoded in (secret.hex(), base64.b64encode(secret).decode(),
                        base64.urlsafe_b64encode(secret).decode().rstrip("="), pem_body):
            assert encoded not in text, f"{path.name} leaked"
    assert "PRIVATE KEY" not in text and "Traceback" not in text


@pytest.mark.parametrize("path", ["/v1/agents", "/v1/receipts"])
async def test_deeply_nested_signed_payload_is_a_400_and_stores_nothing(db_url: str, path: str) -> None:
    """Validly signed by some key, 50,000 arrays deep: json.loads would raise RecursionError (a 500 before)."""
    key = SigningKey.generate()
    deep = "[" * 50_000 + "]" * 50_000
    token = sign_raw(key, f'{{"action":"register","iat":{int(time.time())},"nonce":"{signed_write.new_nonce()}",'
                          f'"facts":{deep}}}')
    async with live_registry(db_url) as registry:
        before = await snapshot(registry)
        status, problem, _ = await post_jose(registry.url + path, token)
        assert status == 400 and "deeper than" in problem["detail"]
        assert await snapshot(registry) == before


async def test_a_write_body_that_trickles_in_is_cut_off_with_408(db_url: str) -> None:
    async with live_registry(db_url, body_timeout=0.5) as registry:
        before = await snapshot(registry)
        host, port = registry.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/jose\r\n"
                     b"Content-Length: 1000\r\n\r\neyJh")
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
        writer.close()
        assert status_line.split()[1] == b"408"
        assert await snapshot(registry) == before


async def test_numbers_json_cannot_carry_are_refused_and_never_served(db_url: str) -> None:
    """NaN, Infinity and 1e999 parse in Python's json; stored, they would break every strict reader later."""
    key, facts = new_org("acme").agent("poison")
    async with live_registry(db_url) as registry:
        before = await snapshot(registry)
        facts_json = facts.to_json()
        facts_json["model"]["cost_per_1k_input"] = "PLACEHOLDER"
        for bad in ("NaN", "Infinity", "-Infinity", "1e999"):
            payload = json.dumps({"action": "register", "facts": facts_json, "iat": int(time.time()),
                                  "nonce": signed_write.new_nonce()}).replace('"PLACEHOLDER"', bad)
            status, problem, _ = await post_jose(registry.url + "/v1/agents", sign_raw(key, payload))
            assert status == 400, (bad, problem)
        too_new = signed_write.make(key, {"action": "register", "facts": {**facts.to_json(), "version": 2**53}})
        assert (await post_jose(registry.url + "/v1/agents", too_new))[0] == 400  # past exact JSON integers
        assert await snapshot(registry) == before
        after_2038 = signed_write.make(key, {"action": "register", "facts": bump(facts, version=2**31).to_json()})
        assert (await post_jose(registry.url + "/v1/agents", after_2038))[0] == 201  # unix seconds in 2038


@pytest.mark.parametrize("path", [
    "/v1/log/entries?start=--5", "/v1/log/entries?start=%C2%B2", "/v1/log/entries?start=99999999999999999999",
    "/v1/log/inclusion?index=%C2%B2", "/v1/log/consistency?old=4294967296", "/v1/watch?since=99999999999999999999",
    "/v1/agents?cursor=eyJrIjogOTk5OTk5OTk5OTk5OTk5OTk5OTl9", "/log?start=%C2%B2",
])
async def test_integers_from_a_query_are_ascii_and_bounded(db_url: str, path: str) -> None:
    """'²'.isdigit() is True and int('²') raises; 20 digits overflow the database: each was a 500."""
    async with live_registry(db_url) as registry, aiohttp.ClientSession() as session:
        async with session.get(registry.url + path) as response:
            assert response.status == 400, await response.text()


async def test_a_receipt_dated_in_the_future_is_refused(db_url: str) -> None:
    """A future end time would escape the time decay for ever (and broke the callee's explorer page)."""
    from test_registry_receipts import World, post_receipt

    world = World()
    async with live_registry(db_url) as registry, RegistryClient(registry.url) as client:
        await world.register(client)
        before = await snapshot(registry)
        claim = TaskClaim.model_validate({
            "task_id": "from-the-future", "caller": world.caller.id, "callee": world.callee.id, "skill": "echo",
            "input_sha256": "0" * 64, "output_sha256": "0" * 64, "started_at": 0, "ended_at": 2**53 - 2,
            "status": "completed"})
        token = caller_countersign(callee_sign(claim, world.callee_key), world.caller_key, "success")
        status, problem = await post_receipt(registry, world.caller_key, token)
        assert status == 422 and "future" in problem["detail"]
        assert await snapshot(registry) == before
        async with aiohttp.ClientSession() as session, session.get(f"{registry.url}/agents/{world.callee.id}") as page:
            assert page.status == 200


async def test_replicas_share_write_budgets_through_redis(db_url: str) -> None:
    """``rate_limit_storage=redis://...``: two registry replicas count one key's writes together."""
    key, facts = new_org("acme").agent("busy")
    shared = {"write_rate_per_key": "3/minute", "rate_limit_storage": "redis://127.0.0.1:6379"}
    async with live_registry(db_url, **shared) as first, live_registry(db_url, **shared) as second, \
            RegistryClient(first.url) as via_first, RegistryClient(second.url) as via_second:
        await via_first.register(facts, key)
        await via_second.heartbeat(facts.id, key)
        await via_first.heartbeat(facts.id, key)
        with pytest.raises(RegistryError) as limited:
            await via_second.heartbeat(facts.id, key)
        assert limited.value.status == 429


async def test_watch_connections_are_capped_per_address_and_per_replica(db_url: str) -> None:
    async with live_registry(db_url, max_watchers_per_ip=2, max_watchers=3) as registry, \
            aiohttp.ClientSession() as session:
        url = registry.url + "/v1/watch"
        first, second = await session.ws_connect(url), await session.ws_connect(url)
        async with session.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                             "Sec-WebSocket-Version": "13",
                                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as refused:
            assert refused.status == 429 and refused.headers["Retry-After"] == "5"
        await first.close()
        async with asyncio.timeout(5):
            while True:  # the server notices the close, then the address has room again
                try:
                    third = await session.ws_connect(url)
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.05)
        registry.app[WATCHERS]["10.0.0.9"] = 2  # two sockets of another client: 2 + 2 fill the replica
        with pytest.raises(aiohttp.WSServerHandshakeError) as full:
            await session.ws_connect(url)
        assert full.value.status == 429  # this address is at its own cap first
        await third.close()
        for _ in range(100):  # until the server has noticed the close
            if registry.app[WATCHERS]["127.0.0.1"] <= 1:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(aiohttp.WSServerHandshakeError) as full:
            await session.ws_connect(url)
        assert full.value.status == 503  # room at this address, none in the replica (1 + 2 of 3)
        await second.close()
