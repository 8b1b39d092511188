"""PostgreSQL's own CPU per text-search page: the registry's exact statement (as ``build_search`` makes it, run as
the registry's reads run it: asyncpg, custom plans) on one connection per database, the databases interleaved in
rounds of 50 pages so they share the machine's load; the CPU is the backend process's (``/proc``), which leaves
out the time it waited for a core. Also each database's GIN pending list (``pgstattuple``, created if missing) and
one ``EXPLAIN ANALYZE``.

    python bench/search_pg_cpu.py DB[,DB...] [--pages 600] [--words rare|common]

DB names a database on the bench's PostgreSQL server (a registry database, e.g. one ``bench/registry.py --reuse``
kept); on a shared machine compare copies (``CREATE DATABASE b TEMPLATE a``) side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import asyncpg
from processes import PG_ADMIN

from guildnet.registry.store.reads import positional
from guildnet.registry.store.search import build_search

ROUND = 50
RARE = [f"w{i:04d}" for i in range(100)]
"""bench/registry.py's rare words (each in ~0.6% of its agents' descriptions) and common ones (12.5% each)."""
COMMON = ["translate", "invoice", "summarise", "classify", "extract", "support", "legal", "finance"]


def backend_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(databases: list[str], pages: int, words: list[str]) -> None:
    query = build_search(postgres=True, now=time.time(), skill=None, q="x", org=None, live=None, limit=20,
                         cursor=None)
    assert query is not None
    sql, names = positional(query.statement.text)

    def args(word: str) -> list[Any]:
        return [{**query.params, "q": word}[name] for name in names]

    base = PG_ADMIN.rsplit("/", 1)[0]
    conns: dict[str, tuple[asyncpg.Connection, int]] = {}
    for db in databases:
        conn = await asyncpg.connect(f"{base}/{db}", server_settings={"plan_cache_mode": "force_custom_plan"})
        conns[db] = (conn, await conn.fetchval("SELECT pg_backend_pid()"))
        for word in words:  # warm-up
            await conn.fetch(sql, *args(word))
    cpu = dict.fromkeys(databases, 0.0)
    walls: dict[str, list[float]] = {db: [] for db in databases}
    for start in range(0, pages, ROUND):
        for db in databases:
            conn, pid = conns[db]
            before = backend_cpu(pid)
            for i in range(start, start + ROUND):
                started = time.perf_counter()
                await conn.fetch(sql, *args(words[i % len(words)]))
                walls[db].append((time.perf_counter() - started) * 1000)
            cpu[db] += backend_cpu(pid) - before
    for db in databases:
        conn, _ = conns[db]
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        pending = await conn.fetchval("SELECT pending_pages FROM pgstatginindex('ix_agents_search')")
        plan = [r[0] for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args(words[3]))]
        times = " ".join(line for line in plan if line.startswith(("Planning Time", "Execution Time")))
        jit = "JIT" if any(line.startswith("JIT") for line in plan) else "no JIT"
        wall = sorted(walls[db])
        n = len(wall)
        print(f"{db:<14} PostgreSQL CPU {cpu[db] * 1000 / n:.2f} ms/page, wall p50 {wall[n // 2]:.2f} "
              f"p99 {wall[min(n - 1, n * 99 // 100)]:.2f} ms, pending list {pending} pages; {times}; {jit}")
        await conn.close()
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("databases")
    parser.add_argument("--pages", type=int, default=600)
    parser.add_argument("--words", choices=("rare", "common"), default="rare",
                        help="rare: 100 words each ~0.6%% of agents use; common: 8 words each 12.5%% use")
    options = parser.parse_args()
    asyncio.run(main(options.databases.split(","), options.pages,
                     RARE if options.words == "rare" else COMMON))
