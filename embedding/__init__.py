"""Text embeddings that work offline: the one model node and registry share (guildnet.embedding).

A leaf package: it imports nothing of guildnet's, so the registry (search by meaning) and the node (clustering
process data) may both use it. The default model is a static model distilled from all-MiniLM-L6-v2 and shipped
inside this package (``model/``, Apache-2.0, see ``model/NOTICE.md``): nothing is downloaded, ever. Registry search
by meaning uses a second one fitted for sentences (``search_model/``, :func:`search_embedder`).

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
SEARCH_MODEL_DIR = Path(__file__).resolve().parent / "search_model"


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


@lru_cache(maxsize=1)
def search_embedder() -> StaticEmbedder:
    """The model registry search by meaning uses (``search_model/``): the same tokenizer and width, its token
    vectors fitted so that their mean reproduces all-MiniLM-L6-v2's *sentence* vectors of 57,000 PyPI package
    summaries (scripts/tokenlearn_embedder.py). On bench/discovery.py's paraphrased requests it finds a right
    agent among the first five for 0.64 of them, against 0.46 for the default model; it clusters the flywheel's
    short padded requests worse (tests/test_flywheel_meaning.py: purity 0.69 against >= 0.9), so the node keeps
    :func:`default_embedder`."""
    return StaticEmbedder.load(SEARCH_MODEL_DIR)


__all__ = ["MODEL_DIR", "SEARCH_MODEL_DIR", "Embedder", "StaticEmbedder", "default_embedder", "search_embedder"]
