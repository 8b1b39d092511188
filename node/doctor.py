"""``guildnet doctor CONFIG``: is this node set up right, and if not, what exactly to change.

Checks, in order (a failing config stops the rest, since nothing else can be known without it):

1. the config parses (after the environment's overrides, as ``node run`` would see it);
2. every key file exists, has mode 0600 and loads unencrypted (the node cannot prompt for passphrases);
3. every agent reference imports to a guildnet Agent;
4. the registry, if one is configured, answers and its signed log head verifies;
5. if the node is running (its ``/healthz`` answers): it is ready, and per agent its A2A card is signed by
   the agent's key, its skills are MCP tools, and the registry holds it live and unrevoked.

Doctor only reads: it never creates keys, registers or writes anything.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from guildnet.protocols import a2a, keyfile
from guildnet.protocols.keys import KeyFileError
from guildnet.registry.client import (
    AuditState,
    HeadStore,
    LogForked,
    RegistryClient,
    RegistryError,
    RegistryUnreachable,
    UntrustworthyRecord,
)

from .agent import Agent
from .config import AgentConfig, ConfigError, NodeConfig, load_agent, load_config, scrubber_for
from .delegation.heads import SqlHeadStore
from .identity import AgentIdentity, Signer

Status = Literal["ok", "warn", "fail", "skip"]
"""``warn``: not a problem yet, but say so (a key the node creates when it first runs)."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_key(name: str, path: Path) -> Check:
    if not path.exists():  # a brand-new config: `node run` creates it (a new identity), nothing is broken
        return Check(name, "warn", f"{path} does not exist yet: the node creates it when it first runs",
                     f"start the node (guildnet node run CONFIG), or create it now: guildnet keys new {path}")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check(name, "fail", f"{path} has mode {mode:04o}: other users can read the secret key",
                     f"chmod 600 {path}")
    try:
        did = keyfile.load(path).did
    except KeyFileError as exc:
        return Check(name, "fail", str(exc),
                     "a node loads its keys without a passphrase: use an unencrypted key, or replace it with "
                     f"guildnet keys new {path} --force (this gives the agent a new identity)")
    return Check(name, "ok", f"{path} (0600) is {did}")


def _load_agent(entry: AgentConfig, config: NodeConfig) -> tuple[Check, Agent | None]:
    name = f"agent {entry.agent}"
    try:
        agent = load_agent(entry.agent, config.base_dir)
    except Exception as exc:  # a user's module can raise anything on import; report it, do not crash
        return Check(name, "fail", f"{type(exc).__name__}: {exc}",
                     f"fix the [[agents]] entry or the module it names (relative to {config.base_dir})"), None
    skills = ", ".join(s.id for s in agent.skills) or "none"
    return Check(name, "ok", f"loads agent {agent.name!r} (skills: {skills})"), agent


def check_pii(config: NodeConfig) -> Check:
    try:
        scrubber = scrubber_for(config)
    except ConfigError as exc:
        return Check("pii", "fail", str(exc), "set the key variable, install guildnet[pii], or change [node] pii*")
    if scrubber.detects_names:
        return Check("pii", "ok", f"process data: {scrubber.mode}; person names detected "
                                  f"({', '.join(scrubber.name_models)})")
    return Check("pii", "ok", f"process data: {scrubber.mode}; person names NOT detected "
                              f"(pii_names = {config.pii_names!r}; pip install 'guildnet[pii]' to detect them)")


class _ReadOnlyHeads:
    """The node's stored log heads, read but never written: doctor changes nothing."""

    def __init__(self, inner: HeadStore) -> None:
        self.inner = inner

    async def load(self, registry: str) -> AuditState | None:
        return await self.inner.load(registry)

    async def save(self, registry: str, state: AuditState) -> None:
        return None


async def _stored_heads(db_url: str) -> tuple[HeadStore | None, AsyncEngine | None]:
    """The node's head store when its database already exists and has the table; else nothing."""
    from sqlalchemy import inspect

    from .db import create_engine

    if db_url.startswith("sqlite") and not os.path.exists(db_url.split(":///", 1)[-1]):  # noqa: ASYNC240
        return None, None
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    except Exception:
        await engine.dispose()
        return None, None
    if "registry_heads" not in tables:
        await engine.dispose()
        return None, None
    return _ReadOnlyHeads(SqlHeadStore(engine)), engine


async def check_registry(url: str, wait: float, *, registry_key: str | None = None, db_url: str | None = None) -> Check:
    """The registry answers, its log head verifies under the pinned key (or the key this node saw first), and
    it extends every head this node verified before."""
    fix_url = "start it (guildnet registry serve), or correct [node] registry / $GUILDNET_REGISTRY"
    heads, engine = await _stored_heads(db_url) if db_url else (None, None)
    try:
        async with RegistryClient(url, timeout=wait, registry_key=registry_key, heads=heads) as client:
            head = await client.log_head()
            pinned = "pinned" if registry_key else "not pinned: set [node] registry_key to it"
            return Check("registry", "ok", f"{url} answers; its log head verifies (size {head.size}, signed by "
                                           f"{client.registry_key}, {pinned}) and extends every head seen before")
    except LogForked as exc:
        return Check("registry", "fail", f"{url}: its log is not the one this node saw before: {exc}; delegation "
                                         "through it is stopped", "ask the registry's operator what happened; "
                                         "only then clear the stored head (DELETE FROM registry_heads)")
    except UntrustworthyRecord as exc:
        return Check("registry", "fail", f"{url}: the log head does not verify: {exc}",
                     "do not use this registry until its operator explains: its log is forged or its key changed")
    except RegistryError as exc:
        return Check("registry", "fail", f"{url} refused the log head: {exc.status} {exc.title}: {exc.detail}",
                     fix_url)
    except RegistryUnreachable as exc:
        return Check("registry", "fail", f"cannot reach {url}: {exc.__cause__ or exc}", fix_url)
    except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Check("registry", "fail", f"cannot reach {url}: {type(exc).__name__}: {exc}", fix_url)
    finally:
        if engine is not None:
            await engine.dispose()


def local_url(config: NodeConfig) -> str:
    """Where this machine reaches the node: its bind address (a wildcard bind via loopback)."""
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    return f"http://[{host}]:{config.port}" if ":" in host else f"http://{host}:{config.port}"


async def _agent_endpoints(session: aiohttp.ClientSession, url: str, agent: Agent, identity: Signer,
                           tools: set[str] | None) -> Check:
    name = f"endpoints {agent.name}"
    card_url = f"{url}/agents/{agent.name}/.well-known/agent-card.json"
    try:
        async with session.get(card_url) as response:
            if response.status != 200:
                return Check(name, "fail", f"{card_url} answered {response.status}",
                             "is the running node using this config? restart it: guildnet node run CONFIG")
            a2a.verify_agent_card(await response.json(), identity.key.did)
    except a2a.CardSignatureError as exc:
        return Check(name, "fail", f"{card_url}: {exc}", "the running node uses other keys than this config "
                     "names: restart it with this config")
    except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
        return Check(name, "fail", f"{card_url}: {type(exc).__name__}: {exc}", "see the node's log")
    if tools is None:
        return Check(name, "fail", "A2A card signed by the agent's key, but MCP tools/list failed at /mcp",
                     "see the node's log")
    missing = [s.id for s in agent.skills if s.id not in tools and f"{agent.name}.{s.id}" not in tools]
    if missing:
        return Check(name, "fail", f"skills missing from the MCP tools: {missing}", "restart the node")
    return Check(name, "ok", f"A2A card signed by {identity.key.did}; MCP tools listed")


async def _registered(client: RegistryClient, agent: Agent, identity: Signer) -> Check:
    name = f"registered {agent.name}"
    try:
        entry = await client.get(identity.id)
    except RegistryError as exc:
        if exc.status == 404:
            return Check(name, "fail", f"{identity.id} is not in the registry",
                         "the node registers at start and retries: see its log for the registry's refusal")
        return Check(name, "fail", f"the registry refused: {exc.status} {exc.title}: {exc.detail}", None)
    except (UntrustworthyRecord, OSError, aiohttp.ClientError, TimeoutError) as exc:
        return Check(name, "fail", f"{type(exc).__name__}: {exc}", "see the registry check above")
    if entry.revoked:
        return Check(name, "fail", f"{identity.id} is revoked (for ever)",
                     "give the agent a new identity: move its key files away; the node creates new ones")
    if not entry.live:
        return Check(name, "fail", f"{identity.id} is registered but not live: heartbeats are not arriving",
                     "see the node's log for registry errors")
    if entry.current_key != identity.key.did:
        return Check(name, "fail", f"the registry's record proves key {entry.current_key}, but this node signs with "
                                   f"{identity.key.did}", "a rotation did not finish: restart the node (it settles "
                                   "rotations at start), or see its log")
    return Check(name, "ok", f"live in the registry as version {entry.version}, key {entry.keys.seq + 1 or 1} of its "
                             "history" if entry.keys.seq > 0 else f"live in the registry as version {entry.version}")


async def _list_tools(url: str, wait: float) -> set[str] | None:
    from mcp import Client

    try:
        async with Client(f"{url}/mcp", read_timeout_seconds=wait) as client:
            return {tool.name for tool in (await client.list_tools()).tools}
    except Exception:  # any MCP failure means the same thing here: the endpoint is not healthy
        return None


async def check_running_node(config: NodeConfig, agents: list[tuple[Agent, Signer]],
                             wait: float) -> list[Check]:
    url = local_url(config)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as session:
        try:
            async with session.get(f"{url}/healthz") as response:
                alive = response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return [Check("node", "skip", f"no node answers at {url}; endpoint checks skipped")]
        if not alive:
            return [Check("node", "fail", f"{url}/healthz answered {response.status}", "see the node's log")]
        async with session.get(f"{url}/readyz") as response:
            body = await response.json(content_type=None) if response.status in (200, 503) else {}
            checks = [Check("node", "ok", f"running at {url}, ready") if response.status == 200 else
                      Check("node", "fail", f"running at {url}, not ready: {body.get('reason', response.status)}",
                            "see the failing checks below, or the node's log")]
        tools = await _list_tools(url, wait)
        for agent, identity in agents:
            checks.append(await _agent_endpoints(session, url, agent, identity, tools))
    if config.registry:
        async with RegistryClient(config.registry, timeout=wait, registry_key=config.registry_key) as client:
            for agent, identity in agents:
                checks.append(await _registered(client, agent, identity))
    return checks


async def diagnose(config_path: str | Path, *, wait: float = 5.0) -> list[Check]:
    """Run every check (each network call waits at most ``wait`` seconds); see the module docstring."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [Check("config", "fail", str(exc), f"edit {config_path} (or the GUILDNET_NODE_* variable named)")]
    checks = [Check("config", "ok", f"{config_path}: organisation {config.org_name!r}, {len(config.agents)} "
                                    f"agent(s), registry {config.registry or 'none'}")]
    checks.append(check_key("org key", config.org_key))
    checks.append(check_pii(config))
    loaded: list[tuple[Agent, Signer]] = []
    for entry in config.agents:
        key_check = check_key(f"key {entry.key.name}", entry.key)
        agent_check, agent = _load_agent(entry, config)
        checks += [key_check, agent_check]
        if agent is not None and key_check.status == "ok":
            loaded.append((agent, AgentIdentity.load(entry.key)))
    if config.registry:
        checks.append(await check_registry(config.registry, wait, registry_key=config.registry_key, db_url=config.db))
    else:
        checks.append(Check("registry", "skip", "no registry configured: the node serves A2A and MCP only"))
    checks += await check_running_node(config, loaded, wait)
    return checks


def render(checks: list[Check], echo: Callable[[str], None]) -> None:
    for check in checks:
        echo(f"{check.status.upper() if check.status == 'fail' else check.status:<5} {check.name:<24} {check.detail}")
        if check.fix:
            echo(f"{'':<5} {'':<24} fix: {check.fix}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    echo(f"{failed} check(s) failed" if failed else
         f"all checks passed ({warned} warning(s))" if warned else "all checks passed")
