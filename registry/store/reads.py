"""The hot reads (an agent by id, a page of search results) as one statement and one round trip, below
SQLAlchemy's execution layer.

A get by id is a single indexed lookup, yet went through SQLAlchemy's ``Connection.execute`` (statement
compilation cache, result metadata, ``Row`` objects) and, on each connection use, a ``BEGIN`` and a
``ROLLBACK``; on PostgreSQL also a pre-ping ``SELECT 1`` at checkout. Measured at 1M agents under load ~6 on two
cores, a search page made about five round trips to PostgreSQL, each a wake-up of another process: p50 9.5 ms
for 0.8 ms of execution. Here a read is one statement in autocommit mode (a single statement sees one snapshot
on both back ends, so nothing is lost by leaving out the transaction):

- SQLite: the reader thread's own ``sqlite3`` connection, ``execute`` with the named parameters as they are;
- PostgreSQL: a pool of its own (``AUTOCOMMIT``, no pre-ping) whose asyncpg connection runs the statement with
  positional parameters (asyncpg caches the prepared statement per connection). A connection found dead is
  discarded and the read retried once on a new pool (the others are as old, and likely as dead): reads change
  nothing, so the retry is safe, and it replaces the per-checkout ping. Plans are custom for each execution
  (``plan_cache_mode``): a generic plan cannot know how common a searched word is, and a sequential scan chosen
  once for a common word would read a large part of the table for a rare one. Sequential scans start at the
  table's first page (``synchronize_seqscans`` off): a common word's text page ranks the first matches a scan
  finds, and on a table larger than a quarter of ``shared_buffers`` a synchronised scan starts where the last
  one stopped, so at 1M agents each query of a common word ranked a different window (the same query twice, or
  a page and the next by its cursor, disagreed).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
READ_POOL_SIZE = 10
"""PostgreSQL connections the hot reads keep open per replica (and up to as many again under bursts)."""
_DEAD = (ConnectionError, OSError)
READ_SETTINGS = {"plan_cache_mode": "force_custom_plan", "synchronize_seqscans": "off"}
"""PostgreSQL settings of the read pool's sessions (see the module's docstring)."""


@lru_cache(maxsize=256)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with its ``:name`` parameters as asyncpg's ``$n``, and the names in ``$n`` order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _NAMED.sub(number, sql), tuple(names)


class RowReader:
    """Runs one read statement and returns its rows (tuples on SQLite, asyncpg ``Record`` on PostgreSQL; both
    index by position, as :meth:`~.results.AgentRecord.from_row` reads them)."""

    def __init__(self, engine: AsyncEngine, *, sqlite_engine: Engine | None = None,
                 threads: ThreadPoolExecutor | None = None) -> None:
        self._sqlite = sqlite_engine
        self._threads = threads
        self._postgres = None
        if sqlite_engine is None:
            self._postgres = create_async_engine(
                engine.url, isolation_level="AUTOCOMMIT", pool_size=READ_POOL_SIZE, max_overflow=READ_POOL_SIZE,
                connect_args={"server_settings": READ_SETTINGS})

    async def close(self) -> None:
        if self._postgres is not None:
            await self._postgres.dispose()

    async def rows(self, statement: TextClause, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        if self._postgres is None:
            return await asyncio.get_running_loop().run_in_executor(self._threads, self._sqlite_rows,
                                                                    statement.text, params)
        sql, names = positional(statement.text)
        args = [params[name] for name in names]
        for attempt in (1, 2):
            async with self._postgres.connect() as conn:
                raw = await conn.get_raw_connection()
                try:
                    rows: Sequence[Sequence[Any]] = await raw.driver_connection.fetch(sql, *args)  # type: ignore[union-attr]
                    return rows
                except Exception as exc:
                    if attempt == 2 or not (isinstance(exc, _DEAD) or raw.driver_connection.is_closed()):  # type: ignore[union-attr]
                        raise
                    await conn.invalidate()
            # the server dropped it (a restart, a fail-over, an administrator): the other pooled connections are as
            # old and likely dead too, so the retry starts from a new pool, as SQLAlchemy does on a disconnect
            await self._postgres.dispose()
        raise AssertionError("unreachable")

    def _sqlite_rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        assert self._sqlite is not None
        raw = self._sqlite.raw_connection()
        try:
            rows: list[Any] = raw.driver_connection.execute(sql, params).fetchall()  # type: ignore[union-attr]
            return rows
        finally:
            raw.close()
