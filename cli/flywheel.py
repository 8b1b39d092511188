"""``guildnet flywheel ...``: what the process data says, which tasks to hand to a specialised SLM, and
the data sets to fine-tune it with."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from .common import check_db_url

F = TypeVar("F", bound=Callable[..., Any])


def _source(function: F) -> F:
    function = click.option("--days", type=float, help="Only the last N days.")(function)
    function = click.option("--db", callback=check_db_url,
                            help="The node database URL (instead of --config).")(function)
    return click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                        help="The node's TOML config: its [node] db holds the process data.")(function)


def _vectors(function: F) -> F:
    return click.option("--vectors", type=click.Choice(["auto", "embedding", "tfidf"]),
                        help="Cluster by meaning (embedding) or wording (tfidf); default: the config's "
                             "cluster_vectors, else auto (embeddings when the model loads).")(function)


def _vector_choice(config_path: str | None, vectors: str | None) -> Any:
    """--vectors, else the config's ``cluster_vectors``, else ``auto``."""
    if vectors is not None or config_path is None:
        return vectors or "auto"
    from guildnet.node.config import ConfigError, load_config

    try:
        return load_config(config_path).cluster_vectors
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _window(days: float | None) -> datetime | None:
    return datetime.now(UTC) - timedelta(days=days) if days else None


def _run(config_path: str | None, db: str | None, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    from guildnet.node.config import ConfigError, load_config, resolve_db_url
    from guildnet.node.flywheel.process_log import create_engine

    if bool(config_path) == bool(db):
        raise click.UsageError("give exactly one of --config or --db")
    try:
        url = load_config(config_path).db if config_path else resolve_db_url(str(db), Path.cwd())
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)

    async def go() -> Any:
        engine = create_engine(url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(go())
    except (OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:  # no such database file, server unreachable, not a node's database
        click.echo(f"error: cannot read process data from {url.split('@')[-1]}: {exc.__class__.__name__}: "
                   f"{str(exc).splitlines()[0]}", err=True)
        sys.exit(1)


@click.group("flywheel")
def flywheel_group() -> None:
    """Process data: per-skill ROI, recurring task clusters, fine-tuning exports."""


@flywheel_group.command("report")
@_source
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def report(config_path: str | None, db: str | None, days: float | None, as_json: bool) -> None:
    """Completion, escalation, cost per successful task and p50/p95 latency, per skill and per model.

    \b
    Example:
      guildnet flywheel report --config node.toml --days 7
    """
    from guildnet.node import flywheel

    result = _run(config_path, db, lambda engine: flywheel.report(engine, since=_window(days)))
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else result.to_table())


@flywheel_group.command("clusters")
@_source
@_vectors
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def clusters(config_path: str | None, db: str | None, days: float | None, vectors: str | None,
             as_json: bool) -> None:
    """Cluster recurring tasks (k by silhouette) and flag candidates for a specialised SLM.

    \b
    Example:
      guildnet flywheel clusters --config node.toml
    """
    from guildnet.node import flywheel

    choice = _vector_choice(config_path, vectors)
    result = _run(config_path, db, lambda engine: flywheel.clusters(engine, since=_window(days), vectors=choice))
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else result.to_table())


@flywheel_group.command("export")
@_source
@_vectors
@click.argument("cluster", type=int, required=False)
@click.option("--skill", help="Only tasks of this skill (with or without CLUSTER).")
@click.option("--validation-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1,
              show_default=True, help="Share of distinct prompts held out in validation.jsonl.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
def export(config_path: str | None, db: str | None, days: float | None, vectors: str | None, cluster: int | None,
           skill: str | None, validation_fraction: float, out_dir: str) -> None:
    """Write a cluster's or a skill's accepted answers as JSONL (train/validation) for LoRA/QLoRA.

    The rows are TRL's conversational prompt-completion format (docs/flywheel.md has the fine-tuning recipe).

    \b
    Example:
      guildnet flywheel export 2 --config node.toml --out data/cluster-2
      guildnet flywheel export --skill ticket.classify --config node.toml --out data/tickets
    """
    from guildnet.node import flywheel

    if cluster is None and skill is None:
        raise click.UsageError("give a CLUSTER (from guildnet flywheel clusters) or --skill, or both")
    choice = _vector_choice(config_path, vectors)
    with click.progressbar(length=1, label="exporting", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        result = _run(config_path, db, lambda engine: flywheel.export(
            engine, Path(out_dir), cluster=cluster, skill=skill, since=_window(days),
            validation_fraction=validation_fraction, progress=progress, vectors=choice))
    click.echo(f"wrote {result.train} training and {result.validation} validation examples to {result.out_dir}"
               f" ({result.skipped} skipped)")


# --------------------------------------------------------------------------------------------- the loop
def _models_options(function: F) -> F:
    function = click.option("--models", "models_dir", type=click.Path(file_okay=False), default="models",
                            show_default=True, help="Where the node keeps its fine-tuned models.")(function)
    return click.option("--skill", required=True, help="The skill the model answers.")(function)


def _store(models_dir: str, skill: str) -> Any:
    from guildnet.node.flywheel.models import ModelStore, ModelStoreError

    try:
        return ModelStore(Path(models_dir), skill)
    except ModelStoreError as exc:
        raise click.BadParameter(str(exc), param_hint="--skill") from None


def _signing_key(config_path: str | None, key_path: str | None) -> Any:
    from guildnet.node.config import ConfigError, load_config
    from guildnet.protocols import keyfile
    from guildnet.protocols.keys import KeyFileError

    if bool(config_path) == bool(key_path):
        raise click.UsageError("give exactly one of --config (its org_key signs) or --key")
    try:
        return keyfile.load(load_config(config_path).org_key if config_path else str(key_path))
    except (ConfigError, KeyFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _signer(function: F) -> F:
    function = click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False),
                            help="The organisation key file that signs (instead of --config).")(function)
    return click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                        help="The node's TOML config: its org_key signs.")(function)


@flywheel_group.command("train")
@_source
@_vectors
@_models_options
@click.argument("cluster", type=int, required=False)
@click.option("--heldout-fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.2,
              show_default=True, help="The newest share of accepted tasks, kept out of training to judge on.")
@click.option("--epochs", type=click.FloatRange(0.0, min_open=True), default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True, help="Stop after N steps (-1: --epochs).")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=1e-3, show_default=True,
              help="Learning rate (1e-3: one epoch of a few hundred rows is only ~40 steps).")
@click.option("--rank", type=click.IntRange(1), default=16, show_default=True, help="LoRA rank.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Torch threads (one trained ~7x faster than two on a shared 2-vCPU machine).")
def train(config_path: str | None, db: str | None, days: float | None, vectors: str | None, skill: str,
          models_dir: str, cluster: int | None, heldout_fraction: float, epochs: float, max_steps: int, batch: int,
          lr: float, rank: int, threads: int) -> None:
    """Fine-tune a LoRA adapter of the bundled SmolLM2 on the skill's accepted answers (a new candidate).

    Training uses the older tasks and holds out the newest (--heldout-fraction) for `evaluate`; only tasks that
    succeeded, with the answer that was accepted, count. Needs the train extra (CPU torch); downloads nothing.

    \b
    Example:
      guildnet flywheel train --skill ticket.classify --config node.toml
      guildnet flywheel evaluate lora-20261129T150000000000Z --skill ticket.classify --config node.toml
    """
    from guildnet.node.flywheel import training
    from guildnet.node.flywheel.dataset import select_tasks, write_time_split

    absent = training.missing()
    if absent:
        click.echo(f"error: training needs {', '.join(absent)}: {training.INSTALL_HINT}", err=True)
        sys.exit(1)
    store = _store(models_dir, skill)
    choice = _vector_choice(config_path, vectors)
    tasks = _run(config_path, db, lambda engine: select_tasks(engine, cluster=cluster, skill=skill,
                                                               since=_window(days), vectors=choice))
    candidate, folder = store.new_candidate()
    try:
        data = write_time_split(tasks, folder, heldout_fraction=heldout_fraction,
                                manifest={"skill": skill, "cluster": cluster})
    except ValueError as exc:
        shutil.rmtree(folder)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{candidate}: training on {data.train} tasks, {data.validation} newer ones held out", err=True)
    result = training.train(folder / "train.jsonl", folder, training.TrainSettings(
        epochs=epochs, max_steps=max_steps, batch=batch, lr=lr, rank=rank, threads=threads))
    click.echo(f"{candidate}: {result.steps} steps in {result.train_seconds:.0f} s, loss {result.loss_first} -> "
               f"{result.loss_last}, peak RSS {result.peak_rss_mb} MB, adapter {result.adapter.stat().st_size:,} B")
    click.echo(candidate)


@flywheel_group.command("evaluate")
@click.argument("candidate")
@_models_options
@_signer
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.90,
              show_default=True, help="How often the answers a model keeps must match the accepted ones (sets its "
                                      "threshold; keep it below how often those are right).")
@click.option("--json", "as_json", is_flag=True, help="Print the model card as JSON.")
def evaluate(candidate: str, skill: str, models_dir: str, config_path: str | None, key_path: str | None,
             target_precision: float, as_json: bool) -> None:
    """Score CANDIDATE and the model in service on the candidate's held-out tasks; sign its model card.

    Both run in the embedded llama.cpp server, as they would serve. The card records base model, data window,
    sizes, scores, the escalation threshold chosen for each on held-out data, and hashes.

    \b
    Example:
      guildnet flywheel evaluate lora-20261129T150000000000Z --skill ticket.classify --config node.toml
    """
    from guildnet.node.flywheel.evaluation import evaluate as run_evaluation
    from guildnet.node.flywheel.models import ModelStoreError

    key = _signing_key(config_path, key_path)
    store = _store(models_dir, skill)
    try:
        card = asyncio.run(run_evaluation(store, candidate, target_precision=target_precision))
    except (ModelStoreError, OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    store.write_card(candidate, card, key)
    if as_json:
        click.echo(json.dumps(card, indent=2))
        return
    click.echo(f"{'held-out (' + str(card['scores']['candidate']['n']) + ' tasks)':<24} {'candidate':>10} "
               f"{'in service':>10}")
    mine, theirs = card["scores"]["candidate"], card["scores"]["current"]
    for field, label in (("accuracy", "accuracy"), ("schema_valid", "schema-valid"), ("kept", "kept at threshold")):
        click.echo(f"{label:<24} {mine[field]:>10.1%} {theirs[field]:>10.1%}")
    click.echo(f"{'threshold (mean logprob)':<24} {mine['threshold']:>10.3f} {theirs['threshold']:>10.3f}")
    click.echo(card["verdict"])


@flywheel_group.command("promote")
@click.argument("candidate")
@_models_options
@_signer
def promote(candidate: str, skill: str, models_dir: str, config_path: str | None, key_path: str | None) -> None:
    """Serve CANDIDATE for the skill, if its signed model card says it beat the model in service.

    The decision, promoted or refused, is signed and appended to the skill's decisions.jsonl; a node serving the
    skill through ServedModel swaps to it without dropping requests.

    \b
    Example:
      guildnet flywheel promote lora-20261129T150000000000Z --skill ticket.classify --config node.toml
    """
    from guildnet.node.flywheel.models import ModelStoreError

    key = _signing_key(config_path, key_path)
    try:
        decision = _store(models_dir, skill).promote(candidate, key)
    except ModelStoreError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(1)
    click.echo(f"promoted {candidate} for {skill} (replacing {decision['previous'] or 'the base model'}): "
               f"{decision['reason']}")


@flywheel_group.command("rollback")
@_models_options
@_signer
def rollback(skill: str, models_dir: str, config_path: str | None, key_path: str | None) -> None:
    """Serve the model that served the skill before the current one again (signed, recorded).

    \b
    Example:
      guildnet flywheel rollback --skill ticket.classify --config node.toml
    """
    from guildnet.node.flywheel.models import ModelStoreError

    key = _signing_key(config_path, key_path)
    try:
        decision = _store(models_dir, skill).rollback(key)
    except ModelStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"rolled back {skill} from {decision['previous']} to {decision['candidate'] or 'the base model'}")


@flywheel_group.command("models")
@_models_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(skill: str, models_dir: str, as_json: bool) -> None:
    """The skill's candidates, the one in service, and every signed decision.

    \b
    Example:
      guildnet flywheel models --skill ticket.classify
    """
    store = _store(models_dir, skill)
    served = store.served()
    state = {"skill": skill, "current": served.current, "previous": served.previous,
             "candidates": store.candidates(), "decisions": store.decisions()}
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(f"in service: {served.current or 'the base model'}; before it: {served.previous or '-'}")
    for candidate in state["candidates"]:
        click.echo(f"  {candidate}")
    for decision in state["decisions"]:
        click.echo(f"{decision['at']}  {decision['action']:<12} {decision.get('candidate') or 'base'}  "
                   f"{decision.get('reason', '')}")
