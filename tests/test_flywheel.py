"""Flywheel: report figures, clusters and candidates, and the fine-tuning export, over a real SQLite log."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import func, select

from guildnet.node import flywheel
from guildnet.node.flywheel.process_log import CallRecord, ProcessCall, ProcessLog
from guildnet.node.pii import Scrubber

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SYSTEM = "You triage support requests."

# Each family has a fixed core and three words drawn from one shared noise pool, so the families are
# the only structure in the data (no sub-tasks for a larger k to find).
NOISE = ("hello thanks please asap today urgent team cheers again still now really kindly help quick "
         "question sorry friday monday weekend morning evening customer account number latest update info "
         "detail note issue case problem request support reply soon best regards").split()
FAMILIES = {
    "refund": "please refund my order {n} {noise}",
    "shipping": "where is my parcel {n} {noise}",
    "translate": "translate this sentence into {lang} {noise}",
}


def phrase(family: str, rng: random.Random) -> str:
    return FAMILIES[family].format(n=rng.randrange(10**5), lang=rng.choice(["French", "German", "Spanish"]),
                                   noise=" ".join(rng.sample(NOISE, 3)))

def model_row(trace: str, skill: str, text: str, at: datetime, *, model: str, ok: bool, cost: float,
              latency: float, answer: dict[str, str]) -> CallRecord:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": json.dumps({"text": text})}]
    return CallRecord(direction="model", transport="model", skill=skill, agent="helpdesk", model=model,
                      outcome="ok" if ok else "rejected", input={"arguments": {"text": text}, "messages": messages},
                      output=answer, tokens_in=100, tokens_out=10, cost=cost, latency_ms=latency,
                      escalated=not ok, escalation_reason=None if ok else "low logprob", trace_id=trace, at=at)


def synthetic(seed: int = 7) -> list[CallRecord]:
    """60 tasks: refunds (SLM escalates half of them to the LLM), shipping (SLM alone), translations."""
    rng = random.Random(seed)
    records: list[CallRecord] = []
    for i in range(60):
        family = ("refund", "shipping", "translate")[i % 3]
        at = T0 + timedelta(minutes=i)
        trace = f"trace-{i:03d}"
        text = phrase(family, rng)
        if family == "translate":
            records.append(model_row(trace, "translate", text, at, model="slm", ok=True, cost=0.001, latency=100.0,
                                     answer={"text": "bonjour"}))
            continue
        label = {"refund": "refund", "shipping": "shipping"}[family]
        escalate = family == "refund" and i % 2 == 0
        records.append(model_row(trace, "triage", text, at, model="slm", ok=not escalate, cost=0.001,
                                 latency=200.0, answer={"label": "other" if escalate else label}))
        if escalate:
            records.append(model_row(trace, "triage", text, at + timedelta(milliseconds=200), model="llm", ok=True,
                                     cost=0.02, latency=800.0, answer={"label": label}))
    return records


@pytest.fixture
async def log(db_url: str) -> AsyncIterator[ProcessLog]:
    """The synthetic log on SQLite and on PostgreSQL (``db_url`` comes from conftest)."""
    process_log = await ProcessLog.open(db_url, Scrubber(names="off"))
    await process_log.record_many(synthetic())
    yield process_log
    await process_log.close()


async def test_report_per_skill_and_model(log: ProcessLog) -> None:
    report = await flywheel.report(log.engine)
    skills = {s.name: s for s in report.by_skill}
    triage = skills["triage"]
    assert triage.volume == 40 and triage.completion_rate == 1.0
    assert triage.escalation_rate == pytest.approx(10 / 40)
    assert triage.cost_per_success == pytest.approx((40 * 0.001 + 10 * 0.02) / 40)
    assert triage.p50_ms == pytest.approx(200.0) and triage.p95_ms == pytest.approx(1000.0)  # 200 ms + 800 ms span
    models = {m.name: m for m in report.by_model}
    assert models["slm"].volume == 60 and models["slm"].completion_rate == pytest.approx(50 / 60)
    assert models["llm"].volume == 10 and models["llm"].cost_per_success == pytest.approx(0.02)
    table = report.to_table()
    assert "triage" in table and "25.0%" in table
    assert json.loads(json.dumps(report.to_json()))["by_skill"][1]["volume"] == 40


async def test_report_time_window(log: ProcessLog) -> None:
    report = await flywheel.report(log.engine, since=T0 + timedelta(minutes=30), until=T0 + timedelta(minutes=36))
    assert sum(s.volume for s in report.by_skill) == 6
    assert report.to_json()["since"] == "2026-11-01T00:30:00+00:00"


def test_percentile_nearest_rank() -> None:
    assert flywheel.percentile([5, 1, 3, 2, 4], 50) == 3
    assert flywheel.percentile(list(range(1, 101)), 95) == 95
    assert flywheel.percentile([], 50) is None


async def test_clusters_find_the_three_tasks_and_flag_the_escalating_one(log: ProcessLog) -> None:
    """By wording: the three families share their words (tests/test_flywheel_meaning.py clusters by meaning)."""
    result = await flywheel.clusters(log.engine, seed=0, vectors="tfidf")
    assert result.vectors == "tfidf"
    assert result.k == 3, result.silhouette_by_k
    assert result.silhouette_by_k[3] == max(result.silhouette_by_k.values())
    sizes = sorted(c.size for c in result.clusters)
    assert sizes == [20, 20, 20]
    by_terms = {("refund" in c.top_terms or "refund order" in c.top_terms,
                 "translate" in c.top_terms, "parcel" in c.top_terms): c for c in result.clusters}
    refund, translate, shipping = by_terms[(True, False, False)], by_terms[(False, True, False)], \
        by_terms[(False, False, True)]
    assert refund.escalation_rate == 0.5 and refund.candidate, refund.why
    assert not shipping.candidate and "NOT escalation" in shipping.why
    assert translate.skills == {"translate": 20}
    assert refund.cost_share == pytest.approx((20 * 0.001 + 10 * 0.02) / (60 * 0.001 + 10 * 0.02))
    assert refund.examples and all("refund" in e.lower() or "money" in e for e in refund.examples)
    assert "k=3" in result.to_table() and result.to_json()["clusters"][0]["size"] == 20


def test_clustering_is_deterministic_and_fast_enough() -> None:
    rng = random.Random(3)
    rows = [flywheel.Row(at=T0, direction="model", transport="model", skill="s", agent="a", model="m",
                         input={"arguments": {"text": phrase(("refund", "shipping", "translate")[i % 3], rng)}},
                         output={}, tokens_in=0, tokens_out=0, cost=0.0, latency_ms=1.0, outcome="ok",
                         escalated=False, trace_id=f"t{i}")
            for i in range(600)]
    tasks = flywheel.group_tasks(rows)
    start = time.perf_counter()
    first = flywheel.cluster_tasks(tasks, seed=1)
    elapsed = time.perf_counter() - start
    assert first.labels == flywheel.cluster_tasks(tasks, seed=1).labels
    assert first.k == 3 and elapsed < 30, (first.k, elapsed)


async def test_export_cluster_as_chat_jsonl(log: ProcessLog, tmp_path: Path) -> None:
    result = await flywheel.clusters(log.engine, seed=0, vectors="tfidf")
    refund = next(c for c in result.clusters if c.escalation_rate == 0.5)
    seen: list[tuple[int, int]] = []
    out = tmp_path / "refund"
    exported = await flywheel.export(log.engine, out, cluster=refund.id, seed=0, validation_fraction=0.25,
                                     progress=lambda done, total: seen.append((done, total)), vectors="tfidf")
    assert exported.train + exported.validation == 20 and exported.skipped == 0
    assert exported.validation > 0 and seen[-1] == (20, 20)
    lines = [json.loads(line) for name in ("train.jsonl", "validation.jsonl")
             for line in (out / name).read_text().splitlines()]
    assert len(lines) == 20
    for example in lines:  # TRL's prompt-completion format: the loss is on the answer only
        assert [m["role"] for m in example["prompt"]] == ["system", "user"]
        [answer] = example["completion"]
        assert answer["role"] == "assistant"
        assert json.loads(answer["content"]) == {"label": "refund"}  # the accepted (LLM) answer
    train_prompts = {x for x in (out / "train.jsonl").read_text().splitlines()}
    assert not train_prompts & set((out / "validation.jsonl").read_text().splitlines())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cluster"] == refund.id and manifest["train"] == exported.train


async def test_export_by_skill_and_unknown_cluster(log: ProcessLog, tmp_path: Path) -> None:
    exported = await flywheel.export(log.engine, tmp_path / "t", skill="translate", validation_fraction=0.0)
    assert (exported.train, exported.validation) == (20, 0)
    with pytest.raises(ValueError, match="no cluster 99"):
        await flywheel.export(log.engine, tmp_path / "x", cluster=99)


async def test_failed_tasks_are_not_exported(tmp_path: Path) -> None:
    process_log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names="off"))
    await process_log.record(CallRecord(direction="in", transport="mcp", skill="s", agent="a", outcome="error",
                                        input={"q": "x"}, trace_id="t"))
    await process_log.record(CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok",
                                        input={"q": "y"}, output={"a": 1}, trace_id="u"))
    exported = await flywheel.export(process_log.engine, tmp_path / "out", validation_fraction=0.0)
    assert (exported.train, exported.skipped) == (1, 1)
    [line] = (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    example = json.loads(line)
    assert example["prompt"][1]["content"] == '{"q": "y"}' and example["completion"][0]["content"] == '{"a": 1}'
    await process_log.close()


async def test_export_command_by_skill(log: ProcessLog, tmp_path: Path) -> None:
    url = log.engine.url.render_as_string(hide_password=False)

    def export(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "guildnet.cli", "flywheel", "export", "--db", url, *args],
                              capture_output=True, text=True, timeout=60)

    done = await asyncio.to_thread(export, "--skill", "translate", "--validation-fraction", "0.25",
                                   "--out", str(tmp_path / "t"))
    assert done.returncode == 0, done.stderr
    train, validation = ((tmp_path / "t" / f"{name}.jsonl").read_text().splitlines()
                         for name in ("train", "validation"))
    assert len(train) + len(validation) == 20 and validation  # a quarter of the prompts, by hash
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["skill"] == "translate"
    neither = await asyncio.to_thread(export, "--out", str(tmp_path / "n"))
    assert neither.returncode == 2 and "give a CLUSTER" in neither.stderr and not (tmp_path / "n").exists()


async def test_a_serving_node_records_in_the_background(tmp_path: Path) -> None:
    """With ``pending``, handing a record over never waits for the write: here the database is locked by
    another writer, the call returns at once, and the row lands once the lock goes. Records that find the queue
    full are dropped and counted, never waited for; ``close`` writes what is queued."""
    path = tmp_path / "p.db"
    process_log = await ProcessLog.open(f"sqlite+aiosqlite:///{path}", Scrubber(names="off"), pending=16)
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    started = time.perf_counter()
    await process_log.record(CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok",
                                        input={"q": "mail me at ann@example.org"}))
    assert time.perf_counter() - started < 0.5  # the sqlite busy timeout is 5 s: this did not wait for it
    with pytest.raises(ValueError, match="direction must be one of"):  # still checked when handed over
        await process_log.record(CallRecord(direction=cast(Any, "sideways"), transport="mcp", skill="s",
                                            agent="a", outcome="ok"))
    await asyncio.sleep(0.1)  # the writer has taken the first record and waits for the lock
    for n in range(40):  # the queue holds 16 more: the rest are dropped at once, the caller never waits
        await process_log.record(CallRecord(direction="in", transport="mcp", skill="s", agent="a", outcome="ok",
                                            input={"n": n}))
    assert process_log.dropped == 24 and time.perf_counter() - started < 0.5
    blocker.rollback()
    blocker.close()
    await process_log.flush()
    async with process_log.engine.connect() as connection:
        stored = (await connection.execute(select(ProcessCall.input))).scalars().all()
    assert len(stored) == 17 and "ann@example.org" not in json.dumps(stored)  # scrubbed as in the direct mode
    for n in range(5):
        await process_log.record(CallRecord(direction="in", transport="mcp", skill="s", agent="a", outcome="ok",
                                            input={"n": n}))
    await process_log.close()
    reopened = await ProcessLog.open(f"sqlite+aiosqlite:///{path}", Scrubber(names="off"))
    async with reopened.engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(ProcessCall)) == 22
    await reopened.close()


async def test_closing_stops_scrubbing_between_records(tmp_path: Path) -> None:
    """A thread cannot be cancelled and the interpreter waits for it at exit: once ``close`` has spent its drain
    time, the batch being scrubbed stops at the next record and is counted as dropped, so a node's shutdown waits
    for one record's name detection, not a batch's."""
    calls: list[float] = []

    def slow_names(text: str) -> list[tuple[int, int]]:
        calls.append(time.perf_counter())
        time.sleep(0.01)
        return []

    process_log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names=slow_names),
                                        pending=100)
    process_log.drain_seconds = 0.5
    for n in range(80):
        await process_log.record(CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok",
                                            input={"text": f"Ticket {n} from Ann"}))
    started = time.perf_counter()
    await process_log.close()
    closed = time.perf_counter()
    assert closed - started < 0.8
    await asyncio.sleep(0.3)
    assert sum(1 for at in calls if at > closed) <= 1  # the thread stopped at the next record
    reopened = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names="off"))
    async with reopened.engine.connect() as connection:
        stored = await connection.scalar(select(func.count()).select_from(ProcessCall))
    await reopened.close()
    assert stored is not None and 0 < stored < 80 and stored + process_log.dropped == 80


async def test_closing_while_the_name_models_load_drops_the_queue_at_once(tmp_path: Path) -> None:
    """Scrubbing waits for the name models: while they are still loading (seconds of CPU on a busy machine) at
    shutdown, draining would spend the drain time waiting for them, and the interpreter would then wait for the
    load anyway. So ``close`` drops what is queued at once, and counts it."""
    loaded = threading.Event()

    class LoadingScrubber(Scrubber):
        def warm_up(self, stop: Callable[[], bool] = lambda: False) -> None:
            loaded.wait(10)

    def names_once_loaded(text: str) -> list[tuple[int, int]]:
        loaded.wait(10)
        return []

    process_log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
                                        LoadingScrubber(names=names_once_loaded), pending=100)
    process_log.warm_up()
    for n in range(20):
        await process_log.record(CallRecord(direction="in", transport="a2a", skill="s", agent="a", outcome="ok",
                                            input={"text": f"Ticket {n} from Ann"}))
    await asyncio.sleep(0.1)  # the writer has taken a batch and waits, in its thread, for the models
    started = time.perf_counter()
    await process_log.close()
    assert time.perf_counter() - started < 0.5  # not the drain time (3 s)
    assert process_log.dropped == 20
    loaded.set()
