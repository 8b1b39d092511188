"""A static embedding model: one learned vector per token, a text is the normalised mean of its tokens' vectors.

Why static: a transformer (the all-MiniLM-L6-v2 this model was distilled from) needs torch, 10 s to import and
~6 ms a text on this CPU; the static model needs numpy and a tokenizer, loads in well under a second and embeds
thousands of texts a second, which is what registering agents and clustering process data can afford. It keeps
enough of the transformer's sense of meaning to match paraphrases that share no word ("pull the amounts out of
a vendor bill" near "extracts line items and totals from supplier invoices"), which full-text search cannot.

The arithmetic is model2vec's ``StaticModel.encode`` (tokens without special tokens, unknown tokens dropped,
at most ``max_tokens`` tokens, mean, L2 norm), re-implemented so the product needs neither model2vec nor its
hub client: nothing here can reach the network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file
from tokenizers import Tokenizer


class StaticEmbedder:
    """Embeds texts as unit vectors (float32); the zero vector for a text with no known token."""

    def __init__(self, vectors: NDArray[np.floating], tokenizer: Tokenizer, *, model_id: str,
                 max_tokens: int = 512) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != tokenizer.get_vocab_size():
            raise ValueError(f"{vectors.shape[0]} token vectors for a vocabulary of {tokenizer.get_vocab_size()}")
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._tokenizer = tokenizer
        self._tokenizer.enable_truncation(max_tokens)
        self._tokenizer.no_padding()
        unk = tokenizer.token_to_id("[UNK]")
        self._unk = -1 if unk is None else unk
        # Cut texts to max_tokens * the median token length in characters before tokenising, as model2vec
        # does: the tokenizer's work stays bounded however long an untrusted text is.
        lengths = [len(token) for token in tokenizer.get_vocab()]
        self._max_chars = max_tokens * int(np.median(lengths))
        self.model_id = model_id
        """Names the model and its weights: vectors from different models must never be compared."""

    @classmethod
    def load(cls, directory: Path) -> StaticEmbedder:
        """A model saved as ``model.safetensors`` (tensor ``embeddings``), ``tokenizer.json``, ``config.json``."""
        config = json.loads((directory / "config.json").read_text())
        tensors = load_file(str(directory / "model.safetensors"))
        if set(tensors) != {"embeddings"}:
            raise ValueError(f"{directory}: expected one tensor named 'embeddings', found {sorted(tensors)}")
        return cls(tensors["embeddings"], Tokenizer.from_file(str(directory / "tokenizer.json")),
                   model_id=f"m2v-minilm-l6-v2-{config['dimensions']}-{config['sha256'][:12]}",
                   max_tokens=int(config["max_tokens"]))

    @property
    def dimensions(self) -> int:
        return int(self._vectors.shape[1])

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """One unit row per text, shape ``(len(texts), dimensions)``; cosine similarity is a dot product."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch_fast([t[:self._max_chars] for t in texts],
                                                      add_special_tokens=False)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        ids = [row[row != self._unk] for row in ids]
        counts = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        present = counts > 0
        if present.any():
            flat = np.concatenate([row for row in ids if len(row)])
            starts = np.concatenate(([0], np.cumsum(counts[present])[:-1]))
            sums = np.add.reduceat(self._vectors[flat], starts, axis=0)
            means = sums / counts[present, None]
            norms = np.linalg.norm(means, axis=1, keepdims=True)
            out[present] = means / np.maximum(norms, 1e-12)
        return out

    def embed_one(self, text: str) -> NDArray[np.float32]:
        """The unit vector of one text, shape ``(dimensions,)``."""
        row: NDArray[np.float32] = self.embed([text])[0]
        return row
