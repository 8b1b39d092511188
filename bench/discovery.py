"""Discovery benchmark: do requests in a user's own words find the agent that does the job? Full-text search
alone against search by meaning (and both fused), through the real registry server, on SQLite and PostgreSQL.

The corpus (bench/discovery_corpus.py, seeded): 1,000 agents across 50 skills, each serving one of 20 audiences,
registered as signed AgentFacts through the API; 500 requests that paraphrase one agent's skill and audience in
other words ("pull the amounts out of a bill we received at our clinic" for "Extracts line items and totals from
supplier invoices, for hospitals and healthcare providers"). Two kinds of right answer:

* **skill**: any of the 20 agents that offer the skill asked for can do the job (the requester's audience is a
  preference); recall@5 is the share of requests with one of them in the first five results, MRR the mean of
  1/rank of the first of them (0 past 20).
* **exact**: the one agent of that skill and audience.

Latency is the client's wall time per search (one at a time) and the registry process's CPU time per search;
the machine's load is recorded beside them. ``--filler N`` first stores N more agents (bench/prefill.py, with
vectors) so the cost of brute force over a larger registry shows.

    python bench/discovery.py [--backends sqlite,postgresql] [--filler 0] [--out bench/results/discovery.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import prefill
from discovery_corpus import Agent, Request, agent_words, build, content_words, words
from measure import cpu_seconds, percentile, rss_mb
from processes import free_port, guildnet_process, registry_database

from guildnet.protocols import signed_write
from guildnet.protocols.agentfacts import endorse
from guildnet.protocols.keys import SigningKey

RESULTS = Path(__file__).with_name("results")
MODES = ("words", "hybrid", "meaning")
DEPTH = 20


def registration(agent: Agent, org: tuple[SigningKey, str]) -> tuple[str, str]:
    key = SigningKey.generate()
    facts = {"id": key.did, "name": agent.name, "version": 1, "ttl_seconds": 3600, "description": agent.description,
             "organisation": {"id": org[0].did, "name": org[1]},
             "endpoints": {"a2a": f"http://127.0.0.1:9/agents/{agent.name}/a2a"},
             "skills": [{"id": agent.skill_id, "name": agent.skill_name}]}
    return key.did, signed_write.make(key, {"action": "register", "facts": endorse(org[0], facts)})


async def register(url: str, agents: list[Agent], concurrency: int = 16) -> tuple[dict[str, int], float]:
    """Register every agent (signed writes made before the clock starts); their ids and registrations/s."""
    orgs = [(SigningKey.generate(), f"provider-{i}") for i in range(10)]
    writes = [registration(agent, orgs[agent.index % len(orgs)]) for agent in agents]
    ids = {did: agent.index for (did, _), agent in zip(writes, agents, strict=True)}
    queue = [token for _, token in reversed(writes)]
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            while queue:
                async with session.post(url + "/v1/agents", data=queue.pop(),
                                        headers={"Content-Type": "application/jose"}) as response:
                    if response.status != 201:
                        raise RuntimeError(f"registration refused: {response.status} {await response.text()}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ids, len(agents) / (time.perf_counter() - started)


def ranks(found: list[int], request: Request, agents: list[Agent]) -> tuple[int | None, int | None]:
    """1-based rank of the exact agent, and of the first agent with the requested skill (None: not listed)."""
    skill = agents[request.agent].skill_id
    exact = next((r for r, index in enumerate(found, 1) if index == request.agent), None)
    by_skill = next((r for r, index in enumerate(found, 1) if agents[index].skill_id == skill), None)
    return exact, by_skill


def quality(rank_list: list[int | None]) -> dict[str, float]:
    return {"recall_at_5": sum(1 for r in rank_list if r is not None and r <= 5) / len(rank_list),
            "recall_at_1": sum(1 for r in rank_list if r == 1) / len(rank_list),
            "mrr": sum(1 / r for r in rank_list if r is not None) / len(rank_list)}


async def run_mode(url: str, pid: int, mode: str, requests: list[Request], ids: dict[str, int],
                   agents: list[Agent]) -> dict[str, Any]:
    exact, by_skill, latencies, listed = [], [], [], []
    async with aiohttp.ClientSession() as session:
        for request in requests[:20]:  # warm-up: the registry loads its model on the first search by meaning
            async with session.get(f"{url}/v1/agents?" + urlencode({"q": request.text, "match": mode})) as r:
                await r.read()
        cpu_before = cpu_seconds(pid)
        for request in requests:
            query = urlencode({"q": request.text, "match": mode, "limit": DEPTH})
            started = time.perf_counter()
            async with session.get(f"{url}/v1/agents?{query}") as response:
                body = await response.json()
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"search failed: {response.status} {body}")
            found = [ids[a["id"]] for a in body["agents"] if a["id"] in ids]
            listed.append(len(found))
            e, s = ranks(found, request, agents)
            exact.append(e)
            by_skill.append(s)
        cpu = cpu_seconds(pid) - cpu_before
    latencies.sort()
    return {"mode": mode, "skill": quality(by_skill), "exact": quality(exact),
            "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                           "mean": statistics.mean(latencies)},
            "registry_cpu_ms_per_search": cpu / len(requests) * 1000,
            "mean_results": statistics.mean(listed), "no_result": sum(1 for n in listed if n == 0) / len(listed)}


def overlap(agents: list[Agent], requests: list[Request]) -> dict[str, float]:
    """How many of a request's words the right agent's indexed text holds: content words (a small stopword list
    left out) and all words."""
    content = [len(content_words(r.text) & agent_words(agents[r.agent])) / max(1, len(content_words(r.text)))
               for r in requests]
    every = [len(words(r.text) & agent_words(agents[r.agent])) / max(1, len(words(r.text))) for r in requests]
    return {"content_word_overlap_mean": statistics.mean(content),
            "requests_sharing_no_content_word": sum(1 for c in content if c == 0) / len(content),
            "all_word_overlap_mean": statistics.mean(every)}


async def run_backend(backend: str, agents: list[Agent], requests: list[Request], filler: int) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with registry_database(backend, "guildnet-discovery-") as (db, tmp):
        if filler:
            print(f"[{backend}] prefilling {filler:,} filler agents", file=sys.stderr)
            dids = [SigningKey.generate().did for _ in range(10)]
            rows = prefill.agents(filler, dids, [f"filler-{i}" for i in range(100)],
                                  [f"w{i:04d}" for i in range(2000)], ["misc"])
            await prefill.prefill(db, rows, filler)
        args = ["registry", "serve", "--port", str(port), "--db", db, "--write-rate-per-ip", "off",
                "--write-rate-per-key", "off"]
        async with guildnet_process(args, port, tmp / "registry.log", pinned=True,
                                    ready_within=60.0 + filler / 1000) as process:
            print(f"[{backend}] registering {len(agents)} agents", file=sys.stderr)
            ids, rate = await register(url, agents)
            result: dict[str, Any] = {"backend": backend, "agents": len(agents) + filler, "filler": filler,
                                      "registrations_per_s": rate, "modes": {}}
            for mode in MODES:
                print(f"[{backend}] {len(requests)} requests, match={mode}", file=sys.stderr)
                result["modes"][mode] = await run_mode(url, process.pid, mode, requests, ids, agents)
            result["rss_mib"] = rss_mb(process.pid)
        return result


def print_table(results: list[dict[str, Any]], corpus: dict[str, Any]) -> None:
    print(f"\ndiscovery: {corpus['agents']} agents, {corpus['skills']} skills, {corpus['requests']} requests; "
          f"request words found in the right agent's text: {corpus['overlap']['content_word_overlap_mean']:.1%} "
          f"of content words ({corpus['overlap']['requests_sharing_no_content_word']:.0%} of requests share none); "
          f"load {corpus['load_before']}")
    print(f"{'backend':<11}{'agents':>7} {'match':<8}{'skill R@5':>10}{'skill MRR':>10}{'exact R@5':>10}"
          f"{'exact MRR':>10}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms':>8}{'results':>8}")
    for result in results:
        for mode, m in result["modes"].items():
            print(f"{result['backend']:<11}{result['agents']:>7} {mode:<8}{m['skill']['recall_at_5']:>10.3f}"
                  f"{m['skill']['mrr']:>10.3f}{m['exact']['recall_at_5']:>10.3f}{m['exact']['mrr']:>10.3f}"
                  f"{m['latency_ms']['p50']:>8.2f}{m['latency_ms']['p99']:>8.2f}"
                  f"{m['registry_cpu_ms_per_search']:>8.2f}{m['mean_results']:>8.1f}")
    print("R@5: share of requests with a right agent among the first five; MRR over the first 20; CPU ms: the "
          "registry process's CPU time per search (pinned to core 0); latency measured under the load shown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--filler", type=int, default=0, help="extra agents stored first, to measure latency")
    parser.add_argument("--out", type=Path, default=RESULTS / "discovery.json")
    args = parser.parse_args()
    agents, requests = build(args.seed, args.requests)
    random.Random(args.seed).shuffle(requests)
    corpus = {"agents": len(agents), "skills": len({a.skill_id for a in agents}), "requests": len(requests),
              "seed": args.seed, "overlap": overlap(agents, requests),
              "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    results = [asyncio.run(run_backend(b, agents, requests, args.filler)) for b in args.backends.split(",")]
    corpus["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print_table(results, corpus)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"corpus": corpus, "results": results, "machine": platform.platform(),
                                    "cpus": os.cpu_count()}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
