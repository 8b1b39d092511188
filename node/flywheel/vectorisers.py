"""What the flywheel clusters tasks on: their wording (TF-IDF) or their meaning (sentence embeddings).

Both turn task texts into unit vectors for the same spherical k-means (:mod:`.vectors`), so the choice is one
setting (``[node] cluster_vectors``, ``--vectors``). ``auto`` takes embeddings when ``guildnet.embedding`` loads:
on the ticket benchmark (bench/flywheel_clusters.py) they group tickets by category where TF-IDF groups them by
template (purity in docs/flywheel.md).

Embeddings are centred on the mean of the texts clustered together before k-means: every text of one node's
process data shares the skill name and the phrasing habits of its callers, and a static model's mean of token
vectors carries that shared part in every row, so raw cosines sit close together and k-means follows noise.
Subtracting the batch mean leaves what tells the texts apart (measured on the ticket benchmark at k = 8:
purity 0.77-0.84 raw, 0.835-0.932 centred; docs/flywheel.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from .vectors import Vector, tfidf, tokens

if TYPE_CHECKING:
    from guildnet.embedding import Embedder

VectorChoice = Literal["auto", "embedding", "tfidf"]
VECTOR_CHOICES: tuple[VectorChoice, ...] = ("auto", "embedding", "tfidf")


class Vectoriser(Protocol):
    name: str
    """``tfidf`` or the embedding model's id: reports say which vectors their clusters come from."""

    def vectors(self, texts: Sequence[str]) -> list[Vector]:
        """One unit vector per text, comparable with the others of the same call only."""
        ...


class TfidfVectoriser:
    """Words and bigrams of each text, weighted by TF-IDF over the texts clustered together."""

    name = "tfidf"

    def vectors(self, texts: Sequence[str]) -> list[Vector]:
        return tfidf([tokens(text) for text in texts])


class EmbeddingVectoriser:
    """Sentence embeddings of the texts, centred on their mean and re-normalised."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.name = embedder.model_id

    def vectors(self, texts: Sequence[str]) -> list[Vector]:
        import numpy as np

        rows = self.embedder.embed(texts).astype(np.float64)
        if len(rows):
            rows -= rows.mean(axis=0)
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        keys = [f"e{i}" for i in range(rows.shape[1])]
        return [dict(zip(keys, row.tolist(), strict=True)) for row in rows]


def vectoriser(choice: VectorChoice = "auto") -> Vectoriser:
    """The vectoriser a setting names; ``auto``: embeddings when the bundled model loads, else TF-IDF."""
    if choice == "tfidf":
        return TfidfVectoriser()
    try:
        from guildnet.embedding import default_embedder

        return EmbeddingVectoriser(default_embedder())
    except (ImportError, OSError) as exc:
        if choice == "embedding":
            raise RuntimeError(f"cluster_vectors = 'embedding' but the embedding model does not load: {exc}") from exc
        return TfidfVectoriser()
