"""Text search by words and by meaning at once: one read runs the ranked full-text query, ranks the agents by
meaning, fuses both rankings (:func:`guildnet.registry.meaning.fuse`) and reads the records of one page.

Each ranking is cut at :data:`FUSION_DEPTH`, so a query lists at most twice that many agents: enough for a person
or a delegating node to choose from, and it bounds the work per page.

The ranking by meaning asks the process's :class:`~.vectors.VectorIndex` of every unrevoked agent, first caught up
with the change feed to the position the read reports (so a search sees every write before it, on any replica).
With a skill, organisation or liveness filter it asks for :data:`OVERFETCH` agents and keeps those the filters
allow (one indexed lookup each). When fewer than :data:`FUSION_DEPTH` remain although all of them were close
enough (more may follow), and while the index is built at start-up, brute force reads the vectors the filters
leave (``agent_vectors``, 512 bytes an agent), at most :data:`MEANING_WINDOW` of them; a skill narrows them
through the (skill_id, agent_pk) index.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    cached_text,
    check_limit,
    decode_cursor,
    encode_cursor,
    filters,
    fts5_query,
    text_params,
    text_ranked_sql,
)
from .vectors import VectorIndex

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
_CHANGED = text("SELECT c.seq, a.pk, v.embedding FROM changes c JOIN agents a ON a.id = c.agent_id "
                "LEFT JOIN agent_vectors v ON v.agent_pk = a.pk "
                "WHERE c.seq > :after AND c.seq <= :upto AND c.kind IN ('registered', 'updated', 'revoked') "
                "ORDER BY c.seq LIMIT :limit")
CATCH_UP_ROWS = 5_000
BUILD_PAGE = 20_000
"""Vectors read per statement while the index is built (10 MB)."""


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

    def _from_index(self, conn: Connection, index: VectorIndex) -> list[int] | None:
        """The ranking by meaning from ``index``, or None when a filter left it short and more may be close."""
        asked = OVERFETCH if self.allowed is not None else FUSION_DEPTH
        ids, scores = index.search(self.query, asked)
        close = scores >= MIN_COSINE
        ids, scores = ids[close], scores[close]
        ranked = [int(pk) for pk in ids[np.lexsort((ids, -scores))]]
        if self.allowed is None or not ranked:
            return ranked[:FUSION_DEPTH]
        allowed = set(conn.execute(self.allowed, {**self.params, "pks": ranked}).scalars().all())
        kept = [pk for pk in ranked if pk in allowed]
        if len(kept) < FUSION_DEPTH and len(ranked) == asked:
            return None
        return kept[:FUSION_DEPTH]

    def run(self, conn: Connection, index: VectorIndex | None = None) -> tuple[list[Row[Any]], str | None]:
        """One page of records in fused order, and the cursor of the next page (None on the last)."""
        words: Sequence[int] = conn.execute(self.words, self.params).scalars().all() if self.words is not None else []
        by_meaning = self._from_index(conn, index) if index is not None else None
        if by_meaning is None:
            by_meaning = rank_by_meaning(self.query, *self._candidates(conn), depth=FUSION_DEPTH)
        ranked = fuse(words, by_meaning)
        page = ranked[self.offset:self.offset + self.limit]
        if not page:
            return [], None
        rows = {row[-1]: row for row in conn.execute(_RECORDS, {"pks": page}).all()}
        more = len(ranked) > self.offset + self.limit
        return ([rows[pk] for pk in page if pk in rows],
                encode_cursor({"o": self.offset + self.limit}) if more else None)


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
    allowed = None
    if len(where) > 1:
        # one indexed lookup per candidate: EXISTS, not IN (SELECT ...), which may read every agent of the skill
        conditions = [w if w != SKILL_FILTER else
                      "EXISTS (SELECT 1 FROM agent_skills s WHERE s.skill_id = :skill AND s.agent_pk = a.pk)"
                      for w in where]
        among = "a.pk = ANY(:pks)" if postgres else "a.pk IN :pks"
        allowed = cached_text(f"SELECT a.pk FROM agents a WHERE {among} AND {' AND '.join(conditions)}")
        if not postgres:
            allowed = allowed.bindparams(bindparam("pks", expanding=True))
    return HybridQuery(word_sql, cached_text(vector_sql), cached_text(rows_sql), allowed, postgres, params, query,
                       offset, limit)


def catch_up(conn: Connection, index: VectorIndex, upto: int) -> None:
    """Bring ``index`` to change ``upto``: each agent registered, updated or revoked since its position is set to
    its vector in the database now (none once revoked)."""
    while index.position < upto:
        start = index.position
        rows = conn.execute(_CHANGED, {"after": start, "upto": upto, "limit": CATCH_UP_ROWS}).all()
        end = upto if len(rows) < CATCH_UP_ROWS else int(rows[-1][0])
        index.apply(start, end, [int(r[1]) for r in rows], [None if r[2] is None else bytes(r[2]) for r in rows])


_PAGE = f"SELECT agent_pk, embedding FROM agent_vectors WHERE agent_pk > :after ORDER BY agent_pk LIMIT {BUILD_PAGE}"


def read_vectors(conn: Connection, *, postgres: bool, after: int, dim: int
                 ) -> tuple[NDArray[np.int64], NDArray[np.float16], int | None]:
    """Up to :data:`BUILD_PAGE` stored vectors of agents past pk ``after``, in pk order, and the last pk read
    (None past the end)."""
    page = HybridQuery(None, cached_text("SELECT array_agg(agent_pk ORDER BY agent_pk), "
                                         "string_agg(embedding, ''::bytea ORDER BY agent_pk) FROM (" + _PAGE + ") w"),
                       cached_text(_PAGE), None, postgres, {"after": after}, np.zeros(dim, dtype=np.float32), 0, 0)
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
