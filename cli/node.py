"""``guildnet node ...`` and ``guildnet doctor``: serve a node's agents, retire them, check a node's set-up."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import click

from .common import check_db_url, check_http_url, freeze_startup_heap, log_options, run_server, setup_logging

if TYPE_CHECKING:
    from guildnet.node.node import Node

log = logging.getLogger(__name__)


@click.group("node")
def node_group() -> None:
    """Run a node: publish an organisation's agents as A2A peers and MCP tools."""


def load_node(config_path: str, *, host: str | None = None, port: int | None = None, public_url: str | None = None,
              db: str | None = None, registry: str | None = None,
              fail: Callable[[str], NoReturn] | None = None) -> Node:
    """The node of ``config_path``: the file, then ``GUILDNET_*`` environment variables, then these flags. A
    config that cannot be used is told to ``fail``, by default one line on stderr and exit 2 (bad usage), as
    for a registry's config."""
    from guildnet.node.config import ConfigError, load_config
    from guildnet.node.node import Node
    from guildnet.protocols.keys import KeyFileError

    try:
        config = load_config(config_path, host=host, port=port, public_url=public_url, db=db, registry=registry)
        return Node.from_config(config)
    except (ConfigError, KeyFileError, ValueError) as exc:
        if fail is not None:
            fail(str(exc))
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


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
    node = load_node(config, host=host, port=port, public_url=public_url, db=db, registry=registry_url)
    for published in node.agents:
        log.info("agent %s is %s (key %s)", published.agent.name, published.identity.id, published.identity.key.did)
    if len(node.agents) > 1:
        log.info("the agent card at /.well-known/agent-card.json is %s's (the first agent); each agent's own is at "
                 "/agents/NAME/.well-known/agent-card.json", node.agents[0].agent.name)
    started = (f"node serving on http://{node.host}:{node.port} (public URL {node.base_url}), "
               + (f"publishing to {node.registry_url}" if node.registry_url else "no registry"))
    app = node.build_app()

    async def loaded(_app: web.Application) -> None:  # after the node's own start-up hooks: all it loads is frozen
        log.debug("start-up heap frozen: %d objects the garbage collector no longer walks", freeze_startup_heap())

    app.on_startup.append(loaded)
    run_server(web.run_app, app, node.host, node.port, logger=log, started=started)


@node_group.command("agents")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print what GET / on the running node answers, as JSON.")
def node_agents(config: str, as_json: bool) -> None:
    """List the agents CONFIG serves (creating missing keys, as `node run` would): each one's id, skills (with their
    MCP tool names) and A2A endpoint, and which agent /.well-known/agent-card.json is. A running node answers the
    same at GET /.

    \b
    Example:
      guildnet node agents examples/echo/node.toml
      curl -s http://127.0.0.1:9100/ | jq .agents
    """
    described = load_node(config).describe()
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    click.echo(f"organisation {described['organisation']['name']} ({described['organisation']['id']})")
    for agent in described["agents"]:
        click.echo(f"agent {agent['name']} {agent['id']}")
        click.echo(f"  a2a:    {agent['a2a']}")
        for skill in agent["skills"]:
            click.echo(f"  skill {skill['id']}: MCP tool {skill['mcp_tool']}")
    click.echo(f"root agent card: {described['root_card']['agent']}'s at {described['root_card']['url']}")
    click.echo(f"mcp: {described['endpoints']['mcp']}")


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

    node = load_node(config)
    asyncio.run(serve_stdio(node.agent_list, name=f"guildnet-{node.org_name}"))


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

    node = load_node(config)
    publisher = node.publisher()
    if publisher is None:
        click.echo("error: the config names no registry", err=True)
        sys.exit(1)

    async def go() -> list[str]:
        try:
            return await publisher.retire()
        finally:
            await publisher.stop()

    from guildnet.registry.client import RegistryError

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


@node_group.command("rotate")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--agent", "name", required=True, help="The agent (its name in the node) whose key to rotate.")
@click.option("--json", "as_json", is_flag=True, help='Print {"agent", "key", "via"} as JSON.')
def node_rotate(config: str, name: str, as_json: bool) -> None:
    """Rotate an agent's signing key to the next key it committed to, keeping its id.

    If the node of CONFIG is running, it rotates in place (through its admin socket): tasks in flight go on, and
    every signature from the registry's acceptance on is the new key's. Otherwise the key files and the registry
    are updated directly. The old key signs nothing that counts from then on.

    \b
    Example:
      guildnet node rotate examples/echo/node.toml --agent echo
    """
    import asyncio

    from guildnet.node.identity import IdentityError
    from guildnet.registry.client import RegistryError

    node = load_node(config)
    running = asyncio.run(_rotate_running(str(node.admin_socket), name)) if node.admin_socket else None
    if running is not None:
        via, outcome = "running node", running
    else:
        publisher = node.publisher()
        if publisher is None:
            click.echo("error: the config names no registry, where a rotation must be published", err=True)
            sys.exit(1)

        async def offline() -> dict[str, str]:
            try:
                key = await publisher.rotate(name)
            finally:
                await publisher.stop()
            agent = next(p for p in node.agents if p.agent.name == name)
            return {"agent": agent.identity.id, "key": key}

        try:
            via, outcome = "key files", asyncio.run(offline())
        except (ValueError, IdentityError) as exc:
            outcome = {"error": str(exc)}
        except (RegistryError, OSError) as exc:
            outcome = {"error": f"the registry did not take the rotation: {exc}"}
    if "error" in outcome:
        click.echo(f"error: {outcome['error']}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({**outcome, "via": via}))
    else:
        click.echo(f"agent {name} ({outcome['agent']}) now signs with {outcome['key']} (rotated by the {via})")


async def _rotate_running(socket_path: str, name: str) -> dict[str, str] | None:
    """Ask the running node to rotate; None when no node listens on its admin socket."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path)) as session, \
                session.post(f"http://node/agents/{name}/rotate", timeout=aiohttp.ClientTimeout(total=60)) as response:
            body: dict[str, str] = await response.json()
            return body
    except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError):
        return None


@click.command("doctor")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 120),
              help="Seconds to wait for each network check.")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "checks": [{name, status, detail, fix}]}.')
def doctor(config: str, timeout: float, as_json: bool) -> None:
    """Check a node's setup and say what to fix: CONFIG parses, keys exist (0600) and load, agents import,
    the registry answers and its log head verifies, and (if the node runs) its endpoints are healthy.
    Exit 0 when no check fails (warnings, such as keys the node creates when it first runs, do not), 1 when one fails.

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
