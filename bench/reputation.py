"""Reputation recompute benchmark: full recompute over 1M receipts between 100k agents.

The graph: agents grouped in organisations (20 per organisation by default), 10 pre-trusted organisations, 3
skills per agent out of 50, per-agent success rates between 0.6 and 0.99, receipts spread over the last year;
5 % of the organisations are a sybil collective that only rates itself. Two shapes of the organisation graph:

* ``partners``: each organisation delegates to 20 partner organisations (how delegation looks in practice);
* ``random``: every receipt goes to a random organisation (~1M distinct organisation pairs: the worst case
  for the EigenTrust step).

Reported: the full ``compute`` (aggregation, EigenTrust, beta scores) wall time, the EigenTrust step alone,
iterations, peak RSS, and the on-demand cost of one exact 95 % interval.

    python bench/reputation.py [--agents 100000] [--receipts 1000000] [--shapes partners,random]

Prints a table and writes bench/results/reputation.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from guildnet.protocols.reputation import DAY, Params, Rating, compute, eigentrust

RESULTS = Path(__file__).with_name("results")
NOW = 1_800_000_000.0


def generate(agents: int, receipts: int, per_org: int, shape: str, seed: int = 1) -> tuple[list[Rating], list[str]]:
    rng = random.Random(seed)
    orgs = [f"org{i}" for i in range(max(2, agents // per_org))]
    sybil_start = len(orgs) - len(orgs) // 20
    members = {org: [f"{org}/agent{j}" for j in range(per_org)] for org in orgs}
    skills = {a: rng.sample(range(50), 3) for org in orgs for a in members[org]}
    quality = {a: rng.uniform(0.6, 0.99) for a in skills}
    honest, sybils = orgs[:sybil_start], set(orgs[sybil_start:])
    partners = {org: rng.sample(honest, 20) for org in honest}
    for org in orgs[sybil_start:]:
        partners[org] = rng.sample(orgs[sybil_start:], min(20, len(orgs) - sybil_start))
    out = []
    for _ in range(receipts):
        rater = rng.choice(orgs)
        is_sybil = rater in sybils
        if shape == "random" and not is_sybil:
            ratee = rng.choice(honest)
        else:
            ratee = rng.choice(partners[rater])
        callee = rng.choice(members[ratee])
        success = True if is_sybil else rng.random() < quality[callee]
        out.append(Rating(rng.choice(members[rater]), rater, callee, ratee, f"skill{rng.choice(skills[callee])}",
                          success, NOW - rng.random() * 365 * DAY))
    return out, orgs[:10]


def local_trust(ratings: list[Rating], half_life: float) -> dict[tuple[str, str], float]:
    """The same s_ij ``compute`` builds, so the EigenTrust step can be timed on its own."""
    local: dict[tuple[str, str], float] = {}
    for r in ratings:
        if r.rater_org != r.ratee_org:
            d = 0.5 ** ((NOW - r.time) / half_life)
            pair = (r.rater_org, r.ratee_org)
            local[pair] = local.get(pair, 0.0) + (d if r.success else -d)
    return local


def run(agents: int, receipts: int, per_org: int, shape: str) -> dict[str, Any]:
    started = time.perf_counter()
    ratings, seed = generate(agents, receipts, per_org, shape)
    generated = time.perf_counter() - started
    params = Params(now=NOW)
    started = time.perf_counter()
    rep = compute(ratings, seed, params)
    total = time.perf_counter() - started
    local = local_trust(ratings, params.half_life)
    started = time.perf_counter()
    _, iterations, converged = eigentrust(local, seed, params.a, tolerance=params.tolerance)
    trust_time = time.perf_counter() - started
    sample = [s for skills in list(rep.scores.values())[:1000] for s in skills.values()][:1000]
    started = time.perf_counter()
    for score in sample:
        score.interval()
    interval_us = (time.perf_counter() - started) / len(sample) * 1e6
    return {
        "shape": shape, "agents": agents, "organisations": max(2, agents // per_org), "receipts": receipts,
        "org_pairs": len(local), "scored_agent_skills": sum(len(v) for v in rep.scores.values()),
        "generate_s": round(generated, 2), "compute_s": round(total, 2), "eigentrust_s": round(trust_time, 2),
        "iterations": iterations, "converged": converged,
        "interval_us": round(interval_us, 1),
        "median_evidence": round(statistics.median(s.evidence for s in sample), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--receipts", type=int, default=1_000_000)
    parser.add_argument("--per-org", type=int, default=20)
    parser.add_argument("--shapes", default="partners,random")
    args = parser.parse_args()
    rows = [run(args.agents, args.receipts, args.per_org, shape) for shape in args.shapes.split(",")]
    columns = ["shape", "agents", "organisations", "receipts", "org_pairs", "compute_s", "eigentrust_s",
               "iterations", "interval_us", "peak_rss_mb"]
    print(" | ".join(f"{c:>13}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c]!s:>13}" for c in columns))
    RESULTS.mkdir(exist_ok=True)
    report = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "processor": platform.processor() or platform.machine()},
              "note": "full recompute, one process, pure Python (no numpy); peak RSS includes the generated "
                      "receipts and is cumulative across shapes",
              "runs": rows}
    (RESULTS / "reputation.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
