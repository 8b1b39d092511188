"""How well the flywheel's clusters follow real task categories, on process data of bench tickets.

Reads the process data that ``bench/slm_routing.py --small smollm2 --process-db URL`` recorded, clusters it
with ``guildnet.node.flywheel`` for several seeds, and scores each clustering against the tickets' true
categories (bench/tickets.py; a ticket's number identifies it): purity = share of tasks in their cluster's
majority category (1.0 = every cluster is one category; four equal categories give 0.25 by chance).

    python bench/flywheel_clusters.py --db sqlite:///tickets.db [--seeds 0 1 2]

Prints a table and writes bench/results/flywheel_clusters.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tickets import tickets

from guildnet.node import flywheel
from guildnet.node.config import resolve_db_url
from guildnet.node.flywheel.process_log import create_engine

RESULTS = Path(__file__).with_name("results")
NUMBER = re.compile(r"\(ticket (\d+)\)")


def purity(report: flywheel.ClusterReport, labels: dict[str, str]) -> float:
    members: dict[int, Counter[str]] = defaultdict(Counter)
    for key, cluster in report.labels.items():
        members[cluster][labels[key]] += 1
    return sum(max(c.values()) for c in members.values()) / max(1, len(labels))


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", required=True, help="process data written by bench/slm_routing.py --process-db")
    parser.add_argument("--ticket-seed", type=int, default=1, help="the --seed slm_routing.py ran with")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="clustering seeds")
    args = parser.parse_args(argv)
    engine = create_engine(resolve_db_url(args.db, Path.cwd()))
    tasks = flywheel.group_tasks(await flywheel.load_rows(engine))
    await engine.dispose()
    numbers = {t.key: int(m.group(1)) for t in tasks if (m := NUMBER.search(flywheel.task_text(t)))}
    if not numbers:
        sys.exit(f"no bench tickets in {args.db}: record them with bench/slm_routing.py --small smollm2 --process-db")
    truth = tickets(max(numbers.values()), seed=args.ticket_seed)
    labels = {key: truth[number - 1].label for key, number in numbers.items()}
    tasks = [t for t in tasks if t.key in labels]
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        started = time.perf_counter()
        report = flywheel.cluster_tasks(tasks, seed=seed)
        runs.append({"seed": seed, "tasks": len(tasks), "k": report.k, "seconds": time.perf_counter() - started,
                     "silhouette": report.silhouette_by_k.get(report.k), "purity": purity(report, labels),
                     "candidates": sum(c.candidate for c in report.clusters)})
    print(f"{len(tasks)} tasks, {len(set(labels.values()))} true categories")
    print(f"{'seed':>4} {'k':>3} {'silhouette':>10} {'purity':>7} {'candidates':>10} {'seconds':>8}")
    for run in runs:
        print(f"{run['seed']:>4} {run['k']:>3} {run['silhouette']:>10.3f} {run['purity']:>7.3f} "
              f"{run['candidates']:>10} {run['seconds']:>8.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "flywheel_clusters.json").write_text(json.dumps({"db": args.db, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
