"""Fine-tuning data from process data (the seed's S5 input): the accepted answers of a cluster or a skill."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from .clustering import cluster_tasks
from .tasks import Task, group_tasks, load_rows
from .vectorisers import VectorChoice, vectoriser

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ExportResult:
    out_dir: Path
    train: int
    validation: int
    skipped: int


def _example(task: Task) -> dict[str, Any] | None:
    """One chat example: the prompt the model saw and the answer that was finally accepted (which, for
    an escalated task, is the larger model's or the peer's: the SLM learns what it could not do)."""
    accepted = next((r for r in task.rows if r.outcome == "ok" and r.direction in ("model", "out")
                     and isinstance(r.output, dict)), None)
    if accepted is None:
        accepted = next((r for r in task.rows if r.outcome == "ok" and isinstance(r.output, dict)), None)
    if accepted is None:
        return None
    prompt = next((r.input["messages"] for r in task.rows if r.direction == "model" and isinstance(r.input, dict)
                   and isinstance(r.input.get("messages"), list)), None)
    if prompt is None:
        prompt = [{"role": "system", "content": f"You perform the skill {task.skill!r}. Answer with JSON."},
                  {"role": "user", "content": json.dumps(task.arguments, ensure_ascii=False, sort_keys=True)}]
    answer = json.dumps(accepted.output, ensure_ascii=False, sort_keys=True)
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


def write_dataset(tasks: Sequence[Task], out_dir: Path, *, validation_fraction: float = 0.1, seed: int = 0,
                  progress: Progress | None = None, manifest: dict[str, Any] | None = None) -> ExportResult:
    """``train.jsonl`` / ``validation.jsonl`` in TRL's conversational prompt-completion format,
    ``{"prompt": [system, user], "completion": [assistant]}``: SFTTrainer then computes the loss on the answer
    only. With the plain ``{"messages": [...]}`` format it trains on every token, mostly the repeated system
    prompt; measured on SmolLM2-135M, one LoRA epoch reached 80 % held-out accuracy in this format against
    32 % in that one (docs/flywheel.md). The split hashes the prompt, so repeats of one prompt never straddle
    the split."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must be in [0, 1)")
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "validation": 0}
    skipped = 0
    with open(out_dir / "train.jsonl", "w", encoding="utf-8") as train, \
            open(out_dir / "validation.jsonl", "w", encoding="utf-8") as validation:
        for done, task in enumerate(tasks, 1):
            example = _example(task)
            if example is None:
                skipped += 1
            else:
                prompt = json.dumps(example["prompt"], sort_keys=True)
                digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
                bucket = int.from_bytes(digest[:8], "big") / 2**64
                split = "validation" if bucket < validation_fraction else "train"
                (validation if split == "validation" else train).write(json.dumps(example, ensure_ascii=False) + "\n")
                counts[split] += 1
            if progress is not None:
                progress(done, len(tasks))
    (out_dir / "manifest.json").write_text(json.dumps({
        **(manifest or {}), "format": "TRL conversational prompt-completion", "train": counts["train"],
        "validation": counts["validation"], "skipped_unsuccessful": skipped, "seed": seed,
        "validation_fraction": validation_fraction}, indent=2) + "\n")
    return ExportResult(out_dir, counts["train"], counts["validation"], skipped)


def write_time_split(tasks: Sequence[Task], out_dir: Path, *, heldout_fraction: float = 0.2,
                     manifest: dict[str, Any] | None = None) -> ExportResult:
    """``train.jsonl`` with the older accepted tasks and ``validation.jsonl`` with the newest
    ``heldout_fraction`` of them: the model is trained on the past and judged on what came after, as it will be
    used. Only tasks that succeeded and whose answer was accepted count; ``manifest.json`` records the data
    window of each side."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError("heldout_fraction must be in (0, 1)")
    curated = sorted(((min(r.at for r in t.rows), example) for t in tasks
                      if t.ok and (example := _example(t)) is not None), key=lambda item: item[0])
    cut = len(curated) - max(1, round(len(curated) * heldout_fraction))
    if cut < 1:
        raise ValueError(f"{len(curated)} accepted tasks are too few to train on and hold some out")
    out_dir.mkdir(parents=True, exist_ok=True)
    sides = {"train": curated[:cut], "validation": curated[cut:]}
    for name, side in sides.items():
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8") as lines:
            lines.writelines(json.dumps(example, ensure_ascii=False) + "\n" for _, example in side)
    window = {name: {"first": side[0][0].isoformat(), "last": side[-1][0].isoformat(), "rows": len(side)}
              for name, side in sides.items()}
    (out_dir / "manifest.json").write_text(json.dumps({
        **(manifest or {}), "format": "TRL conversational prompt-completion", "split": "time", **window,
        "skipped_unsuccessful": len(tasks) - len(curated), "heldout_fraction": heldout_fraction}, indent=2) + "\n")
    return ExportResult(out_dir, cut, len(curated) - cut, len(tasks) - len(curated))


async def select_tasks(engine: AsyncEngine, *, cluster: int | None = None, skill: str | None = None,
                       since: datetime | None = None, until: datetime | None = None, seed: int = 0,
                       vectors: VectorChoice = "auto") -> list[Task]:
    """The tasks of one cluster (ids as :func:`clusters` gives them for the same window, seed and vectors)
    and/or one skill, oldest first."""
    tasks = group_tasks(await load_rows(engine, since=since, until=until))
    if cluster is not None:
        labels = cluster_tasks(tasks, seed=seed, vectors_from=vectoriser(vectors)).labels
        if cluster not in set(labels.values()):
            raise ValueError(f"no cluster {cluster} in this window (clusters: {sorted(set(labels.values()))})")
        tasks = [t for t in tasks if labels[t.key] == cluster]
    if skill is not None:
        tasks = [t for t in tasks if t.skill == skill]
    return tasks


async def export(engine: AsyncEngine, out_dir: Path, *, cluster: int | None = None, skill: str | None = None,
                 since: datetime | None = None, until: datetime | None = None, seed: int = 0,
                 validation_fraction: float = 0.1, progress: Progress | None = None,
                 vectors: VectorChoice = "auto") -> ExportResult:
    """Export the successful tasks of one cluster and/or one skill (see :func:`select_tasks`) as a
    fine-tuning data set."""
    tasks = await select_tasks(engine, cluster=cluster, skill=skill, since=since, until=until, seed=seed,
                               vectors=vectors)
    return write_dataset(tasks, out_dir, validation_fraction=validation_fraction, seed=seed, progress=progress,
                         manifest={"cluster": cluster, "skill": skill,
                                   "since": since.isoformat() if since else None,
                                   "until": until.isoformat() if until else None})
