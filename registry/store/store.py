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
from . import vectors, words
from .bulk import register_new
from .feed import Follower, catch_up
from .hybrid import MATCHES, build_hybrid, page_of, rank_words, read_vectors
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
from .search import allowed_sql, build_search, check_limit, decode_cursor, encode_cursor, filters, live_filter
from .vectors import VectorIndex
from .words import AgentText, WordIndex, words_query
from .writer import GroupCommitWriter
from .writes import Admission, Writes

log = logging.getLogger(__name__)

READER_THREADS = 3
_LAST_SEQ = text("SELECT max(seq) FROM changes")
_RECORDS_ANY = text(f"SELECT {RECORD_COLUMNS}, a.pk FROM agents a {LIVENESS_JOIN} WHERE a.pk = ANY(:pks) "
                    "AND NOT a.revoked")
"""PostgreSQL: the records of the pks ``:pks`` (an agent revoked since it was ranked is left out)."""
_GET_AGENT = text(f"SELECT {RECORD_COLUMNS} FROM agents a {LIVENESS_JOIN} WHERE a.id = :id")
INDEX_POLL_SECONDS = 1.0
"""How often the indexes follow the change feed without a search asking (each search catches up those it asks),
and the word index commits."""
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
        self._words: WordIndex | None = None
        self._index_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Build the vector and word indexes of every agent in the background and keep them current (searches
        take the database's paths until they are built; the first search starts them if this was not called)."""
        if self._index_task is None:
            self._index_task = asyncio.create_task(self._keep_indexes(), name="guildnet-indexes")

    @property
    def vector_index(self) -> VectorIndex | None:
        return self._vectors

    @property
    def word_index(self) -> WordIndex | None:
        return self._words

    async def _keep_indexes(self) -> None:
        """One upkeep loop for both indexes: build what is missing (both at once), then every second follow the
        change feed and commit the word index's pending changes (a tantivy commit is too costly for each search)."""
        while True:
            try:
                builds = []
                if self._vectors is None or self._vectors.outgrown():
                    builds.append(self._build_vectors())
                if self._words is None:
                    builds.append(self._build_words())
                for failed in await asyncio.gather(*builds, return_exceptions=True):
                    if isinstance(failed, BaseException):
                        raise failed
                await self.read(self._catch_up)
                if self._words is not None and self._words.pending:
                    await asyncio.to_thread(self._words.commit)  # tantivy's commit lets go of the GIL
            except Exception:  # a database hiccup must not end the indexes' upkeep; the next round retries
                log.exception("building or updating the search indexes failed; retrying")
            await asyncio.sleep(INDEX_POLL_SECONDS)

    def _catch_up(self, conn: Connection) -> None:
        upto = int(conn.execute(_LAST_SEQ).scalar() or 0)
        for index in (self._vectors, self._words):
            if index is not None:
                catch_up(conn, index, upto)

    async def _build_vectors(self) -> None:
        """Every stored vector, read in pages (the event loop serves between them), indexed in a thread."""
        started = time.perf_counter()
        position = await self.last_seq()  # read first: a change after it is applied again, harmlessly
        dim = embed_query("agent").shape[0]
        pages: list[Any] = []
        after: int | None = 0
        while after is not None:
            ids, matrix, after = await self.read(partial(read_vectors, postgres=self._readers is None,
                                                         after=after, dim=dim))
            if len(ids):
                pages.append((ids, matrix))
        self._vectors = index = await asyncio.to_thread(vectors.build, dim, pages, position)
        log.info("vector index of %d agents built in %.1f s (%d lists)", index.count, time.perf_counter() - started,
                 index.lists)

    async def _build_words(self) -> None:
        """Every unrevoked agent's words, read in pages and indexed in a thread page by page (the event loop serves
        between them; no more than a page of agents is held at once)."""
        started = time.perf_counter()
        postgres = self._readers is None
        index = WordIndex(await self.last_seq(), postgres=postgres)  # position read first: changes after it apply again
        after = 0
        while True:
            page: list[AgentText] = await self.read(partial(words.read_page, postgres=postgres, after=after))
            if not page:
                break
            await asyncio.to_thread(index.add, page)
            after = page[-1].pk
        self._words = await asyncio.to_thread(index.open)
        await asyncio.to_thread(vectors.give_back_memory)
        log.info("word index of %d agents built in %.1f s", index.count, time.perf_counter() - started)

    async def close(self) -> None:
        if self._index_task is not None:
            self._index_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._index_task
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
        if q:
            self.start()
            found = await self._search_words(now, q=q, skill=skill, org=org, live=live, limit=limit, cursor=cursor)
            if found is not None:
                return found
        search = build_search(postgres=self._readers is None, now=now, skill=skill, q=q, org=org, live=live,
                              limit=limit, cursor=cursor)
        if search is None:
            return [], None, await self.last_seq()
        rows = await self._rows.rows(search.statement, search.params)  # record columns, position (, pk)
        position = int(rows[0][RECORD_WIDTH] or 0) if rows else await self.last_seq()
        page = list(rows[:limit])
        next_cursor = search.next_cursor(page, limit) if len(rows) > limit else None
        return [AgentRecord.from_row(row, now) for row in page], next_cursor, position

    async def _search_words(self, now: float, *, q: str, skill: str | None, org: str | None, live: bool | None,
                            limit: int, cursor: str | None) -> tuple[list[AgentRecord], str | None, int] | None:
        """A page of matches by words from the word index, or None to ask the database (the index is being built,
        or a liveness filter left too few of the matches it was asked for)."""
        index = self._words
        if index is None:
            return None
        check_limit(limit)
        offset = decode_cursor(cursor, "o") if cursor else 0
        query = words_query(q, skill=skill, org=org)
        if query is None:
            return [], None, await self.last_seq()
        where, params = filters(postgres=self._readers is None, now=now, skill=skill, org=org, live=live)
        live_sql = None if live is None else allowed_sql([where[0], live_filter(live)], postgres=self._readers is None)

        def read(conn: Connection) -> tuple[int, tuple[list[Any], str | None] | None]:
            position = int(conn.execute(_LAST_SEQ).scalar() or 0)
            catch_up(conn, index, position)  # every write the position covers, this replica's or another's
            ranked = rank_words(conn, index, query, offset + limit + 1, live_sql, params)
            return position, None if ranked is None else page_of(conn, ranked, offset, limit)

        if self._readers is not None or live is not None:  # SQLite: all of it on one reader thread, one hop
            position, page = await self.read(read)
            if page is None:
                return None
            return [AgentRecord.from_row(row, now) for row in page[0]], page[1], position
        # PostgreSQL: the position and the page's records as single statements on the read pool (a session of
        # the SQLAlchemy engine costs ~4 round trips: BEGIN, two statements, ROLLBACK), the ranking in between
        position = await self._caught_up(index)
        return await self._page_on_pool(index.search(query, offset + limit + 1), offset, limit, now, position)

    async def _caught_up(self, *indexes: Follower | None) -> int:
        """The change-feed position now, once ``indexes`` have applied every change up to it (PostgreSQL)."""
        position = await self.last_seq()
        for index in indexes:
            if index is not None and index.position < position:
                await self.read(partial(catch_up, index=index, upto=position))
        return position

    async def _page_on_pool(self, ranked: list[int], offset: int, limit: int, now: float, position: int
                            ) -> tuple[list[AgentRecord], str | None, int]:
        """The records of ``ranked[offset:offset + limit]`` in that order, read as one statement on the read pool
        (an agent revoked since is left out), and the cursor of the next page."""
        pks = ranked[offset:offset + limit]
        records = {row[-1]: row for row in await self._rows.rows(_RECORDS_ANY, {"pks": pks})} if pks else {}
        more = len(ranked) > offset + limit
        return ([AgentRecord.from_row(records[pk], now) for pk in pks if pk in records],
                encode_cursor({"o": offset + limit}) if more else None, position)

    async def _search_by_meaning(self, now: float, *, q: str, words: bool, **where: Any
                                 ) -> tuple[list[AgentRecord], str | None, int]:
        self.start()
        hybrid = build_hybrid(postgres=self._readers is None, now=now, q=q, query=embed_query(q), words=words,
                              **where)
        if hybrid is None:
            return [], None, await self.last_seq()
        index, by_words = self._vectors, self._words if words else None
        if self._readers is None and index is not None:
            # PostgreSQL with the vector index built: every statement on the read pool, as a search by words does
            position = await self._caught_up(index, by_words)
            ranked = await hybrid.ranked_on_pool(self._rows.rows, index, by_words)
            if ranked is not None:
                return await self._page_on_pool(ranked, hybrid.offset, hybrid.limit, now, position)

        def query(conn: Connection) -> tuple[int, tuple[list[Any], str | None]]:
            position = int(conn.execute(_LAST_SEQ).scalar() or 0)
            for follower in (index, by_words):
                if follower is not None:
                    catch_up(conn, follower, position)  # every write the position covers, this replica's or another's
            return position, hybrid.run(conn, index, by_words)

        position, (rows, next_cursor) = await self.read(query)
        return [AgentRecord.from_row(row, now) for row in rows], next_cursor, position

    async def changes_since(self, seq: int, limit: int = 500) -> list[Change]:
        rows = await self.read(lambda conn: conn.execute(_CHANGES_SINCE, {"seq": seq, "limit": limit}).all())
        return [Change(r.seq, r.agent_id, r.kind, r.at, json.loads(r.data)) for r in rows]

    async def last_seq(self) -> int:
        return int((await self._rows.rows(_LAST_SEQ, {}))[0][0] or 0)
