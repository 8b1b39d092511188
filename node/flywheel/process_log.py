"""The process-data store: one row per call in or out of a node, and per model call.

This is what the flywheel learns from (what tasks arrive, which model answered, at what cost, whether it
had to escalate). Every free-text field passes through :class:`~guildnet.node.pii.Scrubber` inside
:meth:`ProcessLog.record` itself, so no caller can write raw PII by forgetting a step.

SQLite (WAL) by default, PostgreSQL by URL (``postgresql+asyncpg://``), in the node's one database; the table
comes from the node's migrations (:mod:`guildnet.node.db`).

A serving node records in the background (``pending`` > 0): scrubbing a text for names takes up to ~15 ms of
CPU (a short text with capitals, all name models installed: at most ~65 records a second), and no caller should
wait for it. Records are checked when handed over, queued, scrubbed off the event loop and written in batches.
The queue is bounded: under a load the scrubber cannot keep up with, records that find it full are dropped and
counted (``dropped``, the node's ``guildnet_node_process_records_dropped_total``), so serving never slows down
to the scrubber's pace; process data becomes a sample. ``close`` spends at most ``drain_seconds`` writing what
is queued and counts the rest as dropped; while the name models are still loading it drops the queue at once, since
draining would only wait out their loading. Process data is never acknowledged to anyone: a crash loses at most
what was queued.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..db import create_engine as create_db_engine
from ..db import migrate
from ..pii import Scrubber

log = logging.getLogger(__name__)
_BATCH = 256
_BATCH_WITH_NAMES = 16  # ~15 ms of name detection a record: a batch stays well under a second
_BATCH_WITH_NAMES = 16
"""Name detection costs up to ~15 ms a record, and a batch scrubbed in a thread cannot be stopped: at 16 records
a batch still in flight when ``close`` gives up holds the process's exit for a quarter of a second, not seconds."""

Direction = Literal["in", "out", "model"]
Transport = Literal["a2a", "mcp", "delegation", "model"]
Outcome = Literal["ok", "rejected", "error"]
"""``ok``: the result was accepted. ``rejected``: an answer came back but was not accepted (invalid for
the schema or low confidence), so the task escalated. ``error``: no answer (timeout, HTTP error, refusal)."""

DIRECTIONS: frozenset[str] = frozenset({"in", "out", "model"})
TRANSPORTS: frozenset[str] = frozenset({"a2a", "mcp", "delegation", "model"})
OUTCOMES: frozenset[str] = frozenset({"ok", "rejected", "error"})


class Base(DeclarativeBase):
    pass


class ProcessCall(Base):
    __tablename__ = "process_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    transport: Mapped[str] = mapped_column(String(16))
    skill: Mapped[str] = mapped_column(String(128), index=True)
    agent: Mapped[str] = mapped_column(String(256))
    model: Mapped[str | None] = mapped_column(String(256))
    input: Mapped[Any] = mapped_column(JSON, nullable=True)
    output: Mapped[Any] = mapped_column(JSON, nullable=True)
    tool_calls: Mapped[Any] = mapped_column(JSON, nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    outcome: Mapped[str] = mapped_column(String(16))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(64), index=True)


@dataclass(slots=True)
class CallRecord:
    """What a caller hands to :meth:`ProcessLog.record` (raw; scrubbed on the way in)."""

    direction: Direction
    transport: Transport
    skill: str
    agent: str
    outcome: Outcome
    model: str | None = None
    input: Any = None
    output: Any = None
    tool_calls: list[dict[str, Any]] | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    escalated: bool = False
    escalation_reason: str | None = None
    error: str | None = None
    trace_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def check(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, not {self.direction!r}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {sorted(TRANSPORTS)}, not {self.transport!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {self.outcome!r}")
        if min(self.tokens_in, self.tokens_out) < 0 or self.cost < 0 or self.latency_ms < 0:
            raise ValueError("tokens, cost and latency cannot be negative")


def create_engine(url: str) -> AsyncEngine:
    """The process log's engine: WAL with synchronous=NORMAL (durable across a process crash; process data
    does not need to survive a power cut at the price of an fsync per commit)."""
    return create_db_engine(url, synchronous="NORMAL")


class ProcessLog:
    """Writes :class:`CallRecord` rows, scrubbed, and applies the retention period."""

    def __init__(self, engine: AsyncEngine, scrubber: Scrubber, *, retention_days: float | None = None,
                 pending: int = 0, drain_seconds: float = 3.0) -> None:
        self.engine = engine
        self.scrubber = scrubber
        self.retention_days = retention_days
        self.drain_seconds = drain_seconds
        self.dropped = 0
        """Records handed over but never written: the queue was full, or still held them at ``close``."""
        self._queue: asyncio.Queue[CallRecord] | None = asyncio.Queue(pending) if pending > 0 else None
        self._writer: asyncio.Task[None] | None = None
        self._last_drop_warning = -math.inf
        self._closing = threading.Event()
        self._warming: threading.Thread | None = None

    @classmethod
    async def open(cls, url: str, scrubber: Scrubber, *, retention_days: float | None = None,
                   pending: int = 0) -> ProcessLog:
        engine = create_engine(url)
        await migrate(engine)
        return cls(engine, scrubber, retention_days=retention_days, pending=pending)

    def warm_up(self) -> None:
        """Load the scrubber's name models in a thread (seconds), so neither the node's start nor
        its first records wait for them; ``close`` stops it between two models."""
        if self.scrubber.detects_names:
            self._warming = threading.Thread(target=self._warm_up, name="process-log warm-up")
            self._warming.start()

    def _warm_up(self) -> None:
        try:
            self.scrubber.warm_up(self._closing.is_set)
        except Exception as exc:  # a model that cannot load fails again, with its traceback, on the first record
            if not self._closing.is_set():  # at exit, imports fail ("can't register atexit after shutdown")
                log.warning("could not load the name models ahead of use: %s: %s", type(exc).__name__, exc)

    async def flush(self) -> None:
        """Wait until every record handed over so far is written (or its write failed and was logged)."""
        if self._queue is not None and self._writer is not None:
            await self._queue.join()

    async def close(self) -> None:
        if self._queue is not None and self._writer is not None:
            if self._warming is not None and self._warming.is_alive():
                # scrubbing waits for the models being loaded (seconds of CPU on a busy machine): draining now
                # would spend the drain time, and the shutdown's, waiting for them
                self._drop(self._queue.qsize(), "the name models were still loading at shutdown")
            else:
                try:
                    async with asyncio.timeout(self.drain_seconds):
                        await self._queue.join()
                except TimeoutError:
                    self._drop(self._queue.qsize(), "still queued at shutdown")
        self._closing.set()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self.engine.dispose()

    def _rows(self, batch: list[CallRecord]) -> list[dict[str, Any]]:
        # A thread cannot be cancelled and the interpreter waits for it at exit: once ``close`` has given up,
        # stop between records, so shutdown waits for one record's scrubbing at most, not a batch's.
        rows = []
        for record in batch:
            if self._closing.is_set():
                raise _Abandoned
            rows.append(self._row(record))
        return rows

    def _row(self, record: CallRecord) -> dict[str, Any]:
        record.check()
        scrub = self.scrubber.scrub

        def text(value: str | None) -> str | None:
            return None if value is None else self.scrubber.scrub_text(value)

        def identifier(value: str | None) -> str | None:
            return None if value is None else self.scrubber.scrub_text(value, names=False)

        at = record.at if record.at.tzinfo else record.at.replace(tzinfo=UTC)
        return {
            "at": at, "direction": record.direction, "transport": record.transport,
            "skill": identifier(record.skill), "agent": identifier(record.agent), "model": identifier(record.model),
            "input": scrub(record.input), "output": scrub(record.output),
            "tool_calls": scrub(record.tool_calls), "tokens_in": record.tokens_in,
            "tokens_out": record.tokens_out, "cost": record.cost, "latency_ms": record.latency_ms,
            "outcome": record.outcome, "escalated": record.escalated,
            "escalation_reason": text(record.escalation_reason), "error": text(record.error),
            "trace_id": identifier(record.trace_id),
        }

    async def record(self, record: CallRecord) -> None:
        await self.record_many([record])

    async def record_many(self, records: Iterable[CallRecord]) -> None:
        """Store ``records`` scrubbed; a record that breaks the row's rules raises ``ValueError`` here and
        nothing of the batch is stored. In the background mode this returns once they are queued."""
        batch = list(records)
        if self._queue is None:
            await self._write(batch)
            return
        for record in batch:
            record.check()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued(self._queue), name="process-log writer")
        for record in batch:
            try:
                self._queue.put_nowait(record)
            except asyncio.QueueFull:
                self._drop(1, "the queue is full (the scrubber cannot keep up with this load)")

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._last_drop_warning >= 60:
            self._last_drop_warning = now
            log.warning("process data: %d record(s) dropped, %s; %d dropped in all", count, why, self.dropped)

    async def _write_queued(self, queue: asyncio.Queue[CallRecord]) -> None:
        limit = _BATCH_WITH_NAMES if self.scrubber.detects_names else _BATCH
        while True:
            batch = [await queue.get()]
            while len(batch) < limit and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._write(batch)
            except (_Abandoned, asyncio.CancelledError) as exc:
                self._drop(len(batch), "not yet scrubbed at shutdown")
                if isinstance(exc, asyncio.CancelledError):
                    raise
            except Exception:
                log.exception("could not write %d process-data records", len(batch))
            finally:
                for _ in batch:
                    queue.task_done()

    async def _write(self, batch: list[CallRecord]) -> None:
        # Scrub (and validate) all before opening a transaction; name detection is milliseconds of CPU per
        # string and a batch is many strings, so either runs off the event loop.
        if self.scrubber.detects_names or len(batch) > 1:
            rows = await asyncio.to_thread(self._rows, batch)
        else:
            rows = [self._row(r) for r in batch]
        if not rows:
            return
        async with self.engine.begin() as connection:
            await connection.execute(insert(ProcessCall), rows)

    async def purge(self, older_than_days: float | None = None, *, now: datetime | None = None) -> int:
        """Delete rows older than the retention period (or ``older_than_days``); returns how many."""
        days = older_than_days if older_than_days is not None else self.retention_days
        if days is None:
            raise ValueError("no retention period configured")
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(ProcessCall).where(ProcessCall.at < cutoff))
        return int(result.rowcount or 0)


class _Abandoned(Exception):
    """A batch given up because the log is closing."""


def monotonic_ms(start: float) -> float:
    """Milliseconds since ``start`` (a :func:`time.perf_counter` value)."""
    return (time.perf_counter() - start) * 1000.0
