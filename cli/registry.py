"""``guildnet registry ...``: run a registry server, search it, show one agent."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import tomllib
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

from .common import check_db_url, log_options, registry_hint, registry_option, run_server, setup_logging

if TYPE_CHECKING:
    from guildnet.registry.client import AgentEntry
    from guildnet.registry.cosigning import WitnessEndpoint

log = logging.getLogger(__name__)


_FILE_KEYS = {"host": "host", "port": "port", "db": "db_url", "key": "key_path", "pretrusted": "pretrusted",
              "watch_poll_interval": "watch_poll_interval", "reputation_interval": "reputation_interval",
              "log_format": "log_format", "log_level": "log_level", "write_rate_per_ip": "write_rate_per_ip",
              "write_rate_per_key": "write_rate_per_key", "rate_limit_storage": "rate_limit_storage",
              "max_watchers_per_ip": "max_watchers_per_ip", "witnesses": "witnesses",
              "witness_quorum": "witness_quorum", "cosign_interval": "cosign_interval", "dns_server": "dns_server",
              "domain_ca_file": "ca_file", "domain_recheck_interval": "domain_recheck_interval",
              "domain_withdraw_after": "domain_withdraw_after", "verify_workers": "verify_workers"}


def _read_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--config FILE``: its ``[registry]`` table becomes the command's defaults, so the order is
    file < environment < flags (click reads flags, then env vars, then this default map)."""
    if value is None:
        return None
    path = Path(value)
    try:
        table = tomllib.loads(path.read_text()).get("registry")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"cannot read {value}: {exc}", ctx, param) from exc
    if not isinstance(table, dict):
        raise click.BadParameter(f"{value} has no [registry] table", ctx, param)
    unknown = sorted(set(table) - set(_FILE_KEYS))
    if unknown:
        raise click.BadParameter(f"{value}: unknown [registry] keys {unknown}; known: {sorted(_FILE_KEYS)}",
                                 ctx, param)
    base = path.resolve().parent
    for name in ("key", "domain_ca_file"):
        if isinstance(table.get(name), str):
            table[name] = str(base / table[name])
    db = table.get("db")
    if isinstance(db, str) and db.startswith("sqlite:///") and not db.startswith("sqlite:////"):
        table["db"] = f"sqlite:///{base / db.removeprefix('sqlite:///')}"
    ctx.default_map = {**(ctx.default_map or {}), **{_FILE_KEYS[k]: v for k, v in table.items()}}
    return value


def _dns_server(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``HOST[:PORT]`` of a DNS server, by address."""
    if value is None:
        return None
    from guildnet.registry.client import parse_dns_server

    try:
        parse_dns_server(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an address or ADDRESS:PORT ({exc})", ctx, param) from exc
    return value


def domain_lookup_options(command: Any) -> Any:
    """``--dns-server`` and ``--domain-ca-file``: where this process looks domain proofs up (default: the system's
    resolver and CAs)."""
    command = click.option("--domain-ca-file", "ca_file", type=click.Path(exists=True, dir_okay=False),
                           envvar="GUILDNET_DOMAIN_CA_FILE",
                           help="PEM file of the CAs an HTTPS domain proof's certificate must chain to (default: "
                                "the system's; env GUILDNET_DOMAIN_CA_FILE).")(command)
    return click.option("--dns-server", callback=_dns_server, metavar="ADDRESS[:PORT]", envvar="GUILDNET_DNS_SERVER",
                        help="The DNS server to ask for domain proofs (default: the system's resolver; env "
                             "GUILDNET_DNS_SERVER).")(command)


def _rate(ctx: click.Context, param: click.Parameter, value: str) -> str | None:
    """A ``limits`` rate such as ``100/second`` or ``6000/minute``; ``off`` disables the limit."""
    if value.strip().lower() in ("off", "none", "0"):
        return None
    from limits import parse

    try:
        parse(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a rate like 100/second or 6000/minute", ctx, param) from exc
    return value


def _witnesses(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[WitnessEndpoint, ...]:
    from guildnet.protocols.witness import WitnessError
    from guildnet.registry.cosigning import WitnessEndpoint

    try:
        endpoints = tuple(WitnessEndpoint.parse(value) for value in values)
    except WitnessError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    if len({e.witness.name for e in endpoints}) != len(endpoints):
        raise click.BadParameter("each witness once (one name each)", ctx, param)
    return endpoints


@click.group("registry")
def registry_group() -> None:
    """Run and query a guildnet registry (NANDA-style agent index)."""


@registry_group.command("serve")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_read_config_file, envvar="GUILDNET_REGISTRY_CONFIG",
              help="A TOML file with a [registry] table of these options (db, port, ...); the environment and "
                   "flags override it. See docs/configuration.md.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="GUILDNET_REGISTRY_HOST",
              help="Address to bind (env GUILDNET_REGISTRY_HOST).")
@click.option("--port", default=8400, show_default=True, type=click.IntRange(1, 65535), envvar="GUILDNET_REGISTRY_PORT",
              help="Port to listen on (env GUILDNET_REGISTRY_PORT).")
@click.option("--db", "db_url", default="sqlite:///guildnet-registry.db", show_default=True,
              envvar="GUILDNET_REGISTRY_DB", callback=check_db_url,
              help="SQLAlchemy URL: a SQLite file, or postgresql://user@host/db for several replicas "
                   "(env GUILDNET_REGISTRY_DB).")
@click.option("--watch-poll-interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 3600),
              envvar="GUILDNET_REGISTRY_WATCH_POLL_INTERVAL",
              help="Seconds between change-feed polls; a fallback, since writes (and NOTIFY) wake watchers at once.")
@click.option("--key", "key_path", envvar="GUILDNET_REGISTRY_KEY", type=click.Path(dir_okay=False),
              help="The registry's Ed25519 key file (signs log heads), created 0600 if missing. Default: "
                   "registry.key next to the SQLite file, else ./registry.key. Replicas must share one key.")
@click.option("--pretrusted", "pretrusted", multiple=True, metavar="DID",
              help="An organisation DID that anchors reputation (EigenTrust seed); repeatable. "
                   "Env GUILDNET_PRETRUSTED: comma-separated DIDs.")
@click.option("--reputation-interval", default=300.0, show_default=True, type=click.FloatRange(1, 86400),
              envvar="GUILDNET_REGISTRY_REPUTATION_INTERVAL",
              help="Seconds between reputation recomputes (each runs only if the log grew).")
@click.option("--write-rate-per-ip", default="6000/minute", show_default=True, callback=_rate,
              envvar="GUILDNET_REGISTRY_WRITE_RATE_PER_IP",
              help="Signed writes one client address may send, e.g. 100/second; 'off' for no limit. Over it: "
                   "429 with Retry-After.")
@click.option("--write-rate-per-key", default="600/minute", show_default=True, callback=_rate,
              envvar="GUILDNET_REGISTRY_WRITE_RATE_PER_KEY",
              help="Signed writes one (verified) key may send; 'off' for no limit.")
@click.option("--max-watchers-per-ip", default=1000, show_default=True, type=click.IntRange(1),
              envvar="GUILDNET_REGISTRY_MAX_WATCHERS_PER_IP",
              help="Open /v1/watch connections one client address may hold; more get 429.")
@click.option("--rate-limit-storage", default="memory://", show_default=True,
              envvar="GUILDNET_REGISTRY_RATE_LIMIT_STORAGE",
              help="Where write counts live: memory:// (per replica) or redis://HOST:6379 (shared by replicas).")
@click.option("--witness", "witnesses", multiple=True, metavar="NAME,DID,URL", callback=_witnesses,
              envvar="GUILDNET_REGISTRY_WITNESSES",
              help="A witness that cosigns the log's checkpoints (C2SP tlog-witness): its name, did:key and URL; "
                   "repeatable (env GUILDNET_REGISTRY_WITNESSES, space-separated). See docs/witness.md.")
@click.option("--witness-quorum", type=click.IntRange(1), envvar="GUILDNET_REGISTRY_WITNESS_QUORUM",
              help="Cosignatures a checkpoint needs before /v1/log/head serves it. Default: every --witness.")
@click.option("--cosign-interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 3600),
              envvar="GUILDNET_REGISTRY_COSIGN_INTERVAL",
              help="Seconds between submissions of a grown log's checkpoint to the witnesses.")
@domain_lookup_options
@click.option("--domain-recheck-interval", default=6 * 3600.0, show_default=True, type=click.FloatRange(1),
              envvar="GUILDNET_REGISTRY_DOMAIN_RECHECK_INTERVAL",
              help="Seconds between checks of each claimed domain's proof.")
@click.option("--domain-withdraw-after", default=3, show_default=True, type=click.IntRange(1),
              envvar="GUILDNET_REGISTRY_DOMAIN_WITHDRAW_AFTER",
              help="Failed checks in a row after which a verified domain mark is withdrawn.")
@click.option("--verify-workers", default=0, show_default=True, type=click.IntRange(0, 64),
              envvar="GUILDNET_REGISTRY_VERIFY_WORKERS",
              help="Processes that check registrations (signatures, facts) beside the event loop, to use more "
                   "cores; 0: inline.")
@log_options
def serve(host: str, port: int, db_url: str, watch_poll_interval: float, key_path: str | None,
          pretrusted: tuple[str, ...], reputation_interval: float, write_rate_per_ip: str | None,
          write_rate_per_key: str | None, max_watchers_per_ip: int, rate_limit_storage: str,
          witnesses: tuple[WitnessEndpoint, ...], witness_quorum: int | None, cosign_interval: float,
          dns_server: str | None, ca_file: str | None, domain_recheck_interval: float, domain_withdraw_after: int,
          verify_workers: int, log_format: str, log_level: str) -> None:
    """Serve the registry API (also /healthz, /readyz and Prometheus /metrics).

    \b
    Example:
      guildnet registry serve --port 8400 --db sqlite:///registry.db
      guildnet registry serve --config registry.toml --log-format json
      guildnet registry serve --db postgresql://postgres@127.0.0.1/test --key /etc/guildnet/registry.key
      guildnet registry serve --pretrusted did:key:z6Mk... --pretrusted did:key:z6Mk...
      guildnet registry serve --witness w1.example.org/w,did:key:z6Mk...,http://w1.example.org:8500
    """
    from aiohttp import web

    from guildnet.protocols.did import is_did_key
    from guildnet.registry.client import DomainLookupSettings
    from guildnet.registry.db import normalise_url
    from guildnet.registry.server import RegistryConfig, create_app

    setup_logging(log_format, log_level)
    source = click.get_current_context().get_parameter_source("pretrusted")
    from_env = os.environ.get("GUILDNET_PRETRUSTED", "")
    if source in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP) and from_env.strip():
        pretrusted = tuple(p.strip() for p in from_env.split(",") if p.strip())
    for did in pretrusted:
        if not is_did_key(did):
            raise click.BadParameter(f"{did!r} is not an Ed25519 did:key", param_hint="--pretrusted")
    if witness_quorum is not None and witness_quorum > len(witnesses):
        raise click.BadParameter(f"{witness_quorum} is more than the {len(witnesses)} --witness given",
                                 param_hint="--witness-quorum")
    from limits.errors import ConfigurationError

    try:
        app = create_app(RegistryConfig(db_url=normalise_url(db_url), watch_poll_interval=watch_poll_interval,
                                        key_path=key_path, pretrusted_orgs=pretrusted,
                                        reputation_interval=reputation_interval, write_rate_per_ip=write_rate_per_ip,
                                        write_rate_per_key=write_rate_per_key, rate_limit_storage=rate_limit_storage,
                                        max_watchers_per_ip=max_watchers_per_ip, witnesses=witnesses,
                                        witness_quorum=witness_quorum, cosign_interval=cosign_interval,
                                        domain_lookup=DomainLookupSettings(dns_server=dns_server, ca_file=ca_file),
                                        domain_recheck_interval=domain_recheck_interval,
                                        domain_withdraw_after=domain_withdraw_after, verify_workers=verify_workers))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--rate-limit-storage") from exc
    run_server(web.run_app, app, host, port, logger=log,
               started=f"guildnet registry on http://{host}:{port} (db: {db_url.split('@')[-1]})")


def _fail(message: str, *, hint: str | None = None, as_json: bool = False) -> NoReturn:
    """Exit 1 saying why: ``error: ...`` (and ``hint: ...``) on stderr, or with ``--json`` the
    ``{"error": {"kind", "message", "hint"}}`` that `guildnet delegate --json` prints, on stdout."""
    if as_json:
        click.echo(json.dumps({"error": {"kind": "registry", "message": message, **({"hint": hint} if hint else {})}},
                              indent=2))
    else:
        click.echo(f"error: {message}", err=True)
        if hint:
            click.echo(f"hint: {hint}", err=True)
    sys.exit(1)


def _run(coro: Any, *, as_json: bool = False) -> Any:
    from guildnet.registry.client import RegistryError, RegistryUnreachable, UntrustworthyRecord

    try:
        return asyncio.run(coro)
    except RegistryError as exc:
        _fail(f"registry refused: {exc}", hint=registry_hint(exc), as_json=as_json)
    except UntrustworthyRecord as exc:
        _fail(f"registry served a record that does not verify: {exc}", hint=registry_hint(exc), as_json=as_json)
    except RegistryUnreachable as exc:
        _fail(str(exc), hint=registry_hint(exc), as_json=as_json)
    except OSError as exc:
        _fail(f"cannot reach the registry: {exc}", hint=registry_hint(exc), as_json=as_json)


def _entry_json(entry: AgentEntry) -> dict[str, Any]:
    return {"id": entry.id, "facts": entry.facts.to_json(), "live": entry.live, "last_seen": entry.last_seen,
            "revoked": entry.revoked, "current_key": entry.current_key, "version": entry.version,
            **({"domain": entry.domain.to_json()} if entry.domain else {})}


def _domain_cell(entry: AgentEntry) -> str:
    """The organisation's domain as the registry marks it: ``acme.example ✓`` (verified), ``?`` (claimed, never
    proven) or ``✗`` (withdrawn); ``-`` when the facts claim none."""
    domain = entry.facts.organisation.domain
    if domain is None:
        return "-"
    status = entry.domain.status if entry.domain else "unverified"
    return f"{domain} {({'verified': '✓', 'withdrawn': '✗'}).get(status, '?')}"


@registry_group.command("search")
@registry_option()
@click.option("--skill", help="Only agents offering this skill id.")
@click.option("-q", "--query", "q", help="What you need, in your own words: matched by words (names, descriptions, "
              "tags) and by meaning (a paraphrase finds the agent), the two rankings fused.")
@click.option("--match", type=click.Choice(["hybrid", "words", "meaning"]), default="hybrid", show_default=True,
              help="How -q matches: both fused, words alone (full-text search), or meaning alone.")
@click.option("--org", help="Only agents of this organisation: its name (as the tables show it) or its DID.")
@click.option("--live", "state", flag_value="live", help="Only live agents.")
@click.option("--stale", "state", flag_value="stale", help="Only agents that are not live (missed heartbeats).")
@click.option("--any", "state", flag_value="any", default=True, help="Live and stale agents alike (the default).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option("--cursor", help="Continue from the page a previous search printed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def search(registry_url: str, skill: str | None, q: str | None, match: str, org: str | None, state: str,
           limit: int, cursor: str | None, as_json: bool) -> None:
    """Search agents by skill, text or organisation; the table shows each agent's A2A endpoint.

    \b
    Example:
      guildnet registry search --skill translate --live
      guildnet registry search -q "pull the amounts out of a vendor bill" --json
      guildnet registry search --org acme --stale
    """
    from guildnet.registry.client import RegistryClient

    async def go() -> Any:
        async with RegistryClient(registry_url) as client:
            return await client.search(skill=skill, q=q, org=org, live={"live": True, "stale": False}.get(state),
                                       limit=limit, cursor=cursor, match=None if match == "hybrid" else match)

    page = _run(go(), as_json=as_json)
    if as_json:
        click.echo(json.dumps({"agents": [_entry_json(a) for a in page.agents], "next": page.next}, indent=2))
        return
    if not page.agents:
        click.echo("no agents found")
        return
    domains = any(entry.facts.organisation.domain for entry in page.agents)  # a DOMAIN column when any claims one
    click.echo(f"{'NAME':<20} {'ORGANISATION':<16} {'DOMAIN':<24} {'LIVE':<5} {'SKILLS':<30} {'ID':<56} A2A"
               if domains else f"{'NAME':<20} {'ORGANISATION':<16} {'LIVE':<5} {'SKILLS':<30} {'ID':<56} A2A")
    for entry in page.agents:
        skills = ",".join(s.id for s in entry.facts.skills)
        domain = f"{_domain_cell(entry)[-24:]:<24} " if domains else ""
        click.echo(f"{entry.facts.name[:20]:<20} {entry.facts.organisation.name[:16]:<16} {domain}"
                   f"{'yes' if entry.live else 'no':<5} {skills[:30]:<30} {entry.id:<56} "
                   f"{entry.facts.endpoints.a2a or '-'}")
    if domains:
        click.echo("domain: ✓ verified, ? claimed but not proven, ✗ withdrawn, as the registry says "
                   "(`registry show ID --check-domain` checks the proof yourself)")
    if page.next:
        click.echo(f"more: add --cursor {page.next}")


@registry_group.command("key")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_read_config_file, envvar="GUILDNET_REGISTRY_CONFIG",
              help="The registry's TOML file (its [registry] key and db), as for `registry serve`.")
@click.option("--db", "db_url", default="sqlite:///guildnet-registry.db", show_default=True,
              envvar="GUILDNET_REGISTRY_DB", callback=check_db_url, help="The registry's database URL.")
@click.option("--key", "key_path", envvar="GUILDNET_REGISTRY_KEY", type=click.Path(dir_okay=False),
              help="The registry's key file. Default: as `registry serve` chooses it.")
@click.option("--json", "as_json", is_flag=True, help='Print {"key", "origin", "path"} as JSON.')
def key(db_url: str, key_path: str | None, as_json: bool) -> None:
    """Print the did:key that signs this registry's log heads, for nodes to pin ([node] registry_key).

    Read from the registry's own key file, on the registry's machine: a key learnt from the network is
    exactly what pinning must not trust. Give it to node operators out of band.

    \b
    Example:
      guildnet registry key --db sqlite:///registry.db
      guildnet registry key --config registry.toml --json
    """
    from guildnet.protocols import keyfile
    from guildnet.protocols.keys import KeyFileError
    from guildnet.protocols.transparency import origin_for
    from guildnet.registry.db import normalise_url
    from guildnet.registry.log import default_key_path

    path = key_path or str(default_key_path(normalise_url(db_url)))
    try:
        did = keyfile.load(path).did
    except KeyFileError as exc:
        _fail(f"{exc} (a registry creates its key when it first serves: guildnet registry serve)")
    if as_json:
        click.echo(json.dumps({"key": did, "origin": origin_for(did), "path": path}))
    else:
        click.echo(did)


@registry_group.command("show")
@registry_option()
@click.argument("agent_id")
@click.option("--check-domain", is_flag=True,
              help="Check the organisation's domain proof yourself (DNS, then HTTPS), not only the registry's mark; "
                   "exit 1 if it does not hold.")
@domain_lookup_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(registry_url: str, agent_id: str, check_domain: bool, dns_server: str | None, ca_file: str | None,
         as_json: bool) -> None:
    """Show one agent's verified AgentFacts, its status and its reputation for each skill (or why there is none).

    \b
    Example:
      guildnet registry show did:key:z6Mk...
      guildnet registry show did:key:z6Mk... --check-domain
    """
    from guildnet.protocols.domain import DomainCheck
    from guildnet.protocols.domain import check_domain as look_up
    from guildnet.registry.client import DomainLookupSettings, DomainResolver, RegistryClient

    async def go() -> tuple[AgentEntry, dict[str, dict[str, Any]], DomainCheck | None]:
        async with RegistryClient(registry_url) as client:
            entry = await client.get(agent_id)
            reputation = {skill.id: await _reputation(client, agent_id, skill.id) for skill in entry.facts.skills}
        organisation = entry.facts.organisation
        if not check_domain or organisation.domain is None:
            return entry, reputation, None
        resolver = DomainResolver(DomainLookupSettings(dns_server=dns_server, ca_file=ca_file))
        try:
            return entry, reputation, await look_up(organisation.domain, organisation.id, resolver, now=time.time())
        finally:
            await resolver.close()

    entry, reputation, own = _run(go(), as_json=as_json)
    if as_json:
        click.echo(json.dumps({**_entry_json(entry), "reputation": reputation,
                               **({"domain_check": asdict(own)} if own else {})}, indent=2))
    else:
        _print_entry(entry, own, reputation)
    if check_domain and (own is None or not own.verified):
        sys.exit(1)


@registry_group.command("withdraw")
@registry_option()
@click.argument("agent_id")
@click.option("--org-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The organisation's key file (the key that endorsed the agent).")
@click.option("--json", "as_json", is_flag=True, help="Print the registry's answer as JSON.")
def withdraw(registry_url: str, agent_id: str, org_key: str, as_json: bool) -> None:
    """Withdraw your organisation's endorsement of an agent: it is revoked at once.

    For an agent whose own key is lost or stolen: the organisation key signs the withdrawal, the registry logs
    it, the agent leaves search and reputation, sends no more receipts and can never register again.

    
    Example:
      guildnet registry withdraw did:key:z6Mk... --org-key keys/org.key
    """
    from guildnet.protocols import keyfile
    from guildnet.registry.client import RegistryClient

    async def go() -> dict[str, Any]:
        async with RegistryClient(registry_url) as client:
            return await client.withdraw(agent_id, keyfile.load(org_key))

    answer = _run(go(), as_json=as_json)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        click.echo(f"withdrawn: {agent_id} (log index {answer.get('log_index')})")


async def _reputation(client: Any, agent_id: str, skill: str) -> dict[str, Any]:
    """The registry's score for one skill, or ``{"unavailable": why}`` (no pre-trusted organisations, not computed
    yet)."""
    from guildnet.registry.client import RegistryError

    try:
        report = await client.reputation(agent_id, skill)
    except RegistryError as exc:
        return {"unavailable": exc.detail or exc.title}
    return {"score": report.score, "lower_bound": report.lower_bound, "evidence": report.evidence,
            "receipts": report.receipts}


def _print_entry(entry: AgentEntry, own: Any, reputation: dict[str, dict[str, Any]]) -> None:
    facts = entry.facts
    status = "revoked" if entry.revoked else ("live" if entry.live else "stale")
    click.echo(f"{facts.name} (v{facts.version}, {status}) — signature and endorsement verified")
    click.echo(f"  id:           {facts.id}")
    click.echo(f"  organisation: {facts.organisation.name} {facts.organisation.id}")
    if facts.organisation.domain:
        mark = entry.domain
        said = (f"{mark.status} by {mark.method}" if mark and mark.method else mark.status if mark else "not checked")
        when = f", checked {_when(mark.checked_at)}" if mark else ""
        click.echo(f"  domain:       {facts.organisation.domain} — the registry says: {said}{when}")
        if mark and not mark.verified:
            click.echo(f"                ({mark.detail})")
        if own is not None:
            click.echo(f"                checked here: {'verified by ' + own.method if own.verified else 'NOT proven'}"
                       f" ({own.detail})")
    if facts.endpoints.a2a:
        click.echo(f"  a2a:          {facts.endpoints.a2a}")
    if facts.endpoints.mcp:
        click.echo(f"  mcp:          {facts.endpoints.mcp}")
    for skill in facts.skills:
        click.echo(f"  skill {skill.id}: {skill.description}")
        score = reputation.get(skill.id, {})
        click.echo(f"    reputation: unavailable ({score['unavailable']})" if "unavailable" in score else
                   f"    reputation: {score['score']:.3f}, lower bound {score['lower_bound']:.3f}, evidence "
                   f"{score['evidence']:.1f} from {score['receipts']} receipt(s)")


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
