"""A node that requires a verified domain checks each candidate organisation's proof itself.

The attack from the man-in-the-middle list: an organisation claims a domain it cannot prove (acme.example, whose
DNS names Acme's key), and a man-in-the-middle in front of the real registry marks every claim verified. A node
that requires a verified domain refuses the impostor with zero connections to its endpoint, and still delegates
to the honest organisation. All of it over real sockets: registry, proxy, nodes, DNS and HTTPS servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from delegation_support import translator
from domain_support import domains
from registry_support import free_port, live_registry
from test_delegation import caller_identity

from guildnet.node.a2a.client import A2AClient
from guildnet.node.agent import Agent
from guildnet.node.config import load_config
from guildnet.node.delegation.delegator import Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.delegation.domains import DomainVerifier
from guildnet.node.identity import StaticIdentity
from guildnet.node.node import Node
from guildnet.node.publisher import PublishedAgent
from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import DomainLookupSettings, DomainResolver, RegistryClient

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "host"}


def forge_marks(body: Any) -> Any:
    """What the man in the middle serves: every domain claim marked verified by DNS, just now."""
    for record in body.get("agents", [body]) if isinstance(body, dict) else []:
        organisation = record.get("facts", {}).get("organisation", {})
        if organisation.get("domain"):
            record["domain"] = {"name": organisation["domain"], "organisation": organisation["id"],
                                "status": "verified", "method": "dns", "verified_at": time.time(),
                                "checked_at": time.time(), "failures": 0, "detail": "trust me"}
    return body


@contextlib.asynccontextmanager
async def man_in_the_middle(upstream: str) -> AsyncIterator[str]:
    """A proxy on 127.0.0.1 that relays everything to the registry (the watch stream too) and forges domain marks
    in what it serves."""
    session = aiohttp.ClientSession()

    async def relay(request: web.Request) -> web.StreamResponse:
        url = upstream + request.path_qs
        if request.headers.get("Upgrade", "").lower() == "websocket":
            downstream = web.WebSocketResponse()
            await downstream.prepare(request)
            async with session.ws_connect(url) as ws:

                async def forward() -> None:
                    async for message in ws:
                        await downstream.send_str(message.data)

                forwarding = asyncio.create_task(forward())
                async for _ in downstream:  # the client sends nothing: this ends when it goes away
                    pass
                forwarding.cancel()
            return downstream
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with session.request(request.method, url, data=await request.read(), headers=headers) as response:
            body = await response.read()
            if request.method == "GET" and request.path.startswith("/v1/agents") and response.status == 200:
                body = json.dumps(forge_marks(json.loads(body))).encode()
            return web.Response(body=body, status=response.status,
                                headers={k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await session.close()


@dataclass
class Counter:
    connections: int = 0


@contextlib.asynccontextmanager
async def counted(target_port: int) -> AsyncIterator[tuple[int, Counter]]:
    """A TCP forwarder on 127.0.0.1 in front of ``target_port`` that counts the connections it accepts."""
    counter = Counter()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], counter
    finally:
        server.close()


@contextlib.asynccontextmanager
async def organisation_node(name: str, agent: Agent, registry_url: str, tmp_path: Path, *, domain: str | None,
                            org_key: SigningKey | None = None) -> AsyncIterator[Counter]:
    """A node whose organisation claims ``domain``, serving on a real port behind a connection counter."""
    port = free_port()
    async with counted(port) as (public_port, counter):
        node = Node(org_name=name, org_key=org_key or SigningKey.generate(),
                    agents=[PublishedAgent(agent, StaticIdentity.generate(), ttl_seconds=30)],
                    base_url=f"http://127.0.0.1:{public_port}", db_url=f"sqlite+aiosqlite:///{tmp_path}/{name}.db",
                    registry_url=registry_url, port=port, org_domain=domain)
        runner = web.AppRunner(node.build_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield counter
        finally:
            await runner.cleanup()


async def wait_for_agents(client: RegistryClient, names: set[str]) -> None:
    async with asyncio.timeout(10):
        while True:
            if {e.facts.name for e in (await client.search(skill="translate")).agents} >= names:
                return
            await asyncio.sleep(0.05)


async def test_a_forged_domain_mark_never_reaches_the_impostor(tmp_path: Path) -> None:
    acme_key = SigningKey.generate()
    async with domains(tmp_path) as world, \
            live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", domain_lookup=world.settings) as registry, \
            man_in_the_middle(registry.url) as mitm:
        world.prove_by_dns("acme.example", acme_key)
        async with organisation_node("acme", translator("honest", price=0.01), registry.url, tmp_path,
                                     domain="acme.example", org_key=acme_key) as honest_calls, \
                organisation_node("mallory", translator("impostor", price=0.00001), registry.url, tmp_path,
                                  domain="acme.example") as impostor_calls, \
                organisation_node("plain", translator("plain", price=0.0001), registry.url, tmp_path,
                                  domain=None) as plain_calls, \
                RegistryClient(mitm) as through_mitm, A2AClient() as a2a:
            org_a, planner = await caller_identity(through_mitm)
            await wait_for_agents(through_mitm, {"honest", "impostor", "plain"})
            served = {e.facts.name: e for e in (await through_mitm.search(skill="translate")).agents}
            assert served["impostor"].domain is not None and served["impostor"].domain.verified  # the forgery
            async with RegistryClient(registry.url) as direct:  # what the registry itself says
                assert (await direct.get(served["impostor"].id)).domain.status == "unverified"  # type: ignore[union-attr]

            resolver = DomainResolver(world.settings)
            delegator = Delegator(through_mitm, PeerIndex(through_mitm), a2a, StaticIdentity(planner), org_a.did,
                                  domains=DomainVerifier(resolver), require_verified_domain=True)
            try:
                decision = await delegator.explain("translate")
                looked_up = world.zone.queries[("_guildnet.acme.example", "TXT")]
                assert [c.name for c in decision.order] == ["honest"]
                refused = {c.name: why for c, why in decision.excluded}
                assert "acme.example not proven" in refused["impostor"] and acme_key.did in refused["impostor"]
                assert refused["plain"] == "its organisation claims no domain"
                result = await delegator.delegate("translate", {"text": "hi"}, deadline=10)
                assert result.output == {"text": "HI"} and result.agent.facts.name == "honest"
                assert impostor_calls.connections == 0 and plain_calls.connections == 0
                assert honest_calls.connections >= 1
                # the same node, not requiring it for one call, would have picked the cheapest: the impostor
                cheapest = await delegator.explain("translate", require_verified_domain=False)
                assert cheapest.order[0].name == "impostor"
                # the node's checks are cached: delegating and explaining again looked nothing up
                assert world.zone.queries[("_guildnet.acme.example", "TXT")] == looked_up
            finally:
                await delegator.flush()
                await delegator.index.close()
                await delegator.domains.close()  # type: ignore[union-attr]
            assert impostor_calls.connections == 0


async def test_the_node_caches_its_checks_and_sees_a_fixed_proof_after_the_failure_ttl(tmp_path: Path) -> None:
    org = SigningKey.generate()
    async with domains(tmp_path) as world:
        now = [time.time()]
        verifier = DomainVerifier(DomainResolver(world.settings), ttl=600, failure_ttl=60, clock=lambda: now[0])
        try:
            results = await asyncio.gather(*(verifier.check(org.did, "acme.example") for _ in range(5)))
            assert not any(r.verified for r in results)
            assert world.zone.queries[("_guildnet.acme.example", "TXT")] == 1  # five checks, one look-up
            world.prove_by_dns("acme.example", org)
            assert not (await verifier.check(org.did, "acme.example")).verified  # still cached
            now[0] += 61
            assert (await verifier.check(org.did, "acme.example")).verified
            world.unprove("acme.example")
            now[0] += 599
            assert (await verifier.check(org.did, "acme.example")).verified  # a pass is kept for ttl
            now[0] += 2
            assert not (await verifier.check(org.did, "acme.example")).verified
            assert world.zone.queries[("_guildnet.acme.example", "TXT")] == 3
        finally:
            await verifier.close()


@pytest.mark.slow
async def test_the_delegate_flag_and_the_config_require_a_verified_domain(tmp_path: Path) -> None:
    acme_key = SigningKey.generate()
    async with domains(tmp_path) as world, \
            live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", domain_lookup=world.settings) as registry:
        world.prove_by_dns("acme.example", acme_key)
        keyfile.save(SigningKey.generate(), tmp_path / "org.key")
        (tmp_path / "agent.py").write_text(
            "from pydantic import BaseModel\nfrom guildnet.node.agent import FunctionAgent\n"
            "class Plan(BaseModel):\n    text: str\n"
            "agent = FunctionAgent('caller')\n"
            "@agent.skill_handler(id='plan', name='Plan')\n"
            "async def plan(data: Plan) -> Plan:\n    return data\n")
        (tmp_path / "node.toml").write_text(
            f'[node]\norg_name = "org-a"\norg_key = "org.key"\nregistry = "{registry.url}"\n'
            f'db = "sqlite:///caller.db"\ndns_server = "{world.settings.dns_server}"\n'
            f'domain_ca_file = "{world.settings.ca_file}"\n'
            '[[agents]]\nagent = "agent.py:agent"\nkey = "caller.key"\n')
        async with organisation_node("acme", translator("honest", price=0.01), registry.url, tmp_path,
                                     domain="acme.example", org_key=acme_key), \
                organisation_node("mallory", translator("impostor", price=0.00001), registry.url, tmp_path,
                                  domain="acme.example") as impostor_calls, \
                RegistryClient(registry.url) as client:
            await wait_for_agents(client, {"honest", "impostor"})

            async def explain(*flags: str) -> str:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "guildnet.cli", "delegate", "translate", "--input", '{"text": "x"}',
                    "--config", str(tmp_path / "node.toml"), "--explain", *flags,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                out, err = await process.communicate()
                assert process.returncode == 0, err.decode()
                return out.decode()

            # one after the other: both would create the caller's node database at once
            plain, strict = await explain(), await explain("--require-verified-domain")
            first = [line for line in plain.splitlines() if line.strip().startswith("1 ")]
            assert "impostor" in first[0]
            first = [line for line in strict.splitlines() if line.strip().startswith("1 ")]
            assert "honest" in first[0] and "excluded: domain acme.example not proven" in strict
            assert impostor_calls.connections == 0

        config = load_config(tmp_path / "node.toml", require_verified_domain=True, org_domain="acme.example")
        node = Node.from_config(config)
        assert node.require_verified_domain and node.org_domain == "acme.example"
        assert node.domain_lookup == DomainLookupSettings(dns_server=world.settings.dns_server,
                                                          ca_file=world.settings.ca_file)
        delegator = await node.delegator()
        try:
            assert delegator.require_verified_domain and delegator.domains is not None
            assert (await delegator.domains.check(acme_key.did, "acme.example")).verified
        finally:
            await node.close()
