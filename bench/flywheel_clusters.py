"""How well the flywheel's clusters follow real task categories, on process data of bench tickets.

Reads the process data that ``bench/slm_routing.py --small smollm2 --process-db URL`` recorded (``--db``), or
records ``--tickets N`` bench tickets into a fresh process log itself (inbound calls, scrubbed as a node stores
them; no model needed), clusters it with ``guildnet.node.flywheel`` for several seeds on each kind of vectors
(TF-IDF: wording; embedding: meaning, the bundled static model), and scores each clustering against the
tickets' true categories (bench/tickets.py; a ticket's number identifies it): purity = share of tasks in their
cluster's majority category (1.0 = every cluster is one category; four equal categories give 0.25 by chance).

    python bench/flywheel_clusters.py --tickets 400 [--seeds 0 1 2] [--vectors tfidf embedding]
    python bench/flywheel_clusters.py --db sqlite:///tickets.db

Prints a table and writes bench/results/flywheel_clusters.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tickets import tickets

from guildnet.node import flywheel
from guildnet.node.config import resolve_db_url
from guildnet.node.flywheel.process_log import CallRecord, ProcessLog
from guildnet.node.flywheel.vectorisers import VECTOR_CHOICES, vectoriser
from guildnet.node.pii import Scrubber

RESULTS = Path(__file__).with_name("results")
NUMBER = re.compile(r"\(ticket (\d+)\)")


def purity(report: flywheel.ClusterReport, labels: dict[str, str]) -> float:
    members: dict[int, Counter[str]] = defaultdict(Counter)
    for key, cluster in report.labels.items():
        members[cluster][labels[key]] += 1
    return sum(max(c.values()) for c in members.values()) / max(1, len(labels))


async def load_tasks(url: str, count: int | None, ticket_seed: int) -> list[flywheel.Task]:
    """The tasks in the process data at ``url``, after recording ``count`` bench tickets there if given."""
    log = await ProcessLog.open(url, Scrubber())
    try:
        if count:
            await log.record_many(CallRecord("in", "a2a", "ticket.classify", "bench", "ok", input={
                "arguments": {"text": ticket.text}}, trace_id=f"ticket-{n}")
                for n, ticket in enumerate(tickets(count, seed=ticket_seed), 1))
        return flywheel.group_tasks(await flywheel.load_rows(log.engine))
    finally:
        await log.close()


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--db", help="process data written by bench/slm_routing.py --process-db")
    source.add_argument("--tickets", type=int, help="record this many bench tickets into a fresh process log")
    parser.add_argument("--ticket-seed", type=int, default=1, help="the --seed slm_routing.py ran with")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="clustering seeds")
    parser.add_argument("--vectors", nargs="+", choices=VECTOR_CHOICES[1:], default=list(VECTOR_CHOICES[1:]))
    parser.add_argument("--out", type=Path, default=RESULTS / "flywheel_clusters.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flywheel-clusters-") as tmp:
        url = resolve_db_url(args.db or f"sqlite:///{Path(tmp) / 'tickets.db'}", Path.cwd())
        tasks = await load_tasks(url, args.tickets, args.ticket_seed)
    numbers = {t.key: int(m.group(1)) for t in tasks if (m := NUMBER.search(flywheel.task_text(t)))}
    if not numbers:
        sys.exit(f"no bench tickets in {args.db}: record them with bench/slm_routing.py --small smollm2 --process-db")
    truth = tickets(max(numbers.values()), seed=args.ticket_seed)
    labels = {key: truth[number - 1].label for key, number in numbers.items()}
    tasks = [t for t in tasks if t.key in labels]
    runs: list[dict[str, Any]] = []
    for choice in args.vectors:
        vectors_from = vectoriser(choice)
        for seed in args.seeds:
            started = time.perf_counter()
            report = flywheel.cluster_tasks(tasks, seed=seed, vectors_from=vectors_from)
            runs.append({"vectors": choice, "model": report.vectors, "seed": seed, "tasks": len(tasks), "k": report.k,
                         "seconds": time.perf_counter() - started, "silhouette": report.silhouette_by_k.get(report.k),
                         "purity": purity(report, labels), "candidates": sum(c.candidate for c in report.clusters),
                         "mean_cohesion": sum(c.cohesion * c.size for c in report.clusters) / len(tasks)})
    print(f"{len(tasks)} tasks, {len(set(labels.values()))} true categories")
    print(f"{'vectors':<10} {'seed':>4} {'k':>3} {'silhouette':>10} {'purity':>7} {'cohesion':>8} {'candidates':>10} "
          f"{'seconds':>8}")
    for run in runs:
        print(f"{run['vectors']:<10} {run['seed']:>4} {run['k']:>3} {run['silhouette']:>10.3f} {run['purity']:>7.3f} "
              f"{run['mean_cohesion']:>8.2f} {run['candidates']:>10} {run['seconds']:>8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"db": args.db, "tickets": args.tickets, "ticket_seed": args.ticket_seed,
                                    "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
