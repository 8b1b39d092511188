"""The flywheel's measurement: completion, escalation, cost per success and latency, per skill and per model.

Per-skill figures are per task (see :mod:`.tasks`); per-model figures are per model call.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .tasks import Row, group_tasks, load_rows


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the value below which ``q`` percent of the observations fall)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Stats:
    name: str
    volume: int
    completion_rate: float
    escalation_rate: float
    cost: float
    cost_per_success: float | None
    p50_ms: float | None
    p95_ms: float | None


def _stats(name: str, outcomes: Sequence[tuple[bool, bool, float, float]]) -> Stats:
    """``outcomes``: (ok, escalated, cost, latency_ms) per task or call."""
    volume = len(outcomes)
    successes = sum(1 for ok, *_ in outcomes if ok)
    cost = math.fsum(c for _, _, c, _ in outcomes)
    latencies = [lat for *_, lat in outcomes]
    return Stats(name=name, volume=volume, completion_rate=successes / volume if volume else 0.0,
                 escalation_rate=sum(1 for _, esc, _, _ in outcomes if esc) / volume if volume else 0.0,
                 cost=cost, cost_per_success=cost / successes if successes else None,
                 p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95))


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime | None
    until: datetime | None
    by_skill: list[Stats]
    by_model: list[Stats]

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "by_skill": [asdict(s) for s in self.by_skill], "by_model": [asdict(s) for s in self.by_model]}

    def to_table(self) -> str:
        lines: list[str] = []
        for title, stats in (("skill", self.by_skill), ("model", self.by_model)):
            lines.append(f"{title:<28} {'volume':>7} {'complete':>9} {'escalate':>9} {'cost/success':>13} "
                         f"{'p50 ms':>9} {'p95 ms':>9}")
            for s in stats:
                lines.append(f"{s.name[:28]:<28} {s.volume:>7} {s.completion_rate:>9.1%} {s.escalation_rate:>9.1%} "
                             f"{_num(s.cost_per_success, '.6f'):>13} {_num(s.p50_ms, '.1f'):>9} "
                             f"{_num(s.p95_ms, '.1f'):>9}")
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def build_report(rows: Sequence[Row], *, since: datetime | None = None, until: datetime | None = None) -> Report:
    per_skill: dict[str, list[tuple[bool, bool, float, float]]] = defaultdict(list)
    for task in group_tasks(rows):
        per_skill[task.skill].append((task.ok, task.escalated, task.cost, task.latency_ms))
    per_model: dict[str, list[tuple[bool, bool, float, float]]] = defaultdict(list)
    for row in rows:
        if row.direction == "model":
            per_model[row.model or "?"].append((row.outcome == "ok", row.escalated, row.cost, row.latency_ms))
    return Report(since, until, [_stats(k, v) for k, v in sorted(per_skill.items())],
                  [_stats(k, v) for k, v in sorted(per_model.items())])


async def report(engine: AsyncEngine, *, since: datetime | None = None, until: datetime | None = None) -> Report:
    """Completion rate, escalation rate, cost per successful task, p50/p95 latency and volume, per skill
    (per task) and per model (per call), over ``[since, until)``."""
    return build_report(await load_rows(engine, since=since, until=until), since=since, until=until)
