"""Text search by words and by meaning at once: one read runs the ranked full-text query and brute-force cosine
over the filtered agents' vectors, fuses both rankings (:func:`guildnet.registry.meaning.fuse`) and reads the
records of one page.

Each ranking is cut at :data:`FUSION_DEPTH`, so a query lists at most twice that many agents: enough for a person
or a delegating node to choose from, and it bounds the work per page. Brute force reads every vector the filters
leave (512 bytes an agent); a skill narrows it through the (skill_id, agent_pk) index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Row

from ..meaning import fuse, rank_by_meaning
from .results import RECORD_COLUMNS
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
MATCHES = ("hybrid", "words", "meaning")
"""``match=``: both rankings fused (the default), full-text search alone, or meaning alone."""
_RECORDS = text(f"SELECT {RECORD_COLUMNS}, a.pk FROM agents a WHERE a.pk IN :pks").bindparams(
    bindparam("pks", expanding=True))


@dataclass(frozen=True, slots=True)
class HybridQuery:
    words: Any
    """The ranked full-text statement (pks, best first), or None for meaning alone or a query with no word."""
    vectors: Any
    params: dict[str, Any]
    query: NDArray[np.float32]
    offset: int
    limit: int

    def run(self, conn: Connection) -> tuple[list[Row[Any]], str | None]:
        """One page of records in fused order, and the cursor of the next page (None on the last)."""
        words: Sequence[int] = conn.execute(self.words, self.params).scalars().all() if self.words is not None else []
        candidates = conn.execute(self.vectors, self.params).all()
        by_meaning = rank_by_meaning(self.query, [r[0] for r in candidates], [r[1] for r in candidates],
                                     depth=FUSION_DEPTH)
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
        word_sql = cached_text(text_ranked_sql(postgres=postgres, where=where, columns="a.pk"))
    if skill:
        scoped = [w if w != SKILL_FILTER else "s.skill_id = :skill" for w in where]
        vector_sql = ("SELECT a.pk, a.embedding FROM agent_skills s JOIN agents a ON a.pk = s.agent_pk "
                      f"WHERE {' AND '.join(scoped)}")
    else:
        vector_sql = f"SELECT a.pk, a.embedding FROM agents a WHERE {' AND '.join(where)}"
    return HybridQuery(word_sql, cached_text(vector_sql), params, query, offset, limit)
