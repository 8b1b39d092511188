"""Registry benchmark: signed registrations/s, liveness updates/s and search latency at 100k agents (or
``--agents``), SQLite and PostgreSQL.

The registry runs as its own process pinned to one core (``taskset -c 0``), the load generator on the
other; signed writes are made before the clock starts (a chunk at a time: a signed write is fresh for 300 s),
so the figure is the registry's own cost. Beside it, this machine's Ed25519 verifications/s with
``cryptography`` on one core: the ceiling for signed writes.

Liveness: per-agent heartbeats (one signed write per agent, a sample of 5,000 agents) and, where the registry
has them, node-level heartbeats (``POST /v1/heartbeats``: one write signed by the organisation key per 2,048
agents) covering every agent; the figure is agent-liveness updates per second. Then the registry's resident
memory at that size, and its start-up time on the full database (migrations, log tree load) after a restart.
Beside each write rate, the registry's CPU per write (its process, and with ``--verify-workers`` its workers): on a
shared machine the steadier figure. ``--replicas N`` (PostgreSQL) spreads the registrations over N processes on
the one database.

    python bench/registry.py [--agents 100000] [--backends sqlite,postgresql] [--concurrency 64] [--batch 100]
                             [--label new]

Prints a table and writes bench/results/registry[-LABEL].json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import prefill
from measure import cpu_seconds, percentile, processes_cpu_seconds, rss_mb, tree_cpu_seconds
from processes import free_port, guildnet_process, kept_registry_database, registry_database

from guildnet.protocols import signed_write
from guildnet.protocols.agentfacts import endorse
from guildnet.protocols.keys import SigningKey

RESULTS = Path(__file__).with_name("results")
SKILLS = [f"skill-{i:03d}" for i in range(100)]
WORDS = [f"w{i:04d}" for i in range(2000)]
COMMON_WORDS = ["translate", "invoice", "summarise", "classify", "extract", "support", "legal", "finance"]


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


def verify_ceiling(seconds: float = 3.0) -> float:
    """Ed25519 verifications per second on one core, on a registration-sized message."""
    key = SigningKey.generate()
    message = os.urandom(900)
    signature = key.sign(message)
    public = key.public_key
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            public.verify(signature, message)
        count += 200
    return count / (time.perf_counter() - started)


def checks_cpu_ms(count: int = 2000) -> float:
    """CPU ms per registration of the checks every registration needs, run back to back in this process with no
    server around them (``open_registration``: the write's and the endorsement's signatures, the strict parse,
    AgentFacts validation and the embedding for search by meaning). With the database's CPU per registration it
    is the floor of a registration's cost whatever serves it: two cores cannot register faster than
    2000 / (this + the database's ms)."""
    from guildnet.registry.verifier import open_registration

    rng, orgs = random.Random(3), bench_orgs()
    tokens = [make_registration(rng, *orgs[i % len(orgs)], i) for i in range(count)]
    now = time.time()
    open_registration(make_registration(rng, *orgs[0], count), now, 300)  # loads the embedding model untimed
    started = time.process_time()
    for token in tokens:
        open_registration(token, now, 300)
    return (time.process_time() - started) * 1000 / count


HEARTBEAT_SAMPLE = 5000
NODE_HEARTBEAT_AGENTS = 2048


def make_registration(rng: random.Random, org_key: SigningKey, org_name: str, index: int,
                      key: SigningKey | None = None) -> str:
    key = key or SigningKey.generate()
    skills = rng.sample(SKILLS, rng.randint(1, 3))
    words = [*rng.sample(WORDS, 12), rng.choice(COMMON_WORDS)]
    facts = {
        "id": key.did, "name": f"agent-{index}", "version": 1, "ttl_seconds": 3600,
        "description": " ".join(words),
        "organisation": {"id": org_key.did, "name": org_name},
        "endpoints": {"a2a": f"http://127.0.0.1:9/agents/agent-{index}/a2a"},
        "skills": [{"id": s, "name": s, "tags": [rng.choice(WORDS)],
                    "input_schema": {"type": "object"}, "output_schema": {"type": "object"}} for s in skills],
        "model": {"family": "SmolLM2", "parameters": 135000000, "cost_per_1k_input": 0.00002,
                  "cost_per_1k_output": 0.00004},
    }
    return signed_write.make(key, {"action": "register", "facts": endorse(org_key, facts)})


@dataclass
class Population:
    """What the load generator keeps of the agents it registered: every id by organisation, and the keys of a
    sample (for per-agent heartbeats)."""

    orgs: list[tuple[SigningKey, str]]
    ids_by_org: dict[str, list[str]] = field(default_factory=dict)
    sample: list[SigningKey] = field(default_factory=list)


async def register_all(urls: list[str], agents: int, concurrency: int, population: Population, *, batch: int = 1,
                       chunk: int = 5000) -> tuple[float, int, float]:
    """Register ``agents`` agents of ``population``'s organisations, the senders spread over the replicas at
    ``urls``: one signed write per request (``POST /v1/agents``), or ``batch`` > 1 per request
    (``POST /v1/registrations``, as a node publishing its agents sends them). Returns (registrations/s over the
    timed sends, failures, this load generator's CPU ms per registration)."""
    rng = random.Random(7)
    orgs = population.orgs
    sent_time = sent_cpu = 0.0
    failures = 0
    senders = concurrency if batch == 1 else max(2, math.ceil(concurrency / batch))  # registrations in flight
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        done = 0
        while done < agents:
            writes = []
            for i in range(done, min(agents, done + chunk)):
                key = SigningKey.generate()
                org_key, org_name = orgs[i % len(orgs)]
                writes.append(make_registration(rng, org_key, org_name, i, key))
                population.ids_by_org.setdefault(org_key.did, []).append(key.did)
                if len(population.sample) < HEARTBEAT_SAMPLE:
                    population.sample.append(key)
            queue = list(reversed(writes))

            async def worker(queue: list[str], url: str) -> int:
                failed = 0
                while queue:
                    if batch == 1:
                        async with session.post(url + "/v1/agents", data=queue.pop(),
                                                headers={"Content-Type": "application/jose"}) as response:
                            await response.read()
                            failed += response.status != 201
                        continue
                    tokens = [queue.pop() for _ in range(min(batch, len(queue)))]
                    async with session.post(url + "/v1/registrations", json={"registrations": tokens}) as response:
                        answer = await response.json(content_type=None)  # a refused batch is problem+json
                    failed += (len(tokens) if response.status != 200
                               else sum(item["status"] != 201 for item in answer["results"]))
                return failed

            started, started_cpu = time.perf_counter(), time.process_time()
            failures += sum(await asyncio.gather(*(worker(queue, urls[i % len(urls)]) for i in range(senders))))
            sent_time += time.perf_counter() - started
            sent_cpu += time.process_time() - started_cpu
            done += len(writes)
            print(f"  registered {done:>7}/{agents}  ({done / sent_time:,.0f}/s so far)", file=sys.stderr)
    return agents / sent_time, failures, sent_cpu * 1000 / agents


async def _send_all(url: str, requests: list[tuple[str, str]], concurrency: int) -> tuple[float, int]:
    """POST every (path, signed write); return (seconds, failures)."""
    queue = list(reversed(requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> int:
            failed = 0
            while queue:
                path, token = queue.pop()
                async with session.post(url + path, data=token,
                                        headers={"Content-Type": "application/jose"}) as response:
                    await response.read()
                    failed += response.status != 200
            return failed

        started = time.perf_counter()
        failures = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
        return time.perf_counter() - started, failures


async def liveness(url: str, population: Population, concurrency: int, pid: int) -> dict[str, Any]:
    """Agent-liveness updates/s: per-agent heartbeats of the sample, and node-level heartbeats of every agent
    (if the registry has ``/v1/heartbeats``), with the registry process's CPU per update."""
    per_agent = [(f"/v1/agents/{k.did}/heartbeat", signed_write.make(k, {"action": "heartbeat", "agent": k.did}))
                 for k in population.sample]
    seconds, failed = await _send_all(url, per_agent, concurrency)
    result: dict[str, Any] = {"per_agent": {"agents": len(per_agent), "updates_per_s": len(per_agent) / seconds,
                                            "failed": failed}}
    node_level = []
    covered = 0
    for org_key, _ in population.orgs:
        ids = population.ids_by_org.get(org_key.did, [])
        for start in range(0, len(ids), NODE_HEARTBEAT_AGENTS):
            part = ids[start:start + NODE_HEARTBEAT_AGENTS]
            node_level.append(("/v1/heartbeats", signed_write.make(org_key, {"action": "node_heartbeat",
                                                                             "agents": part})))
            covered += len(part)
    cpu_before = cpu_seconds(pid)
    seconds, failed = await _send_all(url, node_level, min(concurrency, 4))
    cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / max(covered, 1)
    if failed == len(node_level):
        result["node_level"] = None  # a registry without node-level heartbeats
    else:
        result["node_level"] = {"agents": covered, "writes": len(node_level), "updates_per_s": covered / seconds,
                                "writes_per_s": len(node_level) / seconds, "failed": failed,
                                "registry_cpu_us_per_update": cpu_us, "load_average_after": os.getloadavg()}
    return result


async def latency(url: str, paths: list[str], repeats: int, pid: int) -> dict[str, float]:
    """p50/p99/mean of ``repeats`` requests one at a time, and the registry process's CPU per request (steadier
    than latency on a shared machine: it leaves out the time the registry waited for a core)."""
    samples: list[float] = []
    async with aiohttp.ClientSession() as session:
        for path in paths[:20]:  # warm-up
            async with session.get(url + path) as response:
                await response.read()
        cpu_before = cpu_seconds(pid)
        for i in range(repeats):
            path = paths[i % len(paths)]
            started = time.perf_counter()
            async with session.get(url + path) as response:
                await response.read()
                assert response.status == 200, (path, response.status)
            samples.append((time.perf_counter() - started) * 1000)
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / repeats
    return {"p50_ms": percentile(sorted(samples), 50), "p99_ms": percentile(sorted(samples), 99),
            "mean_ms": statistics.fmean(samples), "cpu_ms_per_request": cpu_ms}


async def some_ids(url: str, count: int) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(url + f"/v1/agents?limit=100&skill={SKILLS[3]}") as r:
        body = await r.json()
    return [a["id"] for a in body["agents"]][:count]


def bench_orgs() -> list[tuple[SigningKey, str]]:
    """The 50 organisations, the same keys every run: a reused prefilled database names them."""
    return [(SigningKey.from_seed(hashlib.sha256(f"guildnet-bench-org-{i}".encode()).digest()), f"org-{i}")
            for i in range(50)]


async def run_backend(backend: str, agents: int, concurrency: int, repeats: int, *, pinned: bool,
                      verify_workers: int, prefilled: int = 0, reuse: str | None = None, replicas: int = 1,
                      reads_only: bool = False, settle: float = 0.0, batch: int = 1) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    population = Population(bench_orgs())
    database = kept_registry_database(backend, reuse) if reuse else registry_database(backend, "guildnet-bench-")
    async with database as (db, tmp):
        prefill_s = 0.0
        existing, before = await prefill.prefilled_agents(db) if reuse else (0, 0)
        if existing:
            print(f"[{backend}] reusing {db}: {existing:,} prefilled agents, {before:,} in all", file=sys.stderr)
            prefilled = existing
            await prefill.keep_live(db)
        elif prefilled:
            print(f"[{backend}] prefilling {prefilled:,} agents", file=sys.stderr)
            rows = prefill.agents(prefilled, [k.did for k, _ in population.orgs], SKILLS, WORDS, COMMON_WORDS)
            prefill_s = await prefill.prefill(db, rows, prefilled)
        for i in range(prefilled):
            population.ids_by_org.setdefault(population.orgs[i % 50][0].did, []).append(f"did:key:zPrefill{i:09d}")
        # the capacity measured here is the registry's own, so the write limits are off (one client sends every
        # registration; an organisation key signs every node-level heartbeat)
        args = ["registry", "serve", "--port", str(port), "--db", db, "--write-rate-per-ip", "off",
                "--write-rate-per-key", "off"]
        if verify_workers:
            args += ["--verify-workers", str(verify_workers)]
        ready_within = 30.0 + prefilled / 1000  # start-up loads the log tree: allow ~1 ms a leaf
        async with contextlib.AsyncExitStack() as replica_stack, \
                guildnet_process(args, port, tmp / "registry.log", pinned=pinned,
                                 ready_within=ready_within) as process:
            servers, urls = [process], [url]
            for i in range(1, replicas):  # more stateless replicas on the same PostgreSQL database
                replica_port = free_port()
                replica_args = [*args[:3], str(replica_port), *args[4:]]
                servers.append(await replica_stack.enter_async_context(guildnet_process(
                    replica_args, replica_port, tmp / f"registry-{i}.log", pinned=pinned, ready_within=ready_within)))
                urls.append(f"http://127.0.0.1:{replica_port}")
            print(f"[{backend}] registering {agents} agents, concurrency {concurrency}, {replicas} replica(s)",
                  file=sys.stderr)

            def registry_cpu() -> tuple[float, float]:
                return (sum(tree_cpu_seconds(s.pid) for s in servers), sum(cpu_seconds(s.pid) for s in servers))

            await asyncio.sleep(settle)
            def database_cpu_seconds() -> float:  # SQLite works inside the registry process: counted there
                return processes_cpu_seconds("postgres") if backend == "postgresql" else 0.0

            cpu_before, database_cpu_before = registry_cpu(), database_cpu_seconds()
            rate, failures, client_cpu = (await register_all(urls, agents, concurrency, population, batch=batch)
                                          if agents else (0.0, 0, 0.0))
            registration_cpu = [(after - before) * 1000 / max(agents, 1)
                                for before, after in zip(cpu_before, registry_cpu(), strict=True)]
            database_cpu = (database_cpu_seconds() - database_cpu_before) * 1000 / max(agents, 1)
            ids = await some_ids(url, 50)
            if not ids:
                raise SystemExit(f"[{backend}] the registry holds no agent to read: give --agents N or --prefill N")
            timed = partial(latency, url, repeats=repeats, pid=process.pid)
            result = {
                "backend": backend, "agents": max(before, prefilled) + agents, "registered_through_the_api": agents,
                "prefilled": prefilled, "prefill_s": prefill_s,
                "reused_database": bool(existing), "registry_pinned_to_one_core": pinned,
                "verify_workers": verify_workers, "replicas": replicas, "registrations_per_s": rate,
                "failed_registrations": failures,
                # registry CPU per registration: the process and its verifier workers, and the process alone
                "registration_cpu_ms": registration_cpu[0], "registration_cpu_ms_main_process": registration_cpu[1],
                # the rest of a registration's CPU: PostgreSQL's server processes (0 on SQLite), and the sender
                "registration_cpu_ms_database": database_cpu, "registration_cpu_ms_load_generator": client_cpu,
                "registrations_per_request": batch,
                "load_average_after_registrations": os.getloadavg(),
                "search_skill": await timed([f"/v1/agents?skill={s}&limit=20" for s in SKILLS]),
                # a rare word matches ~0.6% of agents (600 at 100k), a common one 12.5% (12,500)
                "search_text": await timed([f"/v1/agents?q={w}&match=words&limit=20" for w in WORDS[:100]]),
                "search_text_common": await timed(
                    [f"/v1/agents?q={w}&match=words&limit=20" for w in COMMON_WORDS]),
                # q= as users send it: words and meaning fused (brute-force cosine over every agent's vector)
                "search_hybrid": await timed([f"/v1/agents?q={w}&limit=20" for w in COMMON_WORDS]),
                "search_meaning": await timed([f"/v1/agents?q={w}&match=meaning&limit=20" for w in COMMON_WORDS]),
                "search_hybrid_skill": await timed([f"/v1/agents?q={w}&skill={SKILLS[i]}&limit=20"
                                                    for i, w in enumerate(COMMON_WORDS)]),
                "get_by_id": await timed([f"/v1/agents/{i}" for i in ids]),
                "load_average_after_reads": os.getloadavg(),
            }
            if reads_only:
                result["rss_mib"] = rss_mb(process.pid)  # with every in-process index built (--settle)
                return result
            print(f"[{backend}] liveness", file=sys.stderr)
            result["liveness"] = await liveness(url, population, concurrency, process.pid)
            result["rss_mib"] = rss_mb(process.pid)
        started = time.perf_counter()  # the same database again: migrations (none to run) and the log tree load
        async with guildnet_process(args, port, tmp / "registry-restart.log", pinned=pinned,
                                    ready_within=ready_within) as process:
            result["startup_s"] = time.perf_counter() - started
            result["rss_mib_after_restart"] = rss_mb(process.pid)
        return result


def database_name(name: str) -> str:
    """A name both a file and a PostgreSQL database can take as they are (no quoting, no case folding)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,49}", name):
        raise argparse.ArgumentTypeError(f"{name!r}: use lower-case letters, digits and _ (it names a database)")
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2000, help="requests per latency measurement")
    parser.add_argument("--registry-cores", type=int, choices=(1, 2), default=1,
                        help="1: registry pinned to core 0, load generator to core 1; 2: neither pinned")
    parser.add_argument("--batch", type=int, default=1, metavar="N",
                        help="registrations per request: 1 sends each alone (POST /v1/agents); N > 1 sends N per "
                             "POST /v1/registrations, concurrency/N requests in flight (at least 2)")
    parser.add_argument("--verify-workers", type=int, default=0,
                        help="registry processes that check registrations (guildnet registry serve --verify-workers)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="registry processes on the one database that the registrations are spread over "
                             "(PostgreSQL only; reads and liveness go to the first)")
    parser.add_argument("--prefill", type=int, default=0,
                        help="agents written into the database directly before the registry starts (bench/prefill.py);"
                             " --agents more are then registered through the API")
    parser.add_argument("--reuse", metavar="NAME", type=database_name,
                        help="keep the database after the run and reuse it next time (SQLite: $TMPDIR/guildnet-bench-"
                             "NAME.db, PostgreSQL: database NAME); --prefill fills it only when it holds no agents, "
                             "and the agents registered through the API stay in it")
    parser.add_argument("--label", help="results go to bench/results/registry-LABEL.json (e.g. old, new)")
    parser.add_argument("--reads-only", action="store_true",
                        help="measure the reads alone (no liveness, no restart): with --agents 0 and --reuse, the "
                             "read path of a prefilled database in a few minutes")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds to wait after start-up before measuring (work a registry does then, such as "
                             "building its vector index, stays out of the registrations and reads measured)")
    args = parser.parse_args()
    if not (args.agents or args.prefill or args.reuse):
        parser.error("nothing to measure: give --agents N, --prefill N or --reuse NAME (a database with agents)")
    if args.replicas > 1 and "sqlite" in args.backends.split(","):
        parser.error("--replicas needs PostgreSQL: an SQLite file has one writer")
    pinned = args.registry_cores == 1 and shutil.which("taskset") is not None
    if pinned:
        pin(1)
    ceiling, checks = verify_ceiling(), checks_cpu_ms()
    results = [asyncio.run(run_backend(b, args.agents, args.concurrency, args.repeats, pinned=pinned,
                                       verify_workers=args.verify_workers, prefilled=args.prefill,
                                       reuse=args.reuse, replicas=args.replicas, reads_only=args.reads_only,
                                       settle=args.settle, batch=args.batch))
               for b in args.backends.split(",")]
    print(f"\nEd25519 verify ceiling (cryptography, one core): {ceiling:,.0f} verifications/s; a registration's "
          f"checks alone, back to back in one process: {checks:.3f} CPU ms")
    if not args.reads_only:
        print_writes(results, ceiling, checks)
    reads = ("search_skill", "search_text", "search_text_common", "search_hybrid", "search_meaning",
             "search_hybrid_skill", "get_by_id")
    print(f"\nreads, p50/p99 ms (registry CPU ms per request): {'backend':<11}" + "".join(f"{r:>24}" for r in reads))
    for r in results:
        print(f"{'':<48}{r['backend']:<11}" + "".join(
            f"{r[k]['p50_ms']:>9.2f}/{r[k]['p99_ms']:<7.2f}({r[k]['cpu_ms_per_request']:.2f})" for k in reads))
    print(f"load average at the end: {os.getloadavg()}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (f"registry-{args.label}.json" if args.label else "registry.json")
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "verify_per_s_one_core": ceiling, "checks_cpu_ms_per_registration": checks,
                               "results": results}, indent=2))
    print(f"wrote {out}")


def print_writes(results: list[dict[str, Any]], ceiling: float, checks: float) -> None:
    print(f"{'backend':<11}{'agents':>8}{'reg/s':>9}{'% ceil':>8}{'skill p50/p99 ms':>18}"
          f"{'text p50/p99 ms':>18}{'common-word p50/p99':>21}{'hybrid p50/p99':>17}{'get p50/p99 ms':>17}"
          f"{'failed':>8}"
          f"{'hb/s agent':>12}{'hb/s node':>11}{'RSS MiB':>9}{'start s':>9}")
    for r in results:
        print(f"{r['backend']:<11}{r['agents']:>8}{r['registrations_per_s']:>9,.0f}"
              f"{100 * r['registrations_per_s'] / ceiling:>7.0f}%"
              f"{r['search_skill']['p50_ms']:>10.2f}/{r['search_skill']['p99_ms']:<7.2f}"
              f"{r['search_text']['p50_ms']:>10.2f}/{r['search_text']['p99_ms']:<7.2f}"
              f"{r['search_text_common']['p50_ms']:>13.2f}/{r['search_text_common']['p99_ms']:<7.2f}"
              f"{r['search_hybrid']['p50_ms']:>9.2f}/{r['search_hybrid']['p99_ms']:<7.2f}"
              f"{r['get_by_id']['p50_ms']:>9.2f}/{r['get_by_id']['p99_ms']:<7.2f}{r['failed_registrations']:>8}"
              f"{r['liveness']['per_agent']['updates_per_s']:>12,.0f}"
              f"{(r['liveness']['node_level'] or {}).get('updates_per_s', 0):>11,.0f}"
              f"{r['rss_mib']:>9.0f}{r['startup_s']:>9.1f}")
    print(f"\nCPU ms per registration ({results[0]['registrations_per_request']} per request): backend     registry "
          "(with verifier workers; main process)  PostgreSQL  load generator   us/node-level liveness update")
    for r in results:
        print(f"{'':<24}{r['backend']:<11}{r['registration_cpu_ms']:>14.2f}{r['registration_cpu_ms_main_process']:>14.2f}"
              f"{r['registration_cpu_ms_database']:>26.2f}{r['registration_cpu_ms_load_generator']:>16.2f}"
              f"{(r['liveness']['node_level'] or {}).get('registry_cpu_us_per_update', 0):>32.1f}")
    print(f"\nfloor: a registration's checks ({checks:.3f} ms) and the database's CPU for its rows cap two cores at")
    for r in results:
        if not r["registration_cpu_ms_database"]:
            print(f"{'':<24}{r['backend']:<11}  (its database works inside the registry process: not separable)")
            continue
        floor = checks + r["registration_cpu_ms_database"]
        print(f"{'':<24}{r['backend']:<11}{2000 / floor:>9,.0f} registrations/s ({floor:.3f} ms each, with nothing "
              "else: no HTTP, event loop, writer or index)")


if __name__ == "__main__":
    main()
