"""Domain marks: what they cost a registry's registrations and reads, and a node's ranking.

Side by side in one run, against one registry process per back end (pinned to core 0; its domain proofs come from a
DNS server on 127.0.0.1, dnslib's zone resolver):

* registrations/s of agents whose organisation claims a domain (one look-up per organisation, then its stored
  mark) against agents that claim none, sent in alternating chunks;
* search pages (by skill, 20 a page) and gets by id of agents that carry a mark against agents that carry none
  (the mark is one primary-key subquery per record);
* in this process, a node's ``explain`` over 20 candidates of 10 organisations with ``require_verified_domain``
  (checks cached, as in steady state) and without, and one uncached proof check (a DNS query over loopback).

    python bench/domains.py [--agents 10000] [--backends sqlite,postgresql] [--repeats 1000]

Prints a table and writes bench/results/domains.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver
from measure import percentile
from processes import free_port, guildnet_process, registry_database

from guildnet.node.a2a.client import A2AClient
from guildnet.node.delegation.delegator import Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.delegation.domains import DomainVerifier
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import signed_write
from guildnet.protocols.agentfacts import endorse
from guildnet.protocols.domain import check_domain, txt_name, txt_record
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import DomainLookupSettings, DomainResolver, RegistryClient

RESULTS = Path(__file__).with_name("results")
ORGS = 20
CHUNK = 500


def registration(org: SigningKey, index: int, skill: str, domain: str | None) -> str:
    key = SigningKey.generate()
    organisation: dict[str, Any] = {"id": org.did, "name": f"org-{org.did[-6:]}"}
    if domain:
        organisation["domain"] = domain
    facts = {"id": key.did, "name": f"{skill}-{index}", "version": 1, "ttl_seconds": 3600,
             "description": f"agent {index}", "organisation": organisation,
             "endpoints": {"a2a": f"http://127.0.0.1:9/agents/{skill}-{index}/a2a"},
             "skills": [{"id": skill, "name": skill}],
             "model": {"family": "SmolLM2", "cost_per_1k_input": 0.00002, "cost_per_1k_output": 0.00004}}
    return signed_write.make(key, {"action": "register", "facts": endorse(org, facts)})


async def send(session: aiohttp.ClientSession, url: str, tokens: list[str], concurrency: int) -> float:
    """Post ``tokens`` as registrations; seconds taken (every one must be accepted)."""
    queue = list(reversed(tokens))

    async def worker() -> None:
        while queue:
            async with session.post(url + "/v1/agents", data=queue.pop(),
                                    headers={"Content-Type": "application/jose"}) as response:
                assert response.status == 201, await response.text()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def latency(call: Callable[[int], Awaitable[object]], repeats: int) -> dict[str, float]:
    for i in range(20):
        await call(i)
    samples = []
    for i in range(repeats):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "mean_ms": statistics.fmean(samples)}


def zone(orgs: list[SigningKey]) -> str:
    return "\n".join(f'{txt_name(f"org{i}.example")}. 60 IN TXT "{txt_record(org.did)}"' for i, org in enumerate(orgs))


async def run_backend(backend: str, orgs: list[SigningKey], dns: str, agents: int, concurrency: int,
                      repeats: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with registry_database(backend, "guildnet-bench-domains-") as (db, tmp):
        args = ["registry", "serve", "--port", str(port), "--db", db, "--write-rate-per-ip", "off", "--dns-server",
                dns]
        async with guildnet_process(args, port, tmp / "registry.log", pinned=shutil.which("taskset") is not None), \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            timed = {"claimed": 0.0, "plain": 0.0}
            for start in range(0, agents // 2, CHUNK):
                size = min(CHUNK, agents // 2 - start)
                for skill in ("plain", "claimed"):
                    tokens = [registration(orgs[i % ORGS], i, skill, f"org{i % ORGS}.example" if skill == "claimed"
                                           else None) for i in range(start, start + size)]
                    timed[skill] += await send(session, url, tokens, concurrency)
                print(f"[{backend}] registered {2 * (start + size)}/{agents}", file=sys.stderr)
            ids: dict[str, list[str]] = {}
            for skill in ("plain", "claimed"):
                async with session.get(f"{url}/v1/agents?skill={skill}&limit=50") as response:
                    page = await response.json()
                ids[skill] = [a["id"] for a in page["agents"]]
                assert all(("domain" in a) == (skill == "claimed") for a in page["agents"])

            def get(path: str) -> Callable[[int], Awaitable[object]]:
                async def call(i: int) -> object:
                    async with session.get(url + path) as response:
                        assert response.status == 200
                        return await response.read()
                return call

            def get_one(skill: str) -> Callable[[int], Awaitable[object]]:
                return lambda i: get(f"/v1/agents/{ids[skill][i % len(ids[skill])]}")(i)

            result: dict[str, Any] = {"backend": backend, "agents": agents,
                                      "register_per_s": {s: agents // 2 / t for s, t in timed.items()}}
            for skill in ("claimed", "plain"):
                result[f"search_{skill}"] = await latency(get(f"/v1/agents?skill={skill}&limit=20"), repeats)
                result[f"get_{skill}"] = await latency(get_one(skill), repeats)
            result["node"] = await node_figures(url, session, orgs, dns, repeats)
            return result


async def node_figures(url: str, session: aiohttp.ClientSession, orgs: list[SigningKey], dns: str,
                       repeats: int) -> dict[str, Any]:
    """A node ranking 20 candidates of 10 organisations (all proven) with and without requiring the proof."""
    tokens = [registration(orgs[i % 10], i, "ranked", f"org{i % 10}.example") for i in range(20)]
    await send(session, url, tokens, 4)
    caller = SigningKey.generate()
    settings = DomainLookupSettings(dns_server=dns)
    async with RegistryClient(url) as registry, A2AClient() as a2a:
        index = PeerIndex(registry)
        delegator = Delegator(registry, index, a2a, StaticIdentity(caller), SigningKey.generate().did,
                              reputation_ttl=3600.0,
                              domains=DomainVerifier(DomainResolver(settings)))
        try:
            assert len((await delegator.explain("ranked", require_verified_domain=True)).order) == 20
            figures = {
                "explain_required": await latency(lambda _: delegator.explain("ranked", require_verified_domain=True),
                                                  repeats),
                "explain_not_required": await latency(lambda _: delegator.explain("ranked"), repeats),
            }
        finally:
            await index.close()
            await delegator.domains.close()  # type: ignore[union-attr]
    resolver = DomainResolver(settings)
    try:
        figures["uncached_check"] = await latency(
            lambda i: check_domain(f"org{i % 10}.example", orgs[i % 10].did, resolver, now=time.time()), repeats)
    finally:
        await resolver.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    results = []
    for backend in args.backends.split(","):
        orgs = [SigningKey.generate() for _ in range(ORGS)]
        server = DNSServer(ZoneResolver(zone(orgs)), address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply"))
        server.start_thread()
        try:
            dns = f"127.0.0.1:{server.server.server_address[1]}"
            results.append(asyncio.run(run_backend(backend, orgs, dns, args.agents, args.concurrency, args.repeats)))
        finally:
            server.stop()
            server.server.server_close()
    print(f"\n{'backend':<11}{'agents':>7}  {'':<9}{'reg/s':>8}{'search p50/p99 ms':>20}{'get p50/p99 ms':>17}")
    for r in results:
        for kind in ("claimed", "plain"):
            label = "domain" if kind == "claimed" else "no domain"
            print(f"{r['backend']:<11}{r['agents']:>7}  {label:<9}{r['register_per_s'][kind]:>8,.0f}"
                  f"{r[f'search_{kind}']['p50_ms']:>11.2f}/{r[f'search_{kind}']['p99_ms']:<8.2f}"
                  f"{r[f'get_{kind}']['p50_ms']:>8.2f}/{r[f'get_{kind}']['p99_ms']:<8.2f}")
    for r in results:
        node = r["node"]
        print(f"node ({r['backend']} registry): explain 20 candidates p50 "
              f"{node['explain_required']['p50_ms']:.2f} ms requiring a verified domain (cached checks), "
              f"{node['explain_not_required']['p50_ms']:.2f} ms not; one uncached check p50 "
              f"{node['uncached_check']['p50_ms']:.2f} ms (DNS over loopback)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "domains.json"
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
