"""Group commit: concurrent writes share one transaction, each inside its own savepoint.

A refused write rolls its savepoint back alone; an accepted one is acknowledged only after the whole
transaction commits, so it is durable before its caller hears of it, and N concurrent writes cost one commit
instead of N. The work is plain synchronous SQLAlchemy Core: on SQLite it runs on a sync pysqlite connection
in one dedicated thread (one thread hop per batch, not per statement as with aiosqlite), on PostgreSQL
through ``AsyncConnection.run_sync`` on asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

Work = Callable[[Connection], Any]
Bulk = Callable[[Connection, list[Any]], list[Any]]
"""Applies a run of like writes at once (one result per item, in order), or raises to have each applied alone."""

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    work: Work
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] | None = None
    bulk: Bulk | None = None
    item: Any = None


class GroupCommitWriter:
    """Runs write transactions in batches of up to :attr:`MAX_BATCH`; ``on_commit`` hears each committed
    batch's successful results (the store announces the change feed from them). It owns ``sync_engine`` (the
    SQLite connection it writes on) and disposes it on :meth:`close`."""

    MAX_BATCH = 256

    def __init__(self, engine: AsyncEngine, sync_engine: Engine | None,
                 on_commit: Callable[[list[Any]], None] | None = None) -> None:
        self.engine = engine
        self._sync_engine = sync_engine
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="guildnet-writer") if sync_engine else None
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None

    async def run(self, work: Work, *, bulk: tuple[Bulk, Any] | None = None) -> Any:
        """Run ``work`` in the next batch's transaction; its result once that transaction committed, or its
        exception (the savepoint rolled back), or the commit's own failure. With ``bulk`` (a function and this
        write's item), a run of writes in the batch that name the same function is first tried together."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._loop(self._queue), name="guildnet-registry-writer")
        pending = _Pending(work, asyncio.get_running_loop().create_future())
        if bulk is not None:
            pending.bulk, pending.item = bulk
        self._queue.put_nowait(pending)
        return await pending.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def _loop(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                if self._thread is not None:
                    await asyncio.get_running_loop().run_in_executor(self._thread, self._commit_sync, batch)
                else:
                    async with self.engine.begin() as conn:
                        await conn.run_sync(_apply, batch)
            except Exception as exc:  # the commit itself failed: nothing of this batch is acknowledged
                for pending in batch:
                    pending.outcome = (False, exc)
            committed = []
            for pending in batch:
                ok, value = pending.outcome or (False, RuntimeError("write was not applied"))
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result(value)
                    committed.append(value)
                else:
                    pending.future.set_exception(value)
            if committed and self._on_commit is not None:
                self._on_commit(committed)

    def _commit_sync(self, batch: list[_Pending]) -> None:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as conn:
            _apply(conn, batch)


def _apply(conn: Connection, batch: list[_Pending]) -> None:
    start = 0
    while start < len(batch):
        end = start + 1
        bulk = batch[start].bulk
        while bulk is not None and end < len(batch) and batch[end].bulk is bulk:
            end += 1
        if end - start == 1 or not _apply_bulk(conn, batch[start:end]):
            for pending in batch[start:end]:
                _apply_one(conn, pending)
        start = end


def _apply_one(conn: Connection, pending: _Pending) -> None:
    savepoint = conn.begin_nested()
    try:
        pending.outcome = (True, pending.work(conn))
        savepoint.commit()
    except Exception as exc:
        savepoint.rollback()
        pending.outcome = (False, exc)


def _apply_bulk(conn: Connection, run: list[_Pending]) -> bool:
    """Apply ``run`` with its bulk function in one savepoint; False (nothing of it left) if that raised."""
    assert run[0].bulk is not None
    savepoint = conn.begin_nested()
    try:
        results = run[0].bulk(conn, [pending.item for pending in run])
    except Exception as exc:
        savepoint.rollback()
        log.debug("a run of %d writes is applied one by one: %r", len(run), exc)
        return False
    savepoint.commit()
    for pending, result in zip(run, results, strict=True):
        pending.outcome = (True, result)
    return True
