"""Search by meaning: what text of an agent is embedded, how its vector is stored, and how a query's matches by
meaning are fused with its matches by words (pure: no I/O).

Full-text search needs every query word in the record, so "pull the amounts out of a vendor bill" never finds an
agent that "extracts line items and totals from supplier invoices" (recall@5 0.00 on such requests, issue 16).
Each agent's name, description and skills are embedded once, at registration, by the bundled static model
(``guildnet.embedding``); a query is embedded on arrival, compared by cosine with the candidates the other
filters leave (brute force: ~1 µs an agent), and the two rankings are fused by reciprocal rank, so an agent that
matches both the words and the sense ranks first and one that matches either still ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from guildnet.embedding import default_embedder
from guildnet.protocols.agentfacts import AgentFacts

STORED_DTYPE = np.float16
"""Vectors are stored as float16 (512 bytes for 256 dimensions): half the bytes of float32 to read per query,
and cosines change by < 1e-3, far below the gaps that order results."""

MIN_COSINE = 0.30
"""A match by meaning alone must be at least this close: below it a query's nearest agents are unrelated ones
(bench/discovery.py measures the distribution of right and wrong matches)."""

FUSION_K = 60
"""Reciprocal-rank fusion constant (Cormack et al. 2009): a match at rank r adds 1/(FUSION_K + r)."""


def agent_text(facts: AgentFacts) -> str:
    """What a requester's words should be compared with: the agent's name and description, and each skill's
    name, description and tags."""
    parts = [facts.name, facts.description]
    for skill in facts.skills:
        parts.append(" ".join([skill.name, skill.description, *skill.tags]))
    return ". ".join(p for p in parts if p)


def embed_facts(facts: AgentFacts) -> bytes:
    """The stored vector of one agent's facts."""
    vector: NDArray[np.float16] = default_embedder().embed([agent_text(facts)])[0].astype(STORED_DTYPE)
    return vector.tobytes()


def embed_query(q: str) -> NDArray[np.float32]:
    row: NDArray[np.float32] = default_embedder().embed([q])[0]
    return row


def rank_by_meaning(query: NDArray[np.float32], pks: Sequence[int], vectors: Sequence[bytes | None], *,
                    depth: int) -> list[int]:
    """The ``depth`` candidates closest to ``query`` (at least :data:`MIN_COSINE`), best first, ties by pk.

    A stored vector of another size (another model) is skipped, never compared."""
    width = query.shape[0] * np.dtype(STORED_DTYPE).itemsize
    keep = [i for i, blob in enumerate(vectors) if blob is not None and len(blob) == width]
    if not keep or not query.any():
        return []
    matrix = np.frombuffer(b"".join(vectors[i] or b"" for i in keep), dtype=STORED_DTYPE).reshape(len(keep), -1)
    scores = matrix.astype(np.float32) @ query
    ids = np.fromiter((pks[i] for i in keep), dtype=np.int64, count=len(keep))
    close = np.flatnonzero(scores >= MIN_COSINE)
    if len(close) > depth:
        close = close[np.argpartition(-scores[close], depth - 1)[:depth]]
    order = np.lexsort((ids[close], -scores[close]))
    return [int(pk) for pk in ids[close][order]]


def fuse(*rankings: Sequence[int]) -> list[int]:
    """Reciprocal-rank fusion of best-first rankings of pks: the fused order, ties by pk."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, pk in enumerate(ranking, start=1):
            scores[pk] = scores.get(pk, 0.0) + 1.0 / (FUSION_K + rank)
    return sorted(scores, key=lambda pk: (-scores[pk], pk))
