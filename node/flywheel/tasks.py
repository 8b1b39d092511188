"""Process data as the flywheel reads it: rows of the scrubbed ``process_calls`` table, grouped into tasks.

A *task* is the set of rows sharing a trace id (an inbound call, the model calls it caused, a delegation).
Its outcome is the inbound row's outcome when there is one, else "some row was accepted"; its cost is the
sum of its rows; its latency the wall-clock span of its rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from .process_log import ProcessCall


@dataclass(frozen=True, slots=True)
class Row:
    at: datetime
    direction: str
    transport: str
    skill: str
    agent: str
    model: str | None
    input: Any
    output: Any
    tokens_in: int
    tokens_out: int
    cost: float
    latency_ms: float
    outcome: str
    escalated: bool
    trace_id: str | None


@dataclass(slots=True)
class Task:
    key: str
    skill: str
    rows: list[Row]

    @property
    def ok(self) -> bool:
        inbound = [r for r in self.rows if r.direction == "in"]
        return any(r.outcome == "ok" for r in (inbound or self.rows))

    @property
    def escalated(self) -> bool:
        return any(r.escalated for r in self.rows)

    @property
    def cost(self) -> float:
        return math.fsum(r.cost for r in self.rows)

    @property
    def latency_ms(self) -> float:
        start = min(r.at for r in self.rows)
        end = max(r.at.timestamp() * 1000.0 + r.latency_ms for r in self.rows)
        return end - start.timestamp() * 1000.0

    @property
    def arguments(self) -> Any:
        for row in self.rows:
            if isinstance(row.input, dict) and "arguments" in row.input:
                return row.input["arguments"]
        return self.rows[0].input


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def load_rows(engine: AsyncEngine, *, since: datetime | None = None, until: datetime | None = None) -> list[Row]:
    """Rows with ``since <= at < until`` (either bound optional), oldest first."""
    query = select(ProcessCall).order_by(ProcessCall.at, ProcessCall.id)
    if since is not None:
        query = query.where(ProcessCall.at >= _utc(since))
    if until is not None:
        query = query.where(ProcessCall.at < _utc(until))
    async with engine.connect() as connection:
        result = await connection.execute(query)
        return [Row(at=_utc(r.at), direction=r.direction, transport=r.transport, skill=r.skill, agent=r.agent,
                    model=r.model, input=r.input, output=r.output, tokens_in=r.tokens_in, tokens_out=r.tokens_out,
                    cost=r.cost, latency_ms=r.latency_ms, outcome=r.outcome, escalated=r.escalated,
                    trace_id=r.trace_id) for r in result]


def group_tasks(rows: Iterable[Row]) -> list[Task]:
    tasks: dict[str, Task] = {}
    for index, row in enumerate(rows):
        key = row.trace_id or f"row-{index}"
        task = tasks.setdefault(key, Task(key, row.skill, []))
        task.rows.append(row)
    return list(tasks.values())
