"""Text search by words and by meaning at once: one read runs the ranked full-text query and brute-force cosine
over the filtered agents' vectors, fuses both rankings (:func:`guildnet.registry.meaning.fuse`) and reads the
records of one page.

Each ranking is cut at :data:`FUSION_DEPTH`, so a query lists at most twice that many agents: enough for a person
or a delegating node to choose from, and it bounds the work per page. Brute force reads every vector the filters
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

from ..meaning import STORED_DTYPE, fuse, rank_by_meaning, stack
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

FUSION_DEPTH = 100
MEANING_WINDOW = 10_000
"""Candidates compared by meaning at most: the most recently registered, when the filters leave more. Brute force
costs ~1.7 µs of registry CPU an agent (10,000: 17 ms on SQLite, 11 ms + the database's on PostgreSQL, measured
by bench/discovery.py --filler under load 6), so past this many one search would cost more than a hundred
registrations (a skill filter narrows the candidates first). An index that is not brute force is what lifts it."""
MATCHES = ("hybrid", "words", "meaning")
"""``match=``: both rankings fused (the default), full-text search alone, or meaning alone."""
_RECORDS = text(f"SELECT {RECORD_COLUMNS}, a.pk FROM agents a {LIVENESS_JOIN} WHERE a.pk IN :pks").bindparams(
    bindparam("pks", expanding=True))


@dataclass(frozen=True, slots=True)
class HybridQuery:
    words: Any
    """The ranked full-text statement (pks, best first), or None for meaning alone or a query with no word."""
    vectors: Any
    """PostgreSQL: the candidates as one row (pks array, vectors concatenated); SQLite: unused."""
    rows: Any
    """The candidates as rows of (pk, vector)."""
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

    def run(self, conn: Connection) -> tuple[list[Row[Any]], str | None]:
        """One page of records in fused order, and the cursor of the next page (None on the last)."""
        words: Sequence[int] = conn.execute(self.words, self.params).scalars().all() if self.words is not None else []
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
    return HybridQuery(word_sql, cached_text(vector_sql), cached_text(rows_sql), postgres, params, query, offset,
                       limit)


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
