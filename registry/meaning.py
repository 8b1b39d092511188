"""Search by meaning: what text of an agent is embedded, how its vector is stored, and how a query's matches by
meaning are fused with its matches by words (pure: no I/O).

Full-text search needs every query word in the record, so "pull the amounts out of a vendor bill" never finds an
agent that "extracts line items and totals from supplier invoices" (recall@5 0.00 on such requests, issue 16).
Each agent's name, description and skills are embedded once, at registration, by the bundled static search
model (``guildnet.embedding.search_embedder``); a query is embedded on arrival (without its function words),
compared by cosine with the candidates the other filters leave (brute force: ~1 µs an agent), and the two
rankings are fused by reciprocal rank, so an agent that matches both the words and the sense ranks first and one
that matches either still ranks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from guildnet.embedding import search_embedder

STORED_DTYPE = np.float16
"""Vectors are stored as float16 (512 bytes for 256 dimensions): half the bytes of float32 to read per query,
and cosines change by < 1e-3, far below the gaps that order results."""

MIN_COSINE = 0.15
"""A match by meaning alone must be at least this close, so a query whose nearest agents are all unrelated lists
none. Its scale is the search model's: chosen on bench/discovery.py's requests for half of the skills as the
largest threshold that loses none of their right answers (0.30 suited the distilled model; with the search
model it dropped a right agent from a fifth of the first fives), and checked on the other half (skill recall@5
0.684 at 0.15 and with no threshold at all; 0.580 at 0.30)."""

FUSION_K = 60
"""Reciprocal-rank fusion constant (Cormack et al. 2009): a match at rank r adds 1/(FUSION_K + r)."""


def agent_text(facts: Mapping[str, Any]) -> str:
    """What a requester's words should be compared with: the agent's name and description, and each skill's
    name, description and tags, read from the facts as JSON (registrations are validated before; stored facts
    are read as they are, so a field of an unexpected type is left out rather than failing)."""
    parts = [_text(facts.get("name")), _text(facts.get("description"))]
    skills = facts.get("skills")
    for skill in skills if isinstance(skills, list) else []:
        if isinstance(skill, dict):
            tags = skill.get("tags")
            parts.append(" ".join([_text(skill.get("name")), _text(skill.get("description")),
                                   *(_text(t) for t in (tags if isinstance(tags, list) else []))]).strip())
    return ". ".join(p for p in parts if p)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def embed_facts(facts: Mapping[str, Any]) -> bytes:
    """The stored vector of one agent's facts (as JSON)."""
    vector: NDArray[np.float16] = search_embedder().embed([agent_text(facts)])[0].astype(STORED_DTYPE)
    return vector.tobytes()


QUERY_STOPWORDS = frozenset("""
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
    it its itself they them their theirs themselves what which who whom this that these those am is are was were be
    been being have has had having do does did doing a an the and but if or because as until while of at by for with
    about against between into through during before after above below to from up down in out on off over under again
    further then once here there when where why how all any both each few more most other some such no nor not only
    own same so than too very s t can will just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn
    haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn
    """.split())
"""Words a query's vector is computed without: English function words (NLTK's English stop word list, closed
classes only: pronouns, determiners, prepositions, auxiliaries, conjunctions; no noun or verb of any domain). A
static model averages its tokens, so in "what do we owe on this purchase receipt" five of its seven words say nothing
of the job and pull the query towards every text that shares them. Agents' texts are embedded whole (providers
write few such words, and stored vectors need no change). On bench/discovery.py's paraphrased requests skill
recall@5 goes from 0.462 to 0.532 through the registry (docs/registry-api.md, bench/discovery_models.py)."""

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def query_text(q: str) -> str:
    """``q`` without :data:`QUERY_STOPWORDS` (as whole words, any case; a contraction's parts each count), or
    ``q`` itself when nothing else is left."""
    kept = _WORD.sub(lambda m: "" if all(p in QUERY_STOPWORDS for p in m.group().lower().split("'")) else m.group(), q)
    kept = " ".join(kept.split())
    return kept if _WORD.search(kept) else q


def embed_query(q: str) -> NDArray[np.float32]:
    row: NDArray[np.float32] = search_embedder().embed([query_text(q)])[0]
    return row


def stack(query: NDArray[np.float32], pks: Sequence[int], vectors: Sequence[bytes]
          ) -> tuple[NDArray[np.int64], NDArray[np.float16]]:
    """Candidates' pks and stored vectors as arrays (one join, no copy per row). A vector of another size
    (another model's) is left out, never compared."""
    width = query.shape[0] * np.dtype(STORED_DTYPE).itemsize
    joined = b"".join(vectors)
    if len(joined) != width * len(vectors):
        keep = [i for i, blob in enumerate(vectors) if len(blob) == width]
        pks, joined = [pks[i] for i in keep], b"".join(vectors[i] for i in keep)
    ids = np.fromiter(pks, dtype=np.int64, count=len(pks))
    return ids, np.frombuffer(joined, dtype=STORED_DTYPE).reshape(len(ids), query.shape[0])


def rank_by_meaning(query: NDArray[np.float32], ids: NDArray[np.int64], matrix: NDArray[np.float16], *,
                    depth: int) -> list[int]:
    """The ``depth`` candidates closest to ``query`` (at least :data:`MIN_COSINE`), best first, ties by pk."""
    if not len(ids) or not query.any():
        return []
    # einsum, not @: BLAS's matrix-vector product runs on two threads here, and on a loaded machine waits for the
    # second (10,000 x 256: 11 ms with two OpenBLAS threads, 0.6 ms with one, 0.8 ms in einsum's own loop).
    scores = np.einsum("ij,j->i", matrix.astype(np.float32), query)
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
