"""Text embeddings that work offline: the one model node and registry share (guildnet.embedding).

A leaf package: it imports nothing of guildnet's, so the registry (search by meaning) and the node (clustering
process data) may both use it. The default model is a static model distilled from all-MiniLM-L6-v2 and shipped
inside this package (``model/``, Apache-2.0, see ``model/NOTICE.md``): nothing is downloaded, ever.

    from guildnet.embedding import default_embedder
    vectors = default_embedder().embed(["pull the amounts out of a vendor bill"])   # (1, 256) float32, unit rows
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .static import StaticEmbedder

MODEL_DIR = Path(__file__).resolve().parent / "model"


class Embedder(Protocol):
    """Texts in, unit vectors out: cosine similarity of two texts is the dot product of their rows."""

    model_id: str
    """Names the model and weights: store it beside vectors, and never compare vectors of two models."""

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Shape ``(len(texts), dimensions)``, float32; a row is all zeros when its text has no known token."""
        ...


@lru_cache(maxsize=1)
def default_embedder() -> StaticEmbedder:
    """The bundled model, loaded once per process (~15 MB, well under a second)."""
    return StaticEmbedder.load(MODEL_DIR)


__all__ = ["MODEL_DIR", "Embedder", "StaticEmbedder", "default_embedder"]
