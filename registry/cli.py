"""``guildnet registry ...``: run a registry server, search it, show one agent."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .client import AgentEntry, RegistryClient, RegistryError, UntrustworthyRecord

DEFAULT_REGISTRY = "http://127.0.0.1:8400"
F = TypeVar("F", bound=Callable[..., Any])


def registry_option() -> Callable[[F], F]:
    return click.option("--registry", "registry_url", envvar="GUILDNET_REGISTRY", default=DEFAULT_REGISTRY,
                        show_default=True, help="Base URL of the registry (env GUILDNET_REGISTRY).")


@click.group("registry")
def registry_group() -> None:
    """Run and query a guildnet registry (NANDA-style agent index)."""


@registry_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="GUILDNET_REGISTRY_HOST")
@click.option("--port", default=8400, show_default=True, type=int, envvar="GUILDNET_REGISTRY_PORT")
@click.option("--db", "db_url", default="sqlite:///guildnet-registry.db", show_default=True,
              envvar="GUILDNET_REGISTRY_DB",
              help="SQLAlchemy URL: a SQLite file, or postgresql://user@host/db for several replicas.")
@click.option("--watch-poll-interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 3600),
              help="Seconds between change-feed polls; a fallback, since writes (and NOTIFY) wake watchers at once.")
@click.option("--key", "key_path", envvar="GUILDNET_REGISTRY_KEY", type=click.Path(dir_okay=False),
              help="The registry's Ed25519 key file (signs log heads), created 0600 if missing. Default: "
                   "registry.key next to the SQLite file, else ./registry.key. Replicas must share one key.")
@click.option("--pretrusted", "pretrusted", multiple=True, metavar="DID",
              help="An organisation DID that anchors reputation (EigenTrust seed); repeatable. "
                   "Env GUILDNET_PRETRUSTED: comma-separated DIDs.")
@click.option("--reputation-interval", default=300.0, show_default=True, type=click.FloatRange(1, 86400),
              help="Seconds between reputation recomputes (each runs only if the log grew).")
def serve(host: str, port: int, db_url: str, watch_poll_interval: float, key_path: str | None,
          pretrusted: tuple[str, ...], reputation_interval: float) -> None:
    """Serve the registry API.

    \b
    Example:
      guildnet registry serve --port 8400 --db sqlite:///registry.db
      guildnet registry serve --db postgresql://postgres@127.0.0.1/test --key /etc/guildnet/registry.key
      guildnet registry serve --pretrusted did:key:z6Mk... --pretrusted did:key:z6Mk...
    """
    from aiohttp import web

    from guildnet.protocols.did import is_did_key

    from .db import normalise_url
    from .server import RegistryConfig, create_app

    if not pretrusted:
        pretrusted = tuple(p.strip() for p in os.environ.get("GUILDNET_PRETRUSTED", "").split(",") if p.strip())
    for did in pretrusted:
        if not is_did_key(did):
            raise click.BadParameter(f"{did!r} is not an Ed25519 did:key", param_hint="--pretrusted")
    app = create_app(RegistryConfig(db_url=normalise_url(db_url), watch_poll_interval=watch_poll_interval,
                                    key_path=key_path, pretrusted_orgs=pretrusted,
                                    reputation_interval=reputation_interval))
    click.echo(f"guildnet registry on http://{host}:{port} (db: {db_url.split('@')[-1]})", err=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except RegistryError as exc:
        _fail(f"registry refused: {exc.status} {exc.title}: {exc.detail}")
    except UntrustworthyRecord as exc:
        _fail(f"registry served a record that does not verify: {exc}")
    except OSError as exc:
        _fail(f"cannot reach the registry: {exc}")


def _entry_json(entry: AgentEntry) -> dict[str, Any]:
    return {"id": entry.id, "facts": entry.facts.to_json(), "live": entry.live, "last_seen": entry.last_seen,
            "revoked": entry.revoked, "current_key": entry.current_key, "version": entry.version}


@registry_group.command("search")
@registry_option()
@click.option("--skill", help="Only agents offering this skill id.")
@click.option("-q", "--query", "q", help="Full-text query over names, descriptions and tags.")
@click.option("--org", help="Only agents of this organisation DID.")
@click.option("--live/--any", "live", default=None, help="Only live (or, with --any, all) agents.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option("--cursor", help="Continue from the page a previous search printed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def search(registry_url: str, skill: str | None, q: str | None, org: str | None, live: bool | None,
           limit: int, cursor: str | None, as_json: bool) -> None:
    """Search agents by skill, text or organisation.

    \b
    Example:
      guildnet registry search --skill translate --live
      guildnet registry search -q "invoice extraction" --json
    """
    async def go() -> Any:
        async with RegistryClient(registry_url) as client:
            return await client.search(skill=skill, q=q, org=org, live=live, limit=limit, cursor=cursor)

    page = _run(go())
    if as_json:
        click.echo(json.dumps({"agents": [_entry_json(a) for a in page.agents], "next": page.next}, indent=2))
        return
    if not page.agents:
        click.echo("no agents found")
        return
    click.echo(f"{'NAME':<20} {'ORGANISATION':<16} {'LIVE':<5} {'SKILLS':<30} ID")
    for entry in page.agents:
        skills = ",".join(s.id for s in entry.facts.skills)
        click.echo(f"{entry.facts.name[:20]:<20} {entry.facts.organisation.name[:16]:<16} "
                   f"{'yes' if entry.live else 'no':<5} {skills[:30]:<30} {entry.id}")
    if page.next:
        click.echo(f"more: add --cursor {page.next}")


@registry_group.command("show")
@registry_option()
@click.argument("agent_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(registry_url: str, agent_id: str, as_json: bool) -> None:
    """Show one agent's verified AgentFacts and status.

    \b
    Example:
      guildnet registry show did:key:z6Mk...
    """
    async def go() -> Any:
        async with RegistryClient(registry_url) as client:
            return await client.get(agent_id)

    entry: AgentEntry = _run(go())
    if as_json:
        click.echo(json.dumps(_entry_json(entry), indent=2))
        return
    facts = entry.facts
    status = "revoked" if entry.revoked else ("live" if entry.live else "stale")
    click.echo(f"{facts.name} (v{facts.version}, {status}) — signature and endorsement verified")
    click.echo(f"  id:           {facts.id}")
    click.echo(f"  organisation: {facts.organisation.name} {facts.organisation.id}")
    if facts.endpoints.a2a:
        click.echo(f"  a2a:          {facts.endpoints.a2a}")
    if facts.endpoints.mcp:
        click.echo(f"  mcp:          {facts.endpoints.mcp}")
    for skill in facts.skills:
        click.echo(f"  skill {skill.id}: {skill.description}")
