"""``guildnet flywheel ...``: what the process data says, which tasks to hand to a specialised SLM, and
the data sets to fine-tune it with."""

from __future__ import annotations

import asyncio
import json
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def clusters(config_path: str | None, db: str | None, days: float | None, as_json: bool) -> None:
    """Cluster recurring tasks (k by silhouette) and flag candidates for a specialised SLM.

    \b
    Example:
      guildnet flywheel clusters --config node.toml
    """
    from guildnet.node import flywheel

    result = _run(config_path, db, lambda engine: flywheel.clusters(engine, since=_window(days)))
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else result.to_table())


@flywheel_group.command("export")
@_source
@click.argument("cluster", type=int, required=False)
@click.option("--skill", help="Only tasks of this skill (with or without CLUSTER).")
@click.option("--validation-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1,
              show_default=True, help="Share of distinct prompts held out in validation.jsonl.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
def export(config_path: str | None, db: str | None, days: float | None, cluster: int | None, skill: str | None,
           validation_fraction: float, out_dir: str) -> None:
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
    with click.progressbar(length=1, label="exporting", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        result = _run(config_path, db, lambda engine: flywheel.export(
            engine, Path(out_dir), cluster=cluster, skill=skill, since=_window(days),
            validation_fraction=validation_fraction, progress=progress))
    click.echo(f"wrote {result.train} training and {result.validation} validation examples to {result.out_dir}"
               f" ({result.skipped} skipped)")
