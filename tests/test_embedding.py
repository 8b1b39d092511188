"""The bundled static embedding model (guildnet.embedding): what it ships, and that it matches by meaning."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest

from guildnet.embedding import MODEL_DIR, SEARCH_MODEL_DIR, StaticEmbedder, default_embedder, search_embedder

AGENTS = [
    "Extracts line items and totals from supplier invoices",
    "Translates web pages and documents into French, German or Spanish",
    "Tracks parcels and reports where a shipment is and when it will arrive",
    "Writes unit tests for Python functions",
    "Books meeting rooms and sends calendar invitations",
]


def test_the_weights_are_the_ones_the_config_names() -> None:
    """A truncated copy or a Git LFS pointer in place of the weights fails here, not as nonsense rankings."""
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest() == config["sha256"]
    assert default_embedder().model_id.endswith(config["sha256"][:12])
    assert (MODEL_DIR / "NOTICE.md").read_text().count("Apache License 2.0") == 1
    search = json.loads((SEARCH_MODEL_DIR / "config.json").read_text())
    assert hashlib.sha256((SEARCH_MODEL_DIR / "model.safetensors").read_bytes()).hexdigest() == search["sha256"]
    assert search_embedder().model_id.endswith(search["sha256"][:12])
    assert search_embedder().model_id != default_embedder().model_id
    assert (SEARCH_MODEL_DIR / "NOTICE.md").read_text().count("Apache License 2.0") == 1
    assert (SEARCH_MODEL_DIR / "tokenizer.json").read_bytes() == (MODEL_DIR / "tokenizer.json").read_bytes()


def test_rows_are_unit_vectors_and_a_text_without_tokens_is_zero() -> None:
    embedder = default_embedder()
    vectors = embedder.embed([*AGENTS, "", "   "])
    assert vectors.shape == (len(AGENTS) + 2, embedder.dimensions) == (7, 256)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:5], axis=1), 1.0, atol=1e-5)
    assert not vectors[5:].any()
    assert embedder.embed([]).shape == (0, 256)


def test_a_batch_embeds_each_text_as_alone() -> None:
    embedder = default_embedder()
    batch = embedder.embed(AGENTS)
    for text, row in zip(AGENTS, batch, strict=True):
        assert np.allclose(embedder.embed([text])[0], row, atol=1e-6)


@pytest.mark.parametrize("embedder", [default_embedder(), search_embedder()], ids=["default", "search"])
def test_paraphrases_that_share_no_word_find_the_right_description(embedder: StaticEmbedder) -> None:
    agents = embedder.embed(AGENTS)
    requests = {
        "pull the amounts out of a vendor bill": 0,
        "put this site in another language": 1,
        "has my package been delivered yet": 2,
        "check my code with some automated checks": 3,
        "schedule a conference with my colleagues": 4,
    }
    for request, expected in requests.items():
        assert not set(request.lower().split()) & set(AGENTS[expected].lower().split()), request
        scores = agents @ embedder.embed([request])[0]
        assert int(np.argmax(scores)) == expected, (request, scores.round(2).tolist())


def test_work_per_text_is_bounded() -> None:
    """A megabyte of untrusted text costs no more than its first few thousand characters."""
    embedder = default_embedder()
    start = time.process_time()
    huge = embedder.embed(["invoice " * 125_000])
    assert time.process_time() - start < 1.0
    assert np.allclose(huge, embedder.embed(["invoice " * 1000]), atol=1e-6)
