"""The hand-written maths checked against the reference libraries: scipy for the beta interval, scikit-learn
for the flywheel's TF-IDF, silhouette and k-means.

The product keeps its own small implementations (the reasons are in :mod:`guildnet.protocols.reputation` and
:mod:`guildnet.node.flywheel.vectors`: fractional evidence near zero; no numpy in the node's dependencies);
these tests are what makes that choice safe.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from scipy import special, stats
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score, silhouette_score

from guildnet.node.flywheel.vectors import dot, kmeans, silhouette, tfidf, tokens
from guildnet.protocols.reputation import beta_ppf, betainc

SHAPES = [0.05, 0.3, 1.0, 1.7, 3.0, 12.5, 80.0, 400.0]


@pytest.mark.parametrize(("a", "b"), list(itertools.product(SHAPES, SHAPES)))
def test_regularised_incomplete_beta_matches_scipy(a: float, b: float) -> None:
    for x in (0.0, 1e-6, 0.01, 0.2, 0.5, 0.77, 0.999, 1.0):
        assert betainc(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), abs=1e-9)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(SHAPES, SHAPES)))
def test_beta_quantile_matches_scipy(a: float, b: float) -> None:
    for q in (0.025, 0.1, 0.5, 0.9, 0.975):
        assert beta_ppf(q, a, b) == pytest.approx(float(stats.beta.ppf(q, a, b)), abs=1e-9)


TEXTS = [
    "refund my order 4411 please", "I want a refund for order 12", "where is my parcel", "parcel not delivered",
    "cancel my subscription today", "please cancel the subscription", "refund refund refund", "<EMAIL> wrote in",
    "translate this to french", "my order never arrived, refund", "the parcel came broken", "subscription renewal",
]


def test_tfidf_weights_match_scikit_learn() -> None:
    docs = [tokens(t) for t in TEXTS]
    ours = tfidf(docs)
    vectorizer = TfidfVectorizer(analyzer=lambda doc: doc, sublinear_tf=True, smooth_idf=True, norm="l2")
    matrix = vectorizer.fit_transform(docs).toarray()
    vocabulary = vectorizer.vocabulary_
    for row, vector in zip(matrix, ours, strict=True):
        expected = {term: float(row[index]) for term, index in vocabulary.items() if row[index] != 0.0}
        assert vector.keys() == expected.keys()
        for term, weight in vector.items():
            assert weight == pytest.approx(expected[term], abs=1e-9)


def test_silhouette_matches_scikit_learn_on_a_precomputed_distance() -> None:
    rng = random.Random(7)
    vectors = tfidf([tokens(t) for t in TEXTS])
    distance = [[max(1.0 - dot(u, v), 0.0) if i != j else 0.0 for j, v in enumerate(vectors)]
                for i, u in enumerate(vectors)]
    for _ in range(20):
        labels = [rng.randrange(3) for _ in vectors]
        if len(set(labels)) < 2:
            continue
        expected = float(silhouette_score(np.array(distance), labels, metric="precomputed"))
        assert silhouette(distance, labels) == pytest.approx(expected, abs=1e-9)


def test_kmeans_finds_the_same_partition_as_scikit_learn_on_separable_data() -> None:
    rng = random.Random(3)
    centres = [{"refund": 1.0}, {"parcel": 1.0}, {"cancel": 1.0}]
    vectors = []
    for i in range(60):
        centre = centres[i % 3]
        noisy = {**{t: w + rng.uniform(0.0, 0.05) for t, w in centre.items()}, f"noise{rng.randrange(5)}": 0.2}
        norm = sum(w * w for w in noisy.values()) ** 0.5
        vectors.append({t: w / norm for t, w in noisy.items()})
    ours, _ = kmeans(vectors, 3, seed=0)
    terms = sorted({t for v in vectors for t in v})
    dense = np.array([[v.get(t, 0.0) for t in terms] for v in vectors])
    reference = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(dense)
    assert adjusted_rand_score(ours, reference) == 1.0
    assert adjusted_rand_score(ours, [i % 3 for i in range(60)]) == 1.0
