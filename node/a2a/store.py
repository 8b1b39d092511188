"""The node's A2A task store: SQL (SQLite by default, PostgreSQL by URL) or in memory.

Why it writes so little: a2a-sdk writes the whole task on every event, and with SQLite that is what
bounds its throughput. Here the A2A service writes a task at most twice (when its id first leaves the
process, and when it settles), and writes that arrive together share one transaction ("group commit"),
so 32 concurrent requests cost one commit, not 64. :meth:`TaskStore.put` returns only once the row is
committed, so a finished task is durable before the client hears about it.

A task that was running when its process died must not stay "working" forever: :meth:`SqlTaskStore.open`
marks every SUBMITTED/WORKING row FAILED with a reason. This assumes one node process per store (the
node's own database); a store shared by several live processes would need an owner column and leases.
"""

from __future__ import annotations

import asyncio
import json
import marshal
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import JSON, Float, Index, String, Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guildnet.protocols import a2a
from guildnet.protocols.a2a import TaskRecord

from ..db import create_engine, migrate

RESTART_REASON = "node restarted while the task was running"
ACTIVE_STATES = (a2a.SUBMITTED, a2a.WORKING)


@dataclass(frozen=True, slots=True)
class TaskPage:
    records: list[TaskRecord]
    next_page_token: str
    total_size: int


class TaskStore(ABC):
    """Where finished and interrupted tasks live; the A2A service keeps running ones in memory too."""

    async def open(self) -> int:
        """Prepare the store; return how many tasks a dead process left running (now FAILED)."""
        return 0

    async def close(self) -> None:
        return None

    @abstractmethod
    async def put(self, record: TaskRecord, *, new: bool) -> None:
        """Insert (``new``) or replace the task; durable when this returns."""

    @abstractmethod
    async def get(self, agent: str, task_id: str) -> TaskRecord | None: ...

    @abstractmethod
    async def list(self, agent: str, query: a2a.ListQuery, *, owner: str | None) -> TaskPage:
        """Tasks of ``agent`` that belong to ``owner`` (None: anonymous callers), newest update first, filtered
        and paged as ListTasks asks."""

    @abstractmethod
    async def purge(self, updated_before: float) -> int:
        """Delete the tasks no longer running whose last update is older than ``updated_before`` (their
        inputs and outputs are the callers' raw data, kept no longer than the node's retention); how many."""


def _page(records: list[TaskRecord], page_size: int, total: int) -> TaskPage:
    more = len(records) > page_size
    records = records[:page_size]
    token = a2a.encode_page_token(records[-1].updated, records[-1].id) if more and records else ""
    return TaskPage(records, token, total)


@dataclass(frozen=True, slots=True)
class _Kept:
    """A task as :class:`InMemoryTaskStore` keeps it: the fields its queries read, and the task as bytes."""

    agent: str
    id: str
    context_id: str
    state: str
    skill: str | None
    created: float
    updated: float
    owner: str | None
    task: bytes

    @classmethod
    def of(cls, record: TaskRecord) -> _Kept:
        return cls(record.agent, record.id, record.context_id, record.state, record.skill, record.created,
                   record.updated, record.owner, _freeze(record.task))

    def record(self) -> TaskRecord:
        return TaskRecord(self.agent, marshal.loads(self.task), self.skill, self.created, self.updated, self.owner)


def _freeze(task: a2a.JSON) -> bytes:
    """The task's ``marshal`` bytes; a value marshal does not write (a ``str`` subclass) is stored as its plain
    JSON, as a database would store it."""
    try:
        return marshal.dumps(task)
    except ValueError:
        return marshal.dumps(json.loads(json.dumps(task)))


class InMemoryTaskStore(TaskStore):
    """Tasks in a dict: for tests, benchmarks and nodes that need no history across restarts.

    Copies in and out, like a database (callers mutate their records while a task runs): each task is kept as
    its ``marshal`` bytes. Why bytes and not a copy of the dicts: a task is dozens of dicts and lists, which the
    garbage collector walks at every full collection, so a node holding some 30,000 tasks paused for hundreds of
    milliseconds now and then; bytes are one object it does not walk, and writing them is half a copy.
    """

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str], _Kept] = {}

    async def put(self, record: TaskRecord, *, new: bool) -> None:
        self._tasks[(record.agent, record.id)] = _Kept.of(record)

    async def get(self, agent: str, task_id: str) -> TaskRecord | None:
        kept = self._tasks.get((agent, task_id))
        return kept.record() if kept is not None else None

    async def list(self, agent: str, query: a2a.ListQuery, *, owner: str | None) -> TaskPage:
        after = query.status_after.timestamp() if query.status_after else None
        matching = [r for (a, _), r in self._tasks.items() if a == agent and r.owner == owner
                    and (query.context_id is None or r.context_id == query.context_id)
                    and (query.status is None or r.state == query.status)
                    and (after is None or r.updated >= after)]
        matching.sort(key=lambda r: (r.updated, r.id), reverse=True)
        total = len(matching)
        if query.page_token:
            cursor = a2a.decode_page_token(query.page_token)
            matching = [r for r in matching if (r.updated, r.id) < cursor]
        return _page([kept.record() for kept in matching[:query.page_size + 1]], query.page_size, total)

    async def purge(self, updated_before: float) -> int:
        expired = [key for key, r in self._tasks.items() if r.state not in ACTIVE_STATES and r.updated < updated_before]
        for key in expired:
            del self._tasks[key]
        return len(expired)


class Base(DeclarativeBase):
    pass


class TaskRow(Base):
    __tablename__ = "a2a_tasks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent: Mapped[str] = mapped_column(String(128))
    context_id: Mapped[str] = mapped_column(String(128))
    skill: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32))
    status: Mapped[dict[str, Any]] = mapped_column(JSON)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    artifacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    task_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The authenticated caller whose task it is (migration 0004); NULL for anonymous callers."""

    __table_args__ = (
        Index("ix_a2a_tasks_agent_updated", "agent", "updated"),
        Index("ix_a2a_tasks_agent_owner_updated", "agent", "owner", "updated"),
        Index("ix_a2a_tasks_context", "context_id"),
        Index("ix_a2a_tasks_state", "state"),
    )


_T = cast(Table, TaskRow.__table__)


def _row_values(record: TaskRecord) -> dict[str, Any]:
    task = record.task
    return {"id": record.id, "agent": record.agent, "context_id": record.context_id, "skill": record.skill,
            "state": record.state, "status": task["status"], "history": task.get("history") or [],
            "artifacts": task.get("artifacts") or [], "metadata": task.get("metadata"),
            "created": record.created, "updated": record.updated, "owner": record.owner}


def _record_from_row(row: Any) -> TaskRecord:
    task: dict[str, Any] = {"id": row.id, "contextId": row.context_id, "status": row.status}
    if row.artifacts:
        task["artifacts"] = row.artifacts
    if row.history:
        task["history"] = row.history
    metadata = row._mapping["metadata"]
    if metadata:
        task["metadata"] = metadata
    return TaskRecord(row.agent, task, row.skill, row.created, row.updated, row.owner)


_UPDATE = (update(_T).where(_T.c.id == bindparam("b_id"))
           .values({c: bindparam(f"b_{c}") for c in ("state", "status", "history", "artifacts", "metadata",
                                                     "updated", "skill")}))


class SqlTaskStore(TaskStore):
    """Tasks in SQL through SQLAlchemy's asyncio engine: ``sqlite+aiosqlite:///file.db`` or
    ``postgresql+asyncpg://user@host/db``."""

    def __init__(self, url_or_engine: str | AsyncEngine) -> None:
        if isinstance(url_or_engine, str):
            # WAL + busy timeout: a second writer waits instead of failing with "database is locked" (what
            # a2a-sdk's own store does under concurrency); synchronous=FULL: an acknowledged task survives.
            self.engine = create_engine(url_or_engine, synchronous="FULL")
            self._owns_engine = True
        else:
            self.engine = url_or_engine
            self._owns_engine = False
        self._pending: list[tuple[dict[str, Any], bool, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"SqlTaskStore({self.engine.url.render_as_string(hide_password=True)!r})"

    async def open(self) -> int:
        await migrate(self.engine)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(select(_T).where(_T.c.state.in_(ACTIVE_STATES)))).all()
            now = time.time()
            for row in rows:
                record = _record_from_row(row)
                reason = a2a.new_message(a2a.ROLE_AGENT, [a2a.text_part(RESTART_REASON)],
                                         context_id=record.context_id, task_id=record.id)
                status = a2a.new_status(a2a.FAILED, reason)
                await conn.execute(update(_T).where(_T.c.id == row.id)
                                   .values(state=a2a.FAILED, status=status, updated=now))
        return len(rows)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._owns_engine:
            await self.engine.dispose()

    async def put(self, record: TaskRecord, *, new: bool) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((_row_values(record), new, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.engine.begin() as conn:
                    for is_insert, values in _runs(batch):
                        if is_insert:
                            await conn.execute(insert(_T), values)
                        else:
                            await conn.execute(_UPDATE, [{f"b_{k}": v for k, v in row.items()} for row in values])
            except Exception as exc:  # every waiter hears the failure; nothing is half-written
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def get(self, agent: str, task_id: str) -> TaskRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_T).where(_T.c.id == task_id, _T.c.agent == agent))).first()
        return _record_from_row(row) if row is not None else None

    async def list(self, agent: str, query: a2a.ListQuery, *, owner: str | None) -> TaskPage:
        filters = [_T.c.agent == agent, _T.c.owner == owner if owner is not None else _T.c.owner.is_(None)]
        if query.context_id is not None:
            filters.append(_T.c.context_id == query.context_id)
        if query.status is not None:
            filters.append(_T.c.state == query.status)
        if query.status_after is not None:
            filters.append(_T.c.updated >= query.status_after.timestamp())
        page = select(_T).where(*filters)
        if query.page_token:
            updated, last_id = a2a.decode_page_token(query.page_token)
            page = page.where(or_(_T.c.updated < updated, and_(_T.c.updated == updated, _T.c.id < last_id)))
        page = page.order_by(_T.c.updated.desc(), _T.c.id.desc()).limit(query.page_size + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            total = (await conn.execute(select(func.count()).select_from(_T).where(*filters))).scalar_one()
        return _page([_record_from_row(r) for r in rows], query.page_size, int(total))

    async def purge(self, updated_before: float) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(_T).where(_T.c.state.not_in(ACTIVE_STATES),
                                                         _T.c.updated < updated_before))
        return int(result.rowcount or 0)


def _runs(batch: Sequence[tuple[dict[str, Any], bool, asyncio.Future[None]]]
          ) -> list[tuple[bool, list[dict[str, Any]]]]:
    """Consecutive inserts (or updates) of a batch, in order, so each run is one executemany."""
    runs: list[tuple[bool, list[dict[str, Any]]]] = []
    for values, is_insert, _ in batch:
        if runs and runs[-1][0] == is_insert:
            runs[-1][1].append(values)
        else:
            runs.append((is_insert, [values]))
    for is_insert, rows in runs:
        if not is_insert:
            for row in rows:
                for key in ("agent", "context_id", "created", "owner"):
                    row.pop(key, None)
    return runs


def open_task_store(url: str | None) -> TaskStore:
    """``None`` or ``"memory"``: in memory; anything else: an SQLAlchemy async URL."""
    if url is None or url == "memory":
        return InMemoryTaskStore()
    return SqlTaskStore(url)
