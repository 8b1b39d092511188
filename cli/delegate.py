"""``guildnet delegate``: hand a task to the best live agent of another organisation."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import cast

import click

from .node import load_node


@click.command("delegate")
@click.argument("skill")
@click.option("--input", "input_text", required=True, help="The task input: JSON, or @file with JSON.")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Your node's TOML config (its registry, organisation and agent keys).")
@click.option("--as", "as_agent", help="Call as this agent of the node (default: its first agent).")
@click.option("--deadline", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds for the whole task.")
@click.option("--budget", type=float, help="Most a task may cost (in the peers' currency).")
@click.option("--min-reputation", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Reputation lower bound a peer must clear to be preferred.")
@click.option("--prefer", type=click.Choice(["cost", "reputation", "latency"]), default="cost", show_default=True)
@click.option("--require-verified-domain", "require_domain", is_flag=True,
              help="Only peers whose organisation's domain this node proves itself (DNS or HTTPS), whatever the "
                   "registry says; the config's require_verified_domain sets it for every delegation.")
@click.option("--explain", is_flag=True, help="Only rank the candidates and say why; call nobody.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def delegate(skill: str, input_text: str, config_path: str, as_agent: str | None, deadline: float,
             budget: float | None, min_reputation: float, prefer: str, require_domain: bool, explain: bool,
             as_json: bool) -> None:
    """Delegate SKILL to the best live peer of another organisation, over A2A, with a signed receipt.

    \b
    Examples:
      guildnet delegate translate --input '{"text": "hello"}' --config node.toml
      guildnet delegate translate --input @task.json --config node.toml --explain
    """
    import asyncio

    from guildnet.node.delegation.delegator import DelegationFailed
    from guildnet.node.delegation.ranking import Preference
    from guildnet.registry.client import RegistryError

    try:
        arguments = json.loads(Path(input_text[1:]).read_text() if input_text.startswith("@") else input_text)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
    if not isinstance(arguments, dict):
        raise click.BadParameter("the input must be a JSON object", param_hint="--input")
    node = load_node(config_path)

    async def go() -> int:
        try:
            delegator = await node.delegator(as_agent=as_agent)
            if explain:
                decision = await delegator.explain(skill, min_reputation=min_reputation, budget=budget,
                                                   prefer=cast(Preference, prefer),
                                                   require_verified_domain=require_domain or None)
                click.echo(decision.explain() if not as_json else json.dumps(
                    [{"agent": r.candidate.agent_id, "name": r.candidate.name, "rank": r.rank,
                      "reputation_lower": r.candidate.reputation_lower, "evidence": r.candidate.evidence,
                      "price": r.candidate.price, "clears_bar": r.clears_bar, "why": r.reason}
                     for r in decision.ranked], indent=2))
                return 0
            result = await node.delegate(skill, arguments, deadline=deadline, budget=budget,
                                         min_reputation=min_reputation, prefer=cast(Preference, prefer),
                                         require_verified_domain=require_domain or None)
        except DelegationFailed as exc:
            click.echo(f"error: {exc}", err=True)
            for attempt in exc.attempts:
                click.echo(f"  {attempt.name}: {attempt.outcome} ({attempt.detail})", err=True)
            return 1
        except (ValueError, OSError, RegistryError) as exc:
            click.echo(f"error: {exc}", err=True)
            return 1
        finally:
            await node.close()
        if as_json:
            click.echo(json.dumps({"output": result.output, "agent": result.agent.id, "name": result.agent.facts.name,
                                   "traceparent": result.traceparent, "receipt": result.receipt,
                                   "receipt_refused": next(iter(delegator.refused_receipts), None),
                                   "attempts": [asdict(a) for a in result.attempts]}, indent=2))
        else:
            click.echo(json.dumps(result.output))
            receipt = (f"receipt refused by the registry: {delegator.refused_receipts[0]}"
                       if delegator.refused_receipts else "receipt countersigned and accepted by the registry")
            click.echo(f"by {result.agent.facts.name} of {result.agent.facts.organisation.name} ({result.agent.id}); "
                       f"trace {result.traceparent}; {receipt}", err=True)
        return 0

    sys.exit(asyncio.run(go()))
