"""Text vectors and clustering maths for the flywheel: TF-IDF, spherical k-means, silhouette.

Pure Python on purpose: TF-IDF over short texts (words and bigrams), spherical k-means (cosine) with k-means++
seeding, and the mean silhouette to choose k. numpy is not in the node's dependency tree, and scikit-learn +
scipy would add ~200 MB for a job that runs on a few thousand short texts. ``tests/test_flywheel_vectors.py``
checks each function against scikit-learn (the same TF-IDF weights and silhouette to 1e-9, the same partition
on separable data), so the size saving costs no correctness.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

Vector = dict[str, float]
_PLACEHOLDER = re.compile(r"<([A-Z]+)(?::[0-9a-f]{8})?>")
_WORD = re.compile(r"[a-z][a-z0-9_'-]*|\d+|<[a-z]+>")


def tokens(text: str) -> list[str]:
    """Lower-case words and ``#`` for numbers, PII placeholders as their type, plus word bigrams."""
    text = _PLACEHOLDER.sub(lambda m: f" <{m.group(1).lower()}> ", text).lower()
    words = ["#" if w.isdigit() else w for w in _WORD.findall(text)]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def tfidf(docs: Sequence[list[str]]) -> list[Vector]:
    """Sublinear tf (1 + log count) times smoothed idf, L2-normalised sparse vectors."""
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(doc))
    n = len(docs)
    idf = {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in df.items()}
    vectors = []
    for doc in docs:
        weights = {t: (1.0 + math.log(c)) * idf[t] for t, c in Counter(doc).items()}
        norm = math.sqrt(math.fsum(w * w for w in weights.values())) or 1.0
        vectors.append({t: w / norm for t, w in weights.items()})
    return vectors


def dot(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def centroid(members: Sequence[Vector]) -> Vector:
    total: dict[str, float] = defaultdict(float)
    for vector in members:
        for t, w in vector.items():
            total[t] += w
    norm = math.sqrt(math.fsum(w * w for w in total.values())) or 1.0
    return {t: w / norm for t, w in total.items()}


def nearest(vector: Vector, centroids: Sequence[Vector]) -> int:
    """Index of the centroid with the highest cosine similarity (ties: the lowest index)."""
    similarities = [dot(vector, c) for c in centroids]
    return similarities.index(max(similarities))


def kmeans(vectors: Sequence[Vector], k: int, *, seed: int = 0, n_init: int = 3,
           max_iter: int = 30) -> tuple[list[int], list[Vector]]:
    """Spherical k-means (cosine) with k-means++ seeding; the best of ``n_init`` runs by inertia."""
    rng = random.Random(seed)
    best: tuple[float, list[int], list[Vector]] | None = None
    for _ in range(n_init):
        centroids = [vectors[rng.randrange(len(vectors))]]
        distance = [max(1.0 - dot(v, centroids[0]), 0.0) for v in vectors]
        while len(centroids) < k:
            cumulative = list(itertools.accumulate(distance))
            if cumulative[-1] <= 0:
                break
            index = min(bisect.bisect_left(cumulative, rng.random() * cumulative[-1]), len(vectors) - 1)
            centroids.append(vectors[index])
            distance = [min(d, max(1.0 - dot(v, vectors[index]), 0.0)) for d, v in zip(distance, vectors, strict=True)]
        labels: list[int] = []
        for _ in range(max_iter):
            new = [nearest(v, centroids) for v in vectors]
            if new == labels:
                break
            labels = new
            groups: dict[int, list[Vector]] = defaultdict(list)
            for v, label in zip(vectors, labels, strict=True):
                groups[label].append(v)
            centroids = [centroid(groups[j]) if groups[j] else centroids[j] for j in range(len(centroids))]
        inertia = math.fsum(1.0 - dot(v, centroids[label]) for v, label in zip(vectors, labels, strict=True))
        if best is None or inertia < best[0]:
            best = (inertia, labels, centroids)
    assert best is not None
    return best[1], best[2]


def silhouette(distance: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """Mean silhouette coefficient for a precomputed distance matrix (Rousseeuw 1987)."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        members[label].append(i)
    if len(members) < 2:
        return -1.0
    scores = []
    for i, label in enumerate(labels):
        own = members[label]
        if len(own) == 1:
            scores.append(0.0)
            continue
        a = sum(distance[i][j] for j in own if j != i) / (len(own) - 1)
        b = min(sum(distance[i][j] for j in group) / len(group) for other, group in members.items() if other != label)
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return sum(scores) / len(scores)
