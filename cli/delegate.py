"""``guildnet delegate``: hand a task to the best live agent of another organisation."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from .common import check_http_url, registry_hint
from .node import load_node

if TYPE_CHECKING:
    from guildnet.node.delegation.delegator import Delegator
    from guildnet.node.node import Node

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


class _Failure(Exception):
    """Why ``delegate`` stops, in the shape both its text and its ``--json`` output take."""

    def __init__(self, kind: str, message: str, code: int, *, attempts: list[dict[str, Any]] | None = None,
                 similar: list[str] | None = None, receipt_state: dict[str, str] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.code, self.hint = kind, message, code, hint
        self.attempts, self.similar, self.receipt_state = attempts or [], similar or [], receipt_state

    def report(self, as_json: bool) -> NoReturn:
        if as_json:
            click.echo(json.dumps({"error": {"kind": self.kind, "message": self.message, "attempts": self.attempts,
                                             "similar": self.similar, "receipt_state": self.receipt_state,
                                             **({"hint": self.hint} if self.hint else {})}}, indent=2))
        else:
            click.echo(f"error: {self.message}", err=True)
            for attempt in self.attempts:
                if len(self.attempts) == 1 and attempt["detail"] in self.message:
                    continue  # the message already gives the one attempt's reason
                click.echo(f"  {attempt['name']} of {attempt['organisation']}: {attempt['outcome']} "
                           f"({attempt['detail']})", err=True)
            if self.similar:
                click.echo(f"did you mean: {', '.join(self.similar)}?", err=True)
            if self.receipt_state:
                click.echo(f"receipt: {self.receipt_state['state']}"
                           + (f" ({self.receipt_state['reason']})" if "reason" in self.receipt_state else ""), err=True)
            if self.hint:
                click.echo(f"hint: {self.hint}", err=True)
        sys.exit(self.code)


def _arguments(input_text: str) -> dict[str, Any]:
    if input_text.startswith("@"):
        path = Path(input_text[1:])
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise _Failure("bad-input", f"--input: the file {path} does not exist", EXIT_BAD_INPUT,
                           hint="give the task as JSON ('{\"text\": \"hi\"}') or @FILE naming a JSON file") from None
        except OSError as exc:
            raise _Failure("bad-input", f"--input: cannot read {path}: {exc.strerror}", EXIT_BAD_INPUT) from None
    else:
        text = input_text
    try:
        arguments = json.loads(text)
    except ValueError as exc:
        raise _Failure("bad-input", f"--input is not JSON: {exc}", EXIT_BAD_INPUT,
                       hint="quote the JSON for the shell: --input '{\"text\": \"hi\"}'") from None
    if not isinstance(arguments, dict):
        raise _Failure("bad-input", "--input must be a JSON object", EXIT_BAD_INPUT)
    return arguments


@click.command("delegate")
@click.argument("skill")
@click.option("--input", "input_text", required=True, help="The task input: JSON, or @file with JSON.")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Your node's TOML config (its registry, organisation and agent keys).")
@click.option("--registry", "registry_url", callback=check_http_url,
              help="The registry to find peers in (default: the config's [node] registry; env GUILDNET_REGISTRY).")
@click.option("--as", "as_agent", help="Call as this agent of the node (default: its first agent).")
@click.option("--deadline", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds for the whole task; a peer still working then is told to cancel.")
@click.option("--budget", type=float, help="Most a task may cost (in the peers' currency).")
@click.option("--min-reputation", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Reputation lower bound a peer must clear to be preferred.")
@click.option("--prefer", type=click.Choice(["cost", "reputation", "latency"]), default="cost", show_default=True)
@click.option("--require-verified-domain", "require_domain", is_flag=True,
              help="Only peers whose organisation's domain this node proves itself (DNS or HTTPS), whatever the "
                   "registry says; the config's require_verified_domain sets it for every delegation.")
@click.option("--explain", is_flag=True, help="Only rank the candidates and say why; call nobody.")
@click.option("--quiet", is_flag=True, help="Print only the output: no progress, no summary on stderr.")
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: the output, who answered, the receipt; on failure {"error": {kind, message, '
                   'attempts, similar, receipt_state}} with the same exit code.')
def delegate(skill: str, input_text: str, config_path: str, registry_url: str | None, as_agent: str | None,
             deadline: float, budget: float | None, min_reputation: float, prefer: str, require_domain: bool,
             explain: bool, quiet: bool, as_json: bool) -> None:
    """Delegate SKILL to the best live peer of another organisation, over A2A, with a signed receipt.

    Exit codes: 0 done; 1 no peer completed the task (each attempt says why); 2 bad input or configuration
    (nothing was called); 130 interrupted (Ctrl-C: the peer's task is cancelled).

    \b
    Examples:
      guildnet delegate translate --input '{"text": "hello"}' --config node.toml
      guildnet delegate translate --input @task.json --config node.toml --explain
      guildnet delegate translate --input '{"text": "hello"}' --config node.toml --registry http://127.0.0.1:8400
    """
    import asyncio

    try:
        arguments = _arguments(input_text)
        node = load_node(config_path, registry=registry_url,
                         fail=lambda message: _Failure("config", message, EXIT_BAD_INPUT).report(as_json))
        try:
            code = asyncio.run(_delegate(node, skill, arguments, as_agent=as_agent, deadline=deadline,
                                         budget=budget, min_reputation=min_reputation, prefer=prefer,
                                         require_domain=require_domain, explain=explain, quiet=quiet,
                                         as_json=as_json))
        except KeyboardInterrupt:
            raise _Failure("interrupted", "interrupted: the delegation stopped and the peer was told to cancel its "
                           "task", EXIT_INTERRUPTED) from None
    except _Failure as failure:
        failure.report(as_json)
    sys.exit(code)


async def _delegate(node: Node, skill: str, arguments: dict[str, Any], *, as_agent: str | None, deadline: float,
                    budget: float | None, min_reputation: float, prefer: str, require_domain: bool, explain: bool,
                    quiet: bool, as_json: bool) -> int:
    from guildnet.node.delegation.delegator import DelegationFailed
    from guildnet.node.delegation.ranking import Preference
    from guildnet.registry.client import RegistryError

    def progress(agent: str, text: str) -> None:
        click.echo(f"  {agent}: {text}", err=True)

    delegator: Delegator | None = None
    try:
        try:
            delegator = await node.delegator(as_agent=as_agent)
        except ValueError as exc:
            raise _Failure("config", str(exc), EXIT_BAD_INPUT,
                           hint="name the registry: [node] registry in the config, GUILDNET_REGISTRY, or --registry"
                           if "registry" in str(exc) else None) from None
        assert delegator is not None
        if explain:
            decision = await delegator.explain(skill, min_reputation=min_reputation, budget=budget,
                                               prefer=cast(Preference, prefer),
                                               require_verified_domain=require_domain or None)
            if not decision.ranked and not decision.excluded:
                raise _Failure("no-candidate", f"no live agent of another organisation offers skill {skill!r}",
                               EXIT_FAILED, similar=await delegator.similar_skills(skill),
                               hint=f"`guildnet registry search --skill {skill}` lists who offers it, live or not")
            click.echo(decision.explain() if not as_json else json.dumps(
                [{"agent": r.candidate.agent_id, "name": r.candidate.name, "organisation": r.candidate.organisation,
                  "rank": r.rank, "reputation_lower": r.candidate.reputation_lower,
                  "evidence": r.candidate.evidence, "price": r.candidate.price, "clears_bar": r.clears_bar,
                  "why": r.reason} for r in decision.ranked], indent=2))
            return 0 if decision.ranked else EXIT_FAILED
        try:
            result = await node.delegate(skill, arguments, deadline=deadline, budget=budget,
                                         min_reputation=min_reputation, prefer=cast(Preference, prefer),
                                         require_verified_domain=require_domain or None,
                                         on_progress=None if quiet or as_json else progress)
        except DelegationFailed as exc:
            await delegator.flush()
            states = list(delegator.receipt_states.values())
            raise _Failure(exc.reason, str(exc), EXIT_BAD_INPUT if exc.reason == "invalid-input" else EXIT_FAILED,
                           attempts=[asdict(a) for a in exc.attempts],
                           similar=await delegator.similar_skills(skill) if exc.reason == "no-candidate" else [],
                           receipt_state=states[-1].to_json() if states else None,
                           hint=_hint(exc.reason, skill)) from None
        except (RegistryError, OSError) as exc:
            raise _Failure("registry", str(exc), EXIT_FAILED, hint=registry_hint(exc)) from None
        await delegator.flush()
        state = delegator.receipt_states.get(result.receipt)
        facts = result.agent.facts
        if as_json:
            click.echo(json.dumps({"output": result.output, "agent": result.agent.id, "name": facts.name,
                                   "organisation": {"id": facts.organisation.id, "name": facts.organisation.name},
                                   "traceparent": result.traceparent, "receipt": result.receipt,
                                   "receipt_state": state.to_json() if state else None,
                                   "attempts": [asdict(a) for a in result.attempts]}, indent=2))
        else:
            click.echo(json.dumps(result.output))
            if not quiet:
                click.echo(f"by {facts.name} of {facts.organisation.name} ({result.agent.id}); trace "
                           f"{result.traceparent}; {state.describe() if state else 'no receipt'}", err=True)
        return 0
    finally:
        await node.close()


def _hint(reason: str, skill: str) -> str | None:
    return {"no-candidate": f"`guildnet registry search --skill {skill}` lists who offers it, live or not",
            "invalid-input": f"`guildnet registry search --skill {skill} --json` shows the skill's input schema",
            "deadline": "give the peers more time with --deadline SECONDS"}.get(reason)
