"""Fill a fresh registry database with many agents directly (not through the API), for benchmarks at a size
whose signed registrations would take hours to send: the rows, skills, text index and log leaves look like
those a registration writes (same shape of facts, words and skills as bench/registry.py's agents), but their
``jws`` is not a real signature and their log leaves are not signed writes. What is measured at that size is the
registry's work on top of them: registrations, heartbeats, searches, start-up.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import inspect, text

from guildnet.embedding import default_embedder
from guildnet.protocols.merkle import leaf_hash
from guildnet.registry.db import create_engine, migrate
from guildnet.registry.meaning import STORED_DTYPE, agent_text

CHUNK = 20_000


def agents(count: int, org_dids: Sequence[str], skills: Sequence[str], words: Sequence[str],
           common: Sequence[str], seed: int = 11) -> Iterator[dict[str, Any]]:
    """``count`` agents spread over ``org_dids`` (in turn), as the row values a registration stores."""
    rng = random.Random(seed)
    now = time.time()
    for i in range(count):
        agent_id = f"did:key:zPrefill{i:09d}"
        org = org_dids[i % len(org_dids)]
        chosen = rng.sample(list(skills), rng.randint(1, 3))
        tags = [rng.choice(words) for _ in chosen]
        description = " ".join([*rng.sample(list(words), 12), rng.choice(common)])
        org_name = f"org-{i % len(org_dids)}"
        facts = {"id": agent_id, "name": f"prefill-{i}", "version": 1, "ttl_seconds": 3600,
                 "description": description, "organisation": {"id": org, "name": org_name},
                 "endpoints": {"a2a": f"http://127.0.0.1:9/agents/prefill-{i}/a2a"},
                 "skills": [{"id": s, "name": s, "tags": [t], "input_schema": {"type": "object"},
                             "output_schema": {"type": "object"}} for s, t in zip(chosen, tags, strict=True)]}
        leaf = json.dumps({"agent": agent_id, "jws": f"prefill.{i}", "kind": "register"}, separators=(",", ":"))
        yield {"pk": i + 1, "id": agent_id, "current_key": agent_id, "name": f"prefill-{i}", "org_id": org,
               "org_name": org_name, "description": description,
               "tags": " ".join(sorted(set(tags) | set(chosen))), "version": 1,
               "facts": json.dumps(facts, separators=(",", ":")), "jws": f"prefill.{i}", "ttl_seconds": 3600,
               "registered_at": now, "updated_at": now, "last_seen": now, "expires_at": now + 3600, "live": True,
               "revoked": False, "log_index": i, "key_events": "[]", "skills": chosen, "leaf": leaf,
               "leaf_hash": leaf_hash(leaf.encode())}


_AGENT_COLUMNS = ("pk", "id", "current_key", "name", "org_id", "org_name", "description", "tags", "version", "facts",
                  "jws", "registered_at", "updated_at", "live", "revoked", "log_index", "key_events")
_LIVENESS_COLUMNS = ("pk", "ttl_seconds", "last_seen", "expires_at")


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield _embedded(chunk)
            chunk = []
    if chunk:
        yield _embedded(chunk)


def _embedded(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chunk with each agent's vector for search by meaning, as a registration stores it (in one batch)."""
    texts = [agent_text(json.loads(row["facts"])) for row in chunk]
    vectors = default_embedder().embed(texts).astype(STORED_DTYPE)
    for row, vector in zip(chunk, vectors, strict=True):
        row["embedding"] = vector.tobytes()
    return chunk


async def prefilled_agents(db_url: str) -> tuple[int, int]:
    """How many prefilled agents ``db_url`` holds already, and how many agents in all ((0, 0) for a new, empty
    database), to reuse a database a previous run filled."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            if not await conn.run_sync(lambda sync: inspect(sync).has_table("agents")):
                return 0, 0
            prefilled = await conn.scalar(text("SELECT count(*) FROM agents WHERE id LIKE 'did:key:zPrefill%'"))
            total = await conn.scalar(text("SELECT count(*) FROM agents"))
            return int(prefilled or 0), int(total or 0)
    finally:
        await engine.dispose()


async def keep_live(db_url: str) -> None:
    """Mark every agent heard from now, as its node's heartbeats would: a reused database's prefilled agents
    expire an hour after the prefill (their TTL), and a registry started later would spend the run announcing
    a million agents stale (and the node-level heartbeats announcing them live again)."""
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            now = time.time()
            await conn.execute(text("UPDATE agent_liveness SET last_seen = :now, "
                                    "expires_at = CAST(:now AS FLOAT) + ttl_seconds"), {"now": now})
            await conn.execute(text("UPDATE agents SET live = true WHERE NOT live AND NOT revoked"))
            if conn.dialect.name == "postgresql":
                # every row just moved: without fresh statistics the sweep's plan hash-joins both tables each second
                await conn.execute(text("ANALYZE agent_liveness"))
    finally:
        await engine.dispose()


async def prefill(db_url: str, rows: Iterator[dict[str, Any]], count: int) -> float:
    """Migrate ``db_url`` and write ``rows`` into it; returns the seconds it took."""
    started = time.perf_counter()
    engine = create_engine(db_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    done = 0
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split(":///", 1)[1])
        conn.execute("PRAGMA synchronous=OFF")  # a bench's scratch file: a crash here means a new run anyway
        conn.execute("PRAGMA cache_size=-1000000")
        placeholders = ", ".join("?" for _ in _AGENT_COLUMNS)
        for chunk in _chunks(rows):
            conn.executemany(f"INSERT INTO agents ({', '.join(_AGENT_COLUMNS)}) VALUES ({placeholders})",
                             [tuple(r[c] for c in _AGENT_COLUMNS) for r in chunk])
            conn.executemany("INSERT INTO agent_liveness (agent_pk, ttl_seconds, last_seen, expires_at) "
                             "VALUES (?, ?, ?, ?)", [tuple(r[c] for c in _LIVENESS_COLUMNS) for r in chunk])
            conn.executemany("INSERT INTO agent_skills (skill_id, agent_pk) VALUES (?, ?)",
                             [(s, r["pk"]) for r in chunk for s in r["skills"]])
            conn.executemany("INSERT INTO agent_vectors (agent_pk, embedding) VALUES (?, ?)",
                             [(r["pk"], r["embedding"]) for r in chunk])
            conn.executemany("INSERT INTO agents_fts (rowid, name, tags, description) VALUES (?, ?, ?, ?)",
                             [(r["pk"], r["name"], r["tags"], r["description"]) for r in chunk])
            conn.executemany("INSERT INTO log_entries (idx, kind, agent_id, data, leaf_hash) VALUES (?, ?, ?, ?, ?)",
                             [(r["log_index"], "register", r["id"], r["leaf"], r["leaf_hash"]) for r in chunk])
            conn.commit()
            done += len(chunk)
            print(f"  prefilled {done:>9,}/{count:,}", file=sys.stderr)
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            for chunk in _chunks(rows):
                await conn.copy_records_to_table("agents", columns=_AGENT_COLUMNS,
                                                 records=[tuple(r[c] for c in _AGENT_COLUMNS) for r in chunk])
                await conn.copy_records_to_table("agent_liveness", columns=("agent_pk", *_LIVENESS_COLUMNS[1:]),
                                                 records=[tuple(r[c] for c in _LIVENESS_COLUMNS) for r in chunk])
                await conn.copy_records_to_table("agent_skills", columns=("skill_id", "agent_pk"),
                                                 records=[(s, r["pk"]) for r in chunk for s in r["skills"]])
                await conn.copy_records_to_table("agent_vectors", columns=("agent_pk", "embedding"),
                                                 records=[(r["pk"], r["embedding"]) for r in chunk])
                await conn.copy_records_to_table("log_entries", columns=("idx", "kind", "agent_id", "data",
                                                                         "leaf_hash"),
                                                 records=[(r["log_index"], "register", r["id"], r["leaf"],
                                                           r["leaf_hash"]) for r in chunk])
                done += len(chunk)
                print(f"  prefilled {done:>9,}/{count:,}", file=sys.stderr)
            # the API's inserts take pk from the sequence: move it past the prefilled rows
            await conn.execute("SELECT setval(pg_get_serial_sequence('agents', 'pk'), $1)", count)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
    return time.perf_counter() - started
