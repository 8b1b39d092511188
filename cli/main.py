"""The ``guildnet`` command: keys, registry, node, delegation.

The front door composes every job's commands; the registry group is imported from the registry package
only here, at the edge, so the node runtime itself still talks to registries over HTTP alone.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import cast

import click

from guildnet.node.config import ConfigError, load_config, with_overrides
from guildnet.node.node import Node
from guildnet.protocols.keys import KeyFileError, SigningKey
from guildnet.registry.client import RegistryError

from .flywheel import flywheel_group
from .registry import check_db_url, check_http_url, log_options, registry_group, run_server, setup_logging

log = logging.getLogger(__name__)


def _passphrase(env_name: str | None, prompt: bool, confirm: bool) -> str | None:
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise click.UsageError(f"environment variable {env_name} is not set")
        return value
    if prompt:
        first = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("again: ") != first:
            raise click.UsageError("the passphrases differ")
        return first
    return None


@click.group()
@click.version_option(package_name="guildnet")
def main() -> None:
    """guildnet: publish agents as MCP tools and A2A peers, find and trust other organisations' agents.

    \b
    Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage.
    """


@main.group("keys")
def keys_group() -> None:
    """Create and inspect Ed25519 identity keys (did:key)."""


@keys_group.command("new")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the key with the passphrase in env VAR.")
@click.option("--passphrase", "ask", is_flag=True, help="Prompt for a passphrase to encrypt the key.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@click.option("--json", "as_json", is_flag=True, help='Print {"did", "path"} as JSON.')
def keys_new(path: str, passphrase_env: str | None, ask: bool, force: bool, as_json: bool) -> None:
    """Create a key file (mode 0600) and print its did:key.

    \b
    Example:
      guildnet keys new org.key
      GUILDNET_PASS=... guildnet keys new agent.key --passphrase-env GUILDNET_PASS
    """
    key = SigningKey.generate()
    try:
        key.save(path, _passphrase(passphrase_env, ask, confirm=True), overwrite=force)
    except (KeyFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"did": key.did, "path": path}) if as_json else key.did)


@keys_group.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--passphrase-env", metavar="VAR", help="Passphrase in env VAR, for an encrypted key.")
@click.option("--passphrase", "ask", is_flag=True, help="Prompt for the passphrase.")
@click.option("--json", "as_json", is_flag=True, help='Print {"did", "path"} as JSON.')
def keys_show(path: str, passphrase_env: str | None, ask: bool, as_json: bool) -> None:
    """Print the did:key of a key file (never the secret).

    \b
    Example:
      guildnet keys show org.key
    """
    try:
        key = SigningKey.load(path, _passphrase(passphrase_env, ask, confirm=False))
    except (KeyFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"did": key.did, "path": path}) if as_json else key.did)


main.add_command(registry_group)
main.add_command(flywheel_group)


@main.group("node")
def node_group() -> None:
    """Run a node: publish an organisation's agents as A2A peers and MCP tools."""


def _load_node(config_path: str, *, host: str | None = None, port: int | None = None, public_url: str | None = None,
               db: str | None = None, registry: str | None = None) -> Node:
    """The node of ``config_path``: the file, then ``GUILDNET_*`` environment variables, then these flags."""
    try:
        config = with_overrides(load_config(config_path), host=host, port=port, public_url=public_url, db=db,
                                registry=registry)
        return Node.from_config(config)
    except (ConfigError, KeyFileError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@node_group.command("run")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--host", help="Override [node] host (env GUILDNET_NODE_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), help="Override [node] port (env GUILDNET_NODE_PORT).")
@click.option("--public-url", help="Override [node] public_url (env GUILDNET_NODE_PUBLIC_URL).")
@click.option("--db", callback=check_db_url, help="Override [node] db (env GUILDNET_NODE_DB).")
@click.option("--registry", "registry_url", callback=check_http_url,
              help="Override [node] registry (env GUILDNET_REGISTRY).")
@log_options
def node_run(config: str, host: str | None, port: int | None, public_url: str | None, db: str | None,
             registry_url: str | None, log_format: str, log_level: str) -> None:
    """Serve every agent of CONFIG on one port (A2A, MCP at /mcp, /healthz, /readyz, /metrics).

    Settings come from CONFIG, then GUILDNET_* environment variables, then these flags
    (docs/configuration.md).

    \b
    Example:
      guildnet node run examples/echo/node.toml
      GUILDNET_REGISTRY=http://127.0.0.1:8400 guildnet node run node.toml --port 9101 --log-format json
    """
    from aiohttp import web

    setup_logging(log_format, log_level)
    node = _load_node(config, host=host, port=port, public_url=public_url, db=db, registry=registry_url)
    for published in node.agents:
        log.info("agent %s is %s", published.agent.name, published.key.did)
    log.info("node serving on http://%s:%d (public URL %s), %s", node.host, node.port, node.base_url,
             f"publishing to {node.registry_url}" if node.registry_url else "no registry")
    run_server(web.run_app, node.build_app(), node.host, node.port)


@node_group.command("mcp-stdio")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
def node_mcp_stdio(config: str) -> None:
    """Serve the agents of CONFIG as MCP tools over stdin/stdout (for desktop MCP clients).

    \b
    Example (from a shell, then as an MCP client's server entry):
      guildnet node mcp-stdio examples/echo/node.toml
      {"command": "guildnet", "args": ["node", "mcp-stdio", "/path/to/node.toml"]}
    """
    import asyncio

    from guildnet.node.mcp.server import serve_stdio

    node = _load_node(config)
    asyncio.run(serve_stdio(node.agent_list, name=f"guildnet-{node.org_name}"))


@main.command("delegate")
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
@click.option("--explain", is_flag=True, help="Only rank the candidates and say why; call nobody.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def delegate(skill: str, input_text: str, config_path: str, as_agent: str | None, deadline: float,
             budget: float | None, min_reputation: float, prefer: str, explain: bool, as_json: bool) -> None:
    """Delegate SKILL to the best live peer of another organisation, over A2A, with a signed receipt.

    \b
    Examples:
      guildnet delegate translate --input '{"text": "hello"}' --config node.toml
      guildnet delegate translate --input @task.json --config node.toml --explain
    """
    import asyncio

    from guildnet.node.delegation.delegator import DelegationFailed
    from guildnet.node.delegation.ranking import Preference

    try:
        arguments = json.loads(Path(input_text[1:]).read_text() if input_text.startswith("@") else input_text)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
    if not isinstance(arguments, dict):
        raise click.BadParameter("the input must be a JSON object", param_hint="--input")
    node = _load_node(config_path)

    async def go() -> int:
        try:
            delegator = await node.delegator(as_agent=as_agent)
            if explain:
                decision = await delegator.explain(skill, min_reputation=min_reputation, budget=budget,
                                                   prefer=cast(Preference, prefer))
                click.echo(decision.explain() if not as_json else json.dumps(
                    [{"agent": r.candidate.agent_id, "name": r.candidate.name, "rank": r.rank,
                      "reputation_lower": r.candidate.reputation_lower, "evidence": r.candidate.evidence,
                      "price": r.candidate.price, "clears_bar": r.clears_bar, "why": r.reason}
                     for r in decision.ranked], indent=2))
                return 0
            result = await node.delegate(skill, arguments, deadline=deadline, budget=budget,
                                         min_reputation=min_reputation, prefer=cast(Preference, prefer))
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


@node_group.command("retire")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help='Print {"revoked": [ids]} as JSON.')
def node_retire(config: str, as_json: bool) -> None:
    """Revoke every agent of CONFIG in its registry (for ever: their ids cannot be registered again).

    \b
    Example:
      guildnet node retire examples/echo/node.toml
    """
    import asyncio

    node = _load_node(config)
    publisher = node.publisher()
    if publisher is None:
        click.echo("error: the config names no registry", err=True)
        sys.exit(1)

    async def go() -> list[str]:
        try:
            return await publisher.retire()
        finally:
            await publisher.stop()

    try:
        revoked = asyncio.run(go())
    except (RegistryError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"revoked": revoked}))
        return
    for agent_id in revoked:
        click.echo(f"revoked {agent_id}")


@main.command("doctor")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 120),
              help="Seconds to wait for each network check.")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "checks": [{name, status, detail, fix}]}.')
def doctor(config: str, timeout: float, as_json: bool) -> None:
    """Check a node's setup and say what to fix: CONFIG parses, keys exist (0600) and load, agents import,
    the registry answers and its log head verifies, and (if the node runs) its endpoints are healthy.
    Exit 0 when every check passes, 1 when one fails.

    \b
    Example:
      guildnet doctor examples/echo/node.toml
      guildnet doctor node.toml --json
    """
    import asyncio

    from guildnet.node.doctor import diagnose, render

    checks = asyncio.run(diagnose(config, wait=timeout))
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [c.to_json() for c in checks]}, indent=2))
    else:
        render(checks, click.echo)
    sys.exit(1 if failed else 0)

