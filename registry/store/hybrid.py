"""Text search by words and by meaning at once: one read ranks the agents by words and by meaning, fuses both
rankings (:func:`guildnet.registry.meaning.fuse`) and reads the records of one page.

The ranking by words asks the process's :class:`~.words.WordIndex` (every match ranked, skill and organisation
filtered in the index, liveness checked here for :data:`OVERFETCH` of them), caught up like the vector index; while
it is built, or when a liveness filter left it short, the database's ranked full-text statement.

Each ranking is cut at :data:`FUSION_DEPTH`, so a query lists at most twice that many agents: enough for a person
or a delegating node to choose from, and it bounds the work per page.

On PostgreSQL, once the indexes a query uses are built, a page needs no session
(:meth:`HybridQuery.ranked_on_pool`): the filter checks and the records are single statements on the read pool, the
rankings in process in between.

The ranking by meaning asks the process's :class:`~.vectors.VectorIndex` of every unrevoked agent, first caught up
with the change feed to the position the read reports (so a search sees every write before it, on any replica).
With a skill, organisation or liveness filter it asks for :data:`OVERFETCH` agents and keeps those the filters
allow (one indexed lookup each). When fewer than :data:`FUSION_DEPTH` remain although all of them were close
enough (more may follow), and while the index is built at start-up, brute force reads the vectors the filters
leave (``agent_vectors``, 512 bytes an agent), at most :data:`MEANING_WINDOW` of them; a skill narrows them
through the (skill_id, agent_pk) index.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Row

from ..meaning import MIN_COSINE, STORED_DTYPE, fuse, rank_by_meaning, stack
from .results import LIVENESS_JOIN, RECORD_COLUMNS
from .search import (
    SKILL_FILTER,
    allowed_sql,
    cached_text,
    check_limit,
    decode_cursor,
    encode_cursor,
    filters,
    fts5_query,
    live_filter,
    text_params,
    text_ranked_sql,
)
from .vectors import VectorIndex
from .words import WordIndex, WordsQuery, words_query

FUSION_DEPTH = 100
OVERFETCH = 1_000
"""Agents asked of the index when filters apply: a filter that keeps one agent in ten still fills a ranking."""
MEANING_WINDOW = 10_000
"""Candidates compared by brute force at most (a filtered search the index could not fill, or any search while the
index is built): the most recently registered, when the filters leave more. Brute force
costs ~1.7 µs of registry CPU an agent (10,000: 17 ms on SQLite, 11 ms + the database's on PostgreSQL, measured
by bench/discovery.py --filler under load 6), so past this many one search would cost more than a hundred
registrations (a skill filter narrows the candidates first). An index that is not brute force is what lifts it."""
MATCHES = ("hybrid", "words", "meaning")
"""``match=``: both rankings fused (the default), full-text search alone, or meaning alone."""
# NOT revoked: an agent revoked after the index's position and before this statement is never served
_RECORDS = text(f"SELECT {RECORD_COLUMNS}, a.pk FROM agents a {LIVENESS_JOIN} WHERE a.pk IN :pks "
                "AND NOT a.revoked").bindparams(bindparam("pks", expanding=True))
BUILD_PAGE = 20_000
"""Vectors read per statement while the index is built (10 MB)."""
Rows = Callable[[Any, dict[str, Any]], Awaitable[Sequence[Sequence[Any]]]]
"""Runs one read statement with its parameters and returns its rows (:meth:`~.reads.RowReader.rows`)."""


@dataclass(frozen=True, slots=True)
class HybridQuery:
    words: Any
    """The ranked full-text statement (pks, best first), or None for meaning alone or a query with no word."""
    vectors: Any
    """PostgreSQL: the candidates as one row (pks array, vectors concatenated); SQLite: unused."""
    rows: Any
    """The candidates as rows of (pk, vector)."""
    allowed: Any
    """Which of ``:pks`` the filters allow, or None when only the revoked filter applies."""
    postgres: bool
    params: dict[str, Any]
    query: NDArray[np.float32]
    offset: int
    limit: int
    by_words: WordsQuery | None
    """The words for the process's :class:`~.words.WordIndex` (None: meaning alone, or no word it can match)."""
    live: Any
    """Which of ``:pks`` the liveness filter allows (None: no such filter), for the word index's ranking."""

    def _candidates(self, conn: Connection) -> tuple[NDArray[np.int64], NDArray[np.float16]]:
        """Every candidate's pk and vector. Thousands of rows a query: read without a Row object each (the
        SQLAlchemy rows cost ~4 µs an agent, most of a search): on PostgreSQL as two aggregates in one row, on
        SQLite through the sqlite3 cursor."""
        if self.postgres:
            row = conn.execute(self.vectors, self.params).one()
            pks, blob = row[0] or [], row[1] or b""
            width = self.query.shape[0] * np.dtype(STORED_DTYPE).itemsize
            if len(blob) == width * len(pks):
                return np.asarray(pks, dtype=np.int64), np.frombuffer(blob, dtype=STORED_DTYPE).reshape(
                    len(pks), self.query.shape[0])
            rows = conn.execute(self.rows, self.params).all()  # a vector of another size: sort them out
            return stack(self.query, [r[0] for r in rows], [r[1] for r in rows])
        cursor = conn.connection.driver_connection.execute(self.rows.text, self.params)  # type: ignore[union-attr]
        rows = cursor.fetchall()
        return stack(self.query, [r[0] for r in rows], [r[1] for r in rows])

    def _nearest(self, index: VectorIndex, asked: int) -> list[int]:
        """The (up to) ``asked`` agents of ``index`` nearest the query and close enough: pks, best first."""
        ids, scores = index.search(self.query, asked)
        close = scores >= MIN_COSINE
        ids, scores = ids[close], scores[close]
        return [int(pk) for pk in ids[np.lexsort((ids, -scores))]]

    def _from_index(self, conn: Connection, index: VectorIndex) -> list[int] | None:
        """The ranking by meaning from ``index``, or None when a filter left it short and more may be close."""
        asked = OVERFETCH if self.allowed is not None else FUSION_DEPTH
        return kept(conn, self._nearest(index, asked), asked, FUSION_DEPTH, self.allowed, self.params)

    async def ranked_on_pool(self, rows: Rows, index: VectorIndex, words: WordIndex | None) -> list[int] | None:
        """The fused ranking from the process's two indexes, each filter one statement through ``rows`` (the
        PostgreSQL read pool: no session, one round trip each); None when a ranking needs :meth:`run`'s database
        fallbacks (no word the word index can match, that index still being built, or a filter that left a
        ranking short)."""
        async def passed(statement: Any, ranked: list[int]) -> set[int] | None:
            if statement is None or not ranked:
                return None
            return {int(row[0]) for row in await rows(statement, {**self.params, "pks": ranked})}

        by_words: list[int] | None = []
        if self.words is not None:
            if words is None or self.by_words is None:
                return None
            asked = OVERFETCH if self.live is not None else FUSION_DEPTH
            ranked = words.search(self.by_words, asked)
            by_words = keep(ranked, asked, FUSION_DEPTH, await passed(self.live, ranked))
        asked = OVERFETCH if self.allowed is not None else FUSION_DEPTH
        ranked = self._nearest(index, asked)
        by_meaning = keep(ranked, asked, FUSION_DEPTH, await passed(self.allowed, ranked))
        if by_words is None or by_meaning is None:
            return None
        return fuse(by_words, by_meaning)

    def _by_words(self, conn: Connection, index: WordIndex | None) -> Sequence[int]:
        if self.words is None:
            return []
        if index is not None and self.by_words is not None:
            ranked = rank_words(conn, index, self.by_words, FUSION_DEPTH, self.live, self.params)
            if ranked is not None:
                return ranked
        return conn.execute(self.words, self.params).scalars().all()

    def run(self, conn: Connection, index: VectorIndex | None = None, words: WordIndex | None = None
            ) -> tuple[list[Row[Any]], str | None]:
        """One page of records in fused order, and the cursor of the next page (None on the last)."""
        by_words = self._by_words(conn, words)
        by_meaning = self._from_index(conn, index) if index is not None else None
        if by_meaning is None:
            by_meaning = rank_by_meaning(self.query, *self._candidates(conn), depth=FUSION_DEPTH)
        return page_of(conn, fuse(by_words, by_meaning), self.offset, self.limit)


def keep(ranked: list[int], asked: int, depth: int, passed: Collection[int] | None) -> list[int] | None:
    """The first ``depth`` of ``ranked`` (``asked`` were asked of an index) that are in ``passed`` (all, when
    None), or None when fewer remain and the index may hold more."""
    if passed is None:
        return ranked[:depth]
    kept = [pk for pk in ranked if pk in passed]
    if len(kept) < depth and len(ranked) == asked:
        return None
    return kept[:depth]


def kept(conn: Connection, ranked: list[int], asked: int, depth: int, allowed: Any, params: dict[str, Any]
         ) -> list[int] | None:
    """:func:`keep`, with what the ``allowed`` statement (None: no filter) lets through of ``ranked``."""
    passed = (None if allowed is None or not ranked
              else set(conn.execute(allowed, {**params, "pks": ranked}).scalars().all()))
    return keep(ranked, asked, depth, passed)


def rank_words(conn: Connection, index: WordIndex, words: WordsQuery, depth: int, live: Any,
               params: dict[str, Any]) -> list[int] | None:
    """The ``depth`` best matches of ``words`` in ``index`` (skill and organisation filtered there), and with
    a liveness filter (``live``: which of ``:pks`` pass it) those that pass, :data:`OVERFETCH` asked; None when
    too few passed and more may."""
    asked = max(depth, OVERFETCH) if live is not None else depth
    return kept(conn, index.search(words, asked), asked, depth, live, params)


def page_of(conn: Connection, ranked: list[int], offset: int, limit: int) -> tuple[list[Row[Any]], str | None]:
    """The records of ``ranked[offset:offset + limit]`` in that order (an agent revoked since is left out), and
    the cursor of the next page (None on the last)."""
    page = ranked[offset:offset + limit]
    if not page:
        return [], None
    rows = {row[-1]: row for row in conn.execute(_RECORDS, {"pks": page}).all()}
    more = len(ranked) > offset + limit
    return [rows[pk] for pk in page if pk in rows], encode_cursor({"o": offset + limit}) if more else None


def build_hybrid(*, postgres: bool, now: float, q: str, query: NDArray[np.float32], words: bool, skill: str | None,
                 org: str | None, live: bool | None, limit: int, cursor: str | None) -> HybridQuery | None:
    """The statements of a search by meaning (with ``words``, fused with the full-text ranking), or None when
    ``q`` has nothing to match (no word, no known token)."""
    check_limit(limit)
    fts = fts5_query(q)
    if fts is None or not query.any():
        return None
    where, params = filters(postgres=postgres, now=now, skill=skill, org=org, live=live)
    offset = decode_cursor(cursor, "o") if cursor else 0
    word_sql = None
    if words:
        params.update(text_params(postgres=postgres, q=q, fts=fts), limit=FUSION_DEPTH, offset=0)
        word_sql = cached_text(text_ranked_sql(postgres=postgres, where=where, records=False))
    rows_sql = _vectors_sql(where, skill=bool(skill))
    vector_sql = (f"SELECT array_agg(agent_pk ORDER BY agent_pk), string_agg(embedding, ''::bytea ORDER BY agent_pk) "
                  f"FROM ({rows_sql}) w")
    allowed = allowed_sql(where, postgres=postgres) if len(where) > 1 else None
    live_sql = None if live is None else allowed_sql([where[0], live_filter(live)], postgres=postgres)
    return HybridQuery(word_sql, cached_text(vector_sql), cached_text(rows_sql), allowed, postgres, params, query,
                       offset, limit, words_query(q, skill=skill, org=org) if words else None, live_sql)


_PAGE = f"SELECT agent_pk, embedding FROM agent_vectors WHERE agent_pk > :after ORDER BY agent_pk LIMIT {BUILD_PAGE}"


def read_vectors(conn: Connection, *, postgres: bool, after: int, dim: int
                 ) -> tuple[NDArray[np.int64], NDArray[np.float16], int | None]:
    """Up to :data:`BUILD_PAGE` stored vectors of agents past pk ``after``, in pk order, and the last pk read
    (None past the end)."""
    page = HybridQuery(None, cached_text("SELECT array_agg(agent_pk ORDER BY agent_pk), "
                                         "string_agg(embedding, ''::bytea ORDER BY agent_pk) FROM (" + _PAGE + ") w"),
                       cached_text(_PAGE), None, postgres, {"after": after}, np.zeros(dim, dtype=np.float32), 0, 0,
                       None, None)
    ids, matrix = page._candidates(conn)
    if len(ids):
        return ids, matrix, int(ids[-1])
    last = conn.execute(cached_text("SELECT max(agent_pk) FROM (" + _PAGE + ") w"), {"after": after}).scalar()
    return ids, matrix, None if last is None else int(last)


def _vectors_sql(where: list[str], *, skill: bool) -> str:
    """(pk, vector) of every candidate: revoked agents have no vector, so without other filters this reads the
    vectors table alone; a skill walks its (skill_id, agent_pk) index; organisation and liveness read agents."""
    others = [w for w in where[1:] if w != SKILL_FILTER]  # where[0] is the revoked filter
    sql = "SELECT v.agent_pk, v.embedding FROM "
    if skill:
        sql += "agent_skills s JOIN agent_vectors v ON v.agent_pk = s.agent_pk "
    else:
        sql += "agent_vectors v "
    if others:
        sql += "JOIN agents a ON a.pk = v.agent_pk "
    conditions = (["s.skill_id = :skill"] if skill else []) + others
    return (sql + (f"WHERE {' AND '.join(conditions)} " if conditions else "")
            + f"ORDER BY {'s' if skill else 'v'}.agent_pk DESC LIMIT {MEANING_WINDOW}")
