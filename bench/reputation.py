"""Reputation recompute benchmark: full recompute over 1M receipts between 100k agents.

The graph: agents grouped in organisations (20 per organisation by default), 10 pre-trusted organisations, 3
skills per agent out of 50, per-agent success rates between 0.6 and 0.99, receipts spread over the last year;
5 % of the organisations are a sybil collective that only rates itself. Two shapes of the organisation graph:

* ``partners``: each organisation delegates to 20 partner organisations (how delegation looks in practice);
* ``random``: every receipt goes to a random organisation (~1M distinct organisation pairs: the worst case
  for the EigenTrust step).

Reported: the full ``compute`` (aggregation, judges' history, EigenTrust, beta scores) wall time beside the
previous model's (bench/reputation_v1.py) on the same receipts, the EigenTrust step alone, iterations, the
share of organisations whose word counts in full, peak RSS, the on-demand cost of one exact 95 % interval, and
what the registry adds per failure receipt to learn its kind from the log (decoding one logged signed write).

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

from reputation_v1 import compute as compute_v1

from guildnet.protocols import receipts, signed_write
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.reputation import DAY, Params, Rating, compute, eigentrust
from guildnet.protocols.transparency import leaf_data
from guildnet.registry.trust import failure_kind

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


def failure_leaf() -> str:
    """A logged failure receipt as the registry stores it (leaf data: the caller's signed write)."""
    caller, callee = SigningKey.generate(), SigningKey.generate()
    claim = receipts.TaskClaim(task_id="t", caller=caller.did, callee=callee.did, skill="s", input_sha256="0" * 64,
                               output_sha256="0" * 64, started_at=0, ended_at=1, status="completed")
    token = receipts.caller_countersign(receipts.callee_sign(claim, callee), caller, "failure", reason="wrong")
    write = signed_write.make(caller, {"action": "receipt", "receipt": token})
    return leaf_data("receipt", callee.did, write).decode()


def decode_us(n: int = 20_000) -> float:
    leaf = failure_leaf()
    assert failure_kind(leaf) == (True, True)
    started = time.perf_counter()
    for _ in range(n):
        failure_kind(leaf)
    return (time.perf_counter() - started) / n * 1e6


def run(agents: int, receipts: int, per_org: int, shape: str) -> dict[str, Any]:
    started = time.perf_counter()
    ratings, seed = generate(agents, receipts, per_org, shape)
    generated = time.perf_counter() - started
    params = Params(now=NOW)
    started = time.perf_counter()
    rep = compute(ratings, seed, params)
    total = time.perf_counter() - started
    started = time.perf_counter()
    compute_v1(ratings, seed, NOW)
    total_v1 = time.perf_counter() - started
    failures = sum(not r.success for r in ratings)
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
        "generate_s": round(generated, 2), "compute_s": round(total, 2), "compute_v1_s": round(total_v1, 2),
        "eigentrust_s": round(trust_time, 2), "iterations": iterations, "converged": converged,
        "full_history_orgs": round(sum(v == 1.0 for v in rep.history.values()) / len(rep.history), 3),
        "failures": failures,
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
    per_failure = decode_us()
    for row in rows:
        row["failure_decode_us"] = round(per_failure, 1)
        row["failure_decode_s"] = round(per_failure * row["failures"] / 1e6, 2)
    columns = ["shape", "agents", "organisations", "receipts", "org_pairs", "compute_s", "compute_v1_s",
               "eigentrust_s", "iterations", "full_history_orgs", "failure_decode_s", "interval_us", "peak_rss_mb"]
    print(" | ".join(f"{c:>13}" for c in columns))
    for row in rows:
        print(" | ".join(f"{row[c]!s:>13}" for c in columns))
    RESULTS.mkdir(exist_ok=True)
    report = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "processor": platform.processor() or platform.machine()},
              "note": "full recompute, one process, pure Python (no numpy); compute_v1_s is the previous model "
                      "on the same receipts; failure_decode_s = failures x the measured cost of decoding one logged "
                      "failure (what the registry's worker adds); peak RSS includes the generated receipts and "
                      "both models, and is cumulative across shapes",
              "runs": rows}
    (RESULTS / "reputation.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
