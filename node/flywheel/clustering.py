"""Recurring work in the process data (the seed's S3-S4): tasks clustered by what they ask, and which clusters
are worth handing to a specialised small model.

k-means runs on at most ``max_tasks`` tasks (a seeded sample) and the rest are assigned to the nearest
centroid; k is the one with the highest mean silhouette over k = 2..8 on a seeded sample. The vectors are
sentence embeddings (meaning) or TF-IDF (wording), see :mod:`.vectorisers`; a cluster's top terms always come
from TF-IDF, so a person can read what it is about either way.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .tasks import Task, group_tasks, load_rows
from .vectorisers import TfidfVectoriser, VectorChoice, Vectoriser, vectoriser
from .vectors import Vector, centroid, dot, kmeans, nearest, silhouette, tfidf, tokens


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


@dataclass(frozen=True, slots=True)
class CandidateRule:
    """When a cluster is worth a specialised SLM (S4): enough volume, one consistent task, and money or
    quality to gain (it escalates often, or costs more than its share of volume)."""

    min_volume_share: float = 0.10
    min_cohesion: float = 0.30
    min_skill_share: float = 0.80
    min_escalation_rate: float = 0.20
    cost_over_volume: float = 1.5


@dataclass(frozen=True, slots=True)
class Cluster:
    id: int
    size: int
    volume_share: float
    cost: float
    cost_share: float
    completion_rate: float
    escalation_rate: float
    cohesion: float
    skills: dict[str, int]
    top_terms: list[str]
    examples: list[str]
    candidate: bool
    why: str


@dataclass(frozen=True, slots=True)
class ClusterReport:
    k: int
    criterion: str
    silhouette_by_k: dict[int, float]
    tasks: int
    clusters: list[Cluster]
    labels: dict[str, int] = field(repr=False)
    vectors: str = "tfidf"
    """What the tasks were clustered on: ``tfidf`` or the embedding model's id."""

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "criterion": self.criterion, "vectors": self.vectors, "tasks": self.tasks,
                "silhouette_by_k": {str(k): v for k, v in self.silhouette_by_k.items()},
                "clusters": [asdict(c) for c in self.clusters]}

    def to_table(self) -> str:
        lines = [f"{self.tasks} tasks, k={self.k} ({self.criterion}; vectors: {self.vectors})",
                 f"{'id':>3} {'size':>6} {'volume':>7} {'cost':>7} {'escalate':>9} {'cohesion':>9} cand  top terms"]
        for c in self.clusters:
            lines.append(f"{c.id:>3} {c.size:>6} {c.volume_share:>7.1%} {c.cost_share:>7.1%} {c.escalation_rate:>9.1%} "
                         f"{c.cohesion:>9.2f} {'yes ' if c.candidate else 'no  '}  {', '.join(c.top_terms[:5])}")
            lines.extend(f"{'':>10}e.g. {example}" for example in c.examples)
        return "\n".join(lines) + "\n"


def task_text(task: Task) -> str:
    return " ".join([task.skill, *_strings(task.arguments)])


def cluster_tasks(tasks: Sequence[Task], *, k_range: range = range(2, 9), seed: int = 0, max_tasks: int = 2000,
                  silhouette_sample: int = 300, n_init: int = 4, rule: CandidateRule | None = None,
                  vectors_from: Vectoriser | None = None) -> ClusterReport:
    """Cluster ``tasks`` on the vectors ``vectors_from`` gives (default: TF-IDF)."""
    rule = rule or CandidateRule()
    vectors_from = vectors_from or TfidfVectoriser()
    if not tasks:
        return ClusterReport(0, "no tasks", {}, 0, [], {}, vectors_from.name)
    texts = [task_text(t) for t in tasks]
    vectors = vectors_from.vectors(texts)
    terms = vectors if isinstance(vectors_from, TfidfVectoriser) else tfidf([tokens(text) for text in texts])
    rng = random.Random(seed)
    fit_index = sorted(rng.sample(range(len(tasks)), min(max_tasks, len(tasks))))
    fit = [vectors[i] for i in fit_index]
    sample = sorted(rng.sample(range(len(fit)), min(silhouette_sample, len(fit))))
    distance = [[1.0 - dot(fit[i], fit[j]) for j in sample] for i in sample]
    scores: dict[int, float] = {}
    for k in k_range:
        if k >= len(sample):
            break
        labels, _ = kmeans([fit[i] for i in sample], k, seed=seed, n_init=n_init)
        scores[k] = silhouette(distance, labels)
    if scores:
        k = max(scores, key=lambda key: (scores[key], -key))
        criterion = f"max mean silhouette over k={min(scores)}..{max(scores)}"
    else:
        k, criterion = 1, "too few tasks to compare k"
    _, centroids = kmeans(fit, k, seed=seed, n_init=n_init)
    labels = [nearest(v, centroids) for v in vectors]
    return _describe(tasks, vectors, terms, labels, centroids, k, criterion, scores, rule, vectors_from.name)


def _describe(tasks: Sequence[Task], vectors: Sequence[Vector], terms: Sequence[Vector], labels: Sequence[int],
              centroids: Sequence[Vector], k: int, criterion: str, scores: dict[int, float],
              rule: CandidateRule, vectors_name: str) -> ClusterReport:
    total_cost = math.fsum(t.cost for t in tasks)
    clusters = []
    for j in range(len(centroids)):
        members = [i for i, label in enumerate(labels) if label == j]
        if not members:
            continue
        group = [tasks[i] for i in members]
        cost = math.fsum(t.cost for t in group)
        skills = Counter(t.skill for t in group)
        volume_share = len(group) / len(tasks)
        cost_share = cost / total_cost if total_cost else 0.0
        escalation = sum(t.escalated for t in group) / len(group)
        cohesion = sum(dot(vectors[i], centroids[j]) for i in members) / len(members)
        skill_share = skills.most_common(1)[0][1] / len(group)
        checks = {
            f"volume {volume_share:.0%} >= {rule.min_volume_share:.0%}": volume_share >= rule.min_volume_share,
            f"cohesion {cohesion:.2f} >= {rule.min_cohesion:.2f}": cohesion >= rule.min_cohesion,
            f"one skill {skill_share:.0%} >= {rule.min_skill_share:.0%}": skill_share >= rule.min_skill_share,
            f"escalation {escalation:.0%} >= {rule.min_escalation_rate:.0%} or cost share {cost_share:.0%} >= "
            f"{rule.cost_over_volume:g}x volume": escalation >= rule.min_escalation_rate
            or cost_share >= rule.cost_over_volume * volume_share,
        }
        candidate = all(checks.values())
        why = "; ".join(f"{'ok' if passed else 'NOT'} {text}" for text, passed in checks.items())
        top = sorted(centroid([terms[i] for i in members]).items(), key=lambda item: (-item[1], item[0]))
        examples = list(dict.fromkeys(task_text(t)[:120] for t in group))[:3]
        clusters.append(Cluster(
            id=j, size=len(group), volume_share=volume_share, cost=cost, cost_share=cost_share,
            completion_rate=sum(t.ok for t in group) / len(group), escalation_rate=escalation, cohesion=cohesion,
            skills=dict(skills), top_terms=[t for t, _ in top[:8]], examples=examples, candidate=candidate,
            why=why))
    clusters.sort(key=lambda c: -c.size)
    return ClusterReport(k, criterion, scores, len(tasks), clusters,
                         {t.key: label for t, label in zip(tasks, labels, strict=True)}, vectors_name)


async def clusters(engine: AsyncEngine, *, since: datetime | None = None, until: datetime | None = None,
                   seed: int = 0, k_range: range = range(2, 9), rule: CandidateRule | None = None,
                   vectors: VectorChoice = "auto") -> ClusterReport:
    """Recurring tasks over ``[since, until)``, with volume and cost shares and S4 candidates."""
    tasks = group_tasks(await load_rows(engine, since=since, until=until))
    return cluster_tasks(tasks, seed=seed, k_range=k_range, rule=rule, vectors_from=vectoriser(vectors))


# --------------------------------------------------------------------------------------------- export
