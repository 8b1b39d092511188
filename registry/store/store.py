"""The registry store: every accepted write, the index it feeds, and the change feed.

Writes go through one :class:`~.writer.GroupCommitWriter` (the transactions themselves are in
:mod:`.writes`); reads go to their own connections: on SQLite plain sqlite3 connections on a few reader threads
(WAL lets them run beside the writer; aiosqlite costs several thread hops per query, ~2.4 ms for a get by id),
on PostgreSQL the async engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from guildnet.protocols.receipts import ReceiptRefused
from guildnet.protocols.signed_write import CLOCK_WINDOW_SECONDS, SignedWrite

from ..db import sync_twin
from ..meaning import embed_query
from ..records import (
    ParsedReceipt,
    Registration,
    parse_node_heartbeat,
    parse_registration,
    parse_rotation,
    require_action,
)
from . import vectors
from .bulk import register_new
from .hybrid import MATCHES, build_hybrid, catch_up, read_vectors
from .reads import RowReader
from .results import (
    LIVENESS_JOIN,
    RECORD_COLUMNS,
    RECORD_WIDTH,
    AgentRecord,
    BadQuery,
    Change,
    NodeHeartbeatResult,
    NotFound,
    ReceiptResult,
    WriteResult,
    last_seq,
)
from .search import build_search
from .vectors import VectorIndex
from .writer import GroupCommitWriter
from .writes import Admission, Writes

log = logging.getLogger(__name__)

READER_THREADS = 3
_LAST_SEQ = text("SELECT max(seq) FROM changes")
_GET_AGENT = text(f"SELECT {RECORD_COLUMNS} FROM agents a {LIVENESS_JOIN} WHERE a.id = :id")
VECTOR_POLL_SECONDS = 1.0
"""How often the vector index follows the change feed without a search asking (each search catches it up too)."""
_CHANGES_SINCE = text("SELECT seq, agent_id, kind, at, data FROM changes WHERE seq > :seq ORDER BY seq LIMIT :limit")


class RegistryStore:
    """Accepted writes and the reads the API serves; ``on_commit`` hears the change-feed position each committed
    batch of writes reached (the watch hub wakes its watchers with it)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time,
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        postgres = engine.dialect.name == "postgresql"
        self._writes = Writes(postgres=postgres, clock=clock)
        self._register_new = partial(register_new, self._writes)
        self._on_commit = on_commit
        self._writer = GroupCommitWriter(engine, None if postgres else sync_twin(engine), on_commit=self._committed)
        self._reader_engine = None if postgres else sync_twin(engine, pool_size=READER_THREADS)
        self._readers = None if postgres else ThreadPoolExecutor(READER_THREADS, thread_name_prefix="guildnet-reader")
        self._rows = RowReader(engine, sqlite_engine=self._reader_engine, threads=self._readers)
        self._vectors: VectorIndex | None = None
        self._vector_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Build the vector index of every agent in the background and keep it current (searches by meaning take
        the windowed brute-force path until it is built; the first search starts it if this was not called)."""
        if self._vector_task is None:
            self._vector_task = asyncio.create_task(self._keep_vectors(), name="guildnet-vector-index")

    @property
    def vector_index(self) -> VectorIndex | None:
        return self._vectors

    async def _keep_vectors(self) -> None:
        while True:
            try:
                if self._vectors is None or self._vectors.outgrown():
                    started = time.perf_counter()
                    self._vectors = await self._build_vectors()
                    log.info("vector index of %d agents built in %.1f s (%d lists)", self._vectors.count,
                             time.perf_counter() - started, self._vectors.lists)
                await self.read(partial(self._catch_up, self._vectors))
            except Exception:  # a database hiccup must not end the index's upkeep; the next round retries
                log.exception("building or updating the vector index failed; retrying")
            await asyncio.sleep(VECTOR_POLL_SECONDS)

    @staticmethod
    def _catch_up(index: VectorIndex, conn: Connection) -> None:
        catch_up(conn, index, int(conn.execute(_LAST_SEQ).scalar() or 0))

    async def _build_vectors(self) -> VectorIndex:
        """Every stored vector, read in pages (the event loop serves between them), indexed in a thread."""
        position = await self.last_seq()  # read first: a change after it is applied again, harmlessly
        dim = embed_query("agent").shape[0]
        pages: list[Any] = []
        after: int | None = 0
        while after is not None:
            ids, matrix, after = await self.read(partial(read_vectors, postgres=self._readers is None,
                                                         after=after, dim=dim))
            if len(ids):
                pages.append((ids, matrix))
        return await asyncio.to_thread(vectors.build, dim, pages, position)

    async def close(self) -> None:
        if self._vector_task is not None:
            self._vector_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._vector_task
        await self._writer.close()
        await self._rows.close()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        if self._reader_engine is not None:
            self._reader_engine.dispose()

    def _committed(self, results: list[Any]) -> None:
        position = max(map(last_seq, results))
        if position and self._on_commit is not None:
            self._on_commit(position)

    # -- writes -------------------------------------------------------------------------------------

    async def register(self, write: SignedWrite, registration: Registration | None = None) -> WriteResult:
        """First registration (kid must be facts.id) or update (kid must be the current key, version higher);
        ``registration`` is the write's parsed facts when the caller checked them already."""
        registration = registration or parse_registration(write)
        result: WriteResult = await self._writer.run(partial(self._writes.register, registration=registration,
                                                             write=write),
                                                     bulk=(self._register_new, (registration, write)))
        return result

    async def heartbeat(self, agent_id: str, write: SignedWrite) -> WriteResult:
        require_action(write, "heartbeat", agent_id)
        result: WriteResult = await self._writer.run(partial(self._writes.heartbeat, agent_id=agent_id, write=write))
        return result

    async def node_heartbeat(self, write: SignedWrite) -> NodeHeartbeatResult:
        """Keep a node's agents live with one write signed by their organisation's key."""
        agents = parse_node_heartbeat(write)
        result: NodeHeartbeatResult = await self._writer.run(partial(self._writes.node_heartbeat, agents=agents,
                                                                     write=write))
        return result

    async def revoke(self, agent_id: str, write: SignedWrite) -> WriteResult:
        require_action(write, "revoke", agent_id)
        result: WriteResult = await self._writer.run(partial(self._writes.revoke, agent_id=agent_id, write=write))
        return result

    async def withdraw(self, agent_id: str, write: SignedWrite) -> WriteResult:
        """The organisation withdraws its endorsement (the write signed by the organisation key)."""
        require_action(write, "withdraw", agent_id)
        result: WriteResult = await self._writer.run(partial(self._writes.withdraw, agent_id=agent_id, write=write))
        return result

    async def rotate(self, agent_id: str, write: SignedWrite, *, window: int = CLOCK_WINDOW_SECONDS) -> WriteResult:
        """Rotate the agent's key (the event signed by the key in force) and store its facts signed by the new one."""
        rotation = parse_rotation(write, agent_id, now=self.clock(), window=window)
        result: WriteResult = await self._writer.run(partial(self._writes.rotate, agent_id=agent_id,
                                                             rotation=rotation, write=write))
        return result

    async def submit_receipt(self, parsed: ParsedReceipt, write: SignedWrite,
                             admission: Admission | None = None) -> ReceiptResult:
        if parsed.receipt.claim.ended_at / 1000.0 > self.clock() + CLOCK_WINDOW_SECONDS:
            raise ReceiptRefused("the task ends in the future: a receipt is submitted after the work, and a "
                                 "future date would escape the reputation's time decay")
        result: ReceiptResult = await self._writer.run(partial(self._writes.receipt, parsed=parsed, write=write,
                                                               admission=admission))
        return result

    async def sweep_liveness(self) -> list[Change]:
        changes: list[Change] = await self._writer.run(self._writes.sweep_liveness)
        return changes

    async def purge_nonces(self) -> int:
        count: int = await self._writer.run(self._writes.purge_nonces)
        return count

    async def write(self, work: Callable[[Connection], Any]) -> Any:
        """Run a synchronous write in the next group-committed transaction; its result once that committed (the
        domain marks of :mod:`guildnet.registry.domains` are written here, so SQLite keeps one writer)."""
        return await self._writer.run(work)

    # -- reads --------------------------------------------------------------------------------------

    async def read(self, query: Callable[[Connection], Any]) -> Any:
        """Run a synchronous read on its own connection: a reader-thread sqlite3 connection, or asyncpg via
        ``run_sync`` (the log, reputation and explorer modules read through here)."""
        if self._readers is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(query)

        def run() -> Any:
            assert self._reader_engine is not None
            with self._reader_engine.connect() as conn:
                return query(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def get(self, agent_id: str) -> AgentRecord:
        rows = await self._rows.rows(_GET_AGENT, {"id": agent_id})
        if not rows:
            raise NotFound(agent_id)
        return AgentRecord.from_row(rows[0], self.clock())

    async def search(self, *, skill: str | None = None, q: str | None = None, org: str | None = None,
                     live: bool | None = None, limit: int = 20, cursor: str | None = None, match: str = "hybrid"
                     ) -> tuple[list[AgentRecord], str | None, int]:
        """One page of matches, the cursor of the next page, and the change-feed position the page was read at.

        A cache that loads pages and then watches from that position misses nothing in between. ``q`` matches
        by ``match`` (:data:`~.hybrid.MATCHES`): words and meaning fused, words alone, or meaning alone.
        """
        if match not in MATCHES:
            raise BadQuery(f"match must be one of {', '.join(MATCHES)}")
        now = self.clock()
        if q and match != "words":
            return await self._search_by_meaning(now, skill=skill, q=q, org=org, live=live, limit=limit,
                                                 cursor=cursor, words=match == "hybrid")
        search = build_search(postgres=self._readers is None, now=now, skill=skill, q=q, org=org, live=live,
                              limit=limit, cursor=cursor)
        if search is None:
            return [], None, await self.last_seq()
        rows = await self._rows.rows(search.statement, search.params)  # record columns, position (, pk)
        position = int(rows[0][RECORD_WIDTH] or 0) if rows else await self.last_seq()
        page = list(rows[:limit])
        next_cursor = search.next_cursor(page, limit) if len(rows) > limit else None
        return [AgentRecord.from_row(row, now) for row in page], next_cursor, position

    async def _search_by_meaning(self, now: float, *, q: str, words: bool, **where: Any
                                 ) -> tuple[list[AgentRecord], str | None, int]:
        self.start()
        hybrid = build_hybrid(postgres=self._readers is None, now=now, q=q, query=embed_query(q), words=words,
                              **where)
        if hybrid is None:
            return [], None, await self.last_seq()
        index = self._vectors

        def query(conn: Connection) -> tuple[int, tuple[list[Any], str | None]]:
            position = int(conn.execute(_LAST_SEQ).scalar() or 0)
            if index is not None:
                catch_up(conn, index, position)  # every write the position covers, this replica's or another's
            return position, hybrid.run(conn, index)

        position, (rows, next_cursor) = await self.read(query)
        return [AgentRecord.from_row(row, now) for row in rows], next_cursor, position

    async def changes_since(self, seq: int, limit: int = 500) -> list[Change]:
        rows = await self.read(lambda conn: conn.execute(_CHANGES_SINCE, {"seq": seq, "limit": limit}).all())
        return [Change(r.seq, r.agent_id, r.kind, r.at, json.loads(r.data)) for r in rows]

    async def last_seq(self) -> int:
        return int((await self._rows.rows(_LAST_SEQ, {}))[0][0] or 0)
