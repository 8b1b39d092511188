"""Clusters by meaning: process data grouped by what the tasks ask, where their wording shares nothing.

Three requests (money back, a missing delivery, a locked-out login), each written eight ways that share no
content word with one another, and every text padded with words drawn from one pool shared by all three, so
wording alone points nowhere: the bundled embedding model must put each request's phrasings together.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guildnet.node import flywheel
from guildnet.node.config import ConfigError, load_config
from guildnet.node.flywheel.process_log import CallRecord, ProcessLog
from guildnet.node.flywheel.vectorisers import EmbeddingVectoriser, TfidfVectoriser, vectoriser
from guildnet.node.pii import Scrubber

REQUESTS = {
    "refund": ["I want my money back", "please reimburse what you charged", "return the payment you took",
               "cancel that fee and credit my card", "refund the purchase", "I deserve compensation for the cost",
               "give back the amount you billed", "repay the sum deducted from my bank"],
    "delivery": ["where is my parcel", "the courier never came", "my package has not arrived",
                 "shipment still stuck in transit", "the box was never delivered", "tracking shows no movement",
                 "the postman lost my order", "when will the goods reach my house"],
    "login": ["I cannot sign in", "forgot my password", "locked out of my profile", "the login page rejects me",
              "reset my credentials", "two-factor code is refused", "unable to access my account",
              "my username does not work"],
}
T0 = datetime(2026, 11, 1, tzinfo=UTC)
ECHO_AGENT = Path(__file__).resolve().parent.parent / "examples" / "echo" / "agent.py"
AGENTS = f'[[agents]]\nagent = "{ECHO_AGENT}:agent"\nkey = "echo.key"\n'
PAD = "hello thanks today again still now really kindly quick friday monday morning evening soon".split()


def texts(count: int, seed: int = 5) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        request = list(REQUESTS)[i % 3]
        out.append((request, f"{rng.choice(REQUESTS[request])} {' '.join(rng.sample(PAD, 4))}"))
    return out


def purity(labels: dict[str, int], truth: dict[str, str]) -> float:
    members: dict[int, Counter[str]] = defaultdict(Counter)
    for key, cluster in labels.items():
        members[cluster][truth[key]] += 1
    return sum(max(c.values()) for c in members.values()) / len(labels)


@pytest.fixture
async def log(db_url: str) -> ProcessLog:
    process_log = await ProcessLog.open(db_url, Scrubber(names="off"))
    await process_log.record_many(
        CallRecord("in", "a2a", "helpdesk.triage", "desk", "ok", input={"arguments": {"text": text}},
                   trace_id=f"t{i:03d}") for i, (_, text) in enumerate(texts(90)))
    return process_log


async def test_embeddings_group_paraphrases_that_wording_cannot(log: ProcessLog) -> None:
    truth = {f"t{i:03d}": request for i, (request, _) in enumerate(texts(90))}
    try:
        by_meaning = await flywheel.clusters(log.engine, seed=0, k_range=range(3, 4))
        by_words = await flywheel.clusters(log.engine, seed=0, k_range=range(3, 4), vectors="tfidf")
    finally:
        await log.close()
    assert by_meaning.vectors.startswith("m2v-") and by_words.vectors == "tfidf"
    assert purity(by_meaning.labels, truth) >= 0.9, by_meaning.to_table()
    assert purity(by_words.labels, truth) < 0.7, by_words.to_table()
    assert all(c.top_terms for c in by_meaning.clusters)  # still words a person can read, from TF-IDF
    assert "vectors: m2v-" in by_meaning.to_table() and by_meaning.to_json()["vectors"] == by_meaning.vectors


def test_embedding_vectors_are_centred_unit_vectors_and_deterministic() -> None:
    """Centring removes what every text of the batch shares: raw embeddings of these texts all point one way
    (their mean is long), the vectors clustered on do not."""
    from guildnet.embedding import default_embedder

    batch = [text for _, text in texts(30)]
    raw = default_embedder().embed(batch)
    vectors = vectoriser("embedding").vectors(batch)

    def mean_length(rows: list[list[float]]) -> float:
        mean = [sum(column) / len(rows) for column in zip(*rows, strict=True)]
        return float(sum(x * x for x in mean) ** 0.5)

    assert mean_length(raw.tolist()) > 0.5
    assert mean_length([list(v.values()) for v in vectors]) < 0.1
    assert all(abs(sum(w * w for w in v.values()) - 1.0) < 1e-9 for v in vectors)
    assert vectoriser("embedding").vectors(batch) == vectors
    tasks = flywheel.group_tasks(flywheel.Row(
        at=T0, direction="in", transport="a2a", skill="s", agent="a", model=None, input={"arguments": {"text": text}},
        output=None, tokens_in=0, tokens_out=0, cost=0.0, latency_ms=1.0, outcome="ok", escalated=False,
        trace_id=f"t{i}") for i, text in enumerate(batch))
    embedder = vectoriser("embedding")
    assert isinstance(embedder, EmbeddingVectoriser)
    assert flywheel.cluster_tasks(tasks, seed=2, vectors_from=embedder).labels == \
        flywheel.cluster_tasks(tasks, seed=2, vectors_from=embedder).labels
    assert isinstance(vectoriser("tfidf"), TfidfVectoriser) and isinstance(vectoriser("auto"), EmbeddingVectoriser)


async def test_clusters_command_takes_vectors_from_the_flag_then_the_config(tmp_path: Path) -> None:
    """Through the real CLI (on SQLite only: the choice of vectors does not depend on the database)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"
    process_log = await ProcessLog.open(url, Scrubber(names="off"))
    await process_log.record_many(
        CallRecord("in", "a2a", "helpdesk.triage", "desk", "ok", input={"arguments": {"text": text}},
                   trace_id=f"t{i:03d}") for i, (_, text) in enumerate(texts(30)))
    await process_log.close()
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\norg_name = "acme"\norg_key = "org.key"\ndb = "{url}"\ncluster_vectors = "tfidf"\n'
                      f'{AGENTS}')

    def clusters(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "guildnet.cli", "flywheel", "clusters", "--json", *args],
                              capture_output=True, text=True, timeout=120)

    from_config, flag, wrong = await asyncio.gather(*(asyncio.to_thread(clusters, *args) for args in (
        ("--config", str(config)), ("--config", str(config), "--vectors", "embedding"),
        ("--db", url, "--vectors", "bert"))))
    assert from_config.returncode == 0, from_config.stderr
    assert json.loads(from_config.stdout)["vectors"] == "tfidf"
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout)["vectors"].startswith("m2v-")
    assert wrong.returncode == 2 and "bert" in wrong.stderr


def test_config_names_a_wrong_cluster_vectors_value(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\norg_name = "acme"\norg_key = "org.key"\ncluster_vectors = "words"\n{AGENTS}')
    with pytest.raises(ConfigError, match="cluster_vectors"):
        load_config(config)
    config.write_text(f'[node]\norg_name = "acme"\norg_key = "org.key"\n{AGENTS}')
    assert load_config(config).cluster_vectors == "auto"
