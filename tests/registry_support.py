"""Shared helpers for registry tests: databases on both back ends, a live server, signed agents."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from guildnet.protocols import keyhistory
from guildnet.protocols.agentfacts import AgentFacts, endorse
from guildnet.protocols.keys import SigningKey
from guildnet.registry.server import STORE, RegistryConfig, create_app
from guildnet.registry.store import RegistryStore

PG_ADMIN_DSN = os.environ.get("GUILDNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def database(kind: str, tmp_path: Any) -> AsyncIterator[str]:
    """A fresh, empty database URL of ``kind`` ('sqlite' or 'postgresql'), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/registry-{uuid.uuid4().hex[:8]}.db"
        return
    name = f"guildnet_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def key_path_for(db_url: str) -> str:
    """A registry key per test database, outside the work tree; replicas of one database share it."""
    return os.path.join(tempfile.gettempdir(), "guildnet-test-keys",
                        hashlib.sha256(db_url.encode()).hexdigest()[:16] + ".key")


@dataclass
class LiveRegistry:
    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def store(self) -> RegistryStore:
        return self.app[STORE]


@contextlib.asynccontextmanager
async def live_registry(db_url: str, **config: Any) -> AsyncIterator[LiveRegistry]:
    """A registry server on a real socket (127.0.0.1, ephemeral port)."""
    config.setdefault("key_path", key_path_for(db_url))
    app = create_app(RegistryConfig(db_url=db_url, **config))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield LiveRegistry(f"http://127.0.0.1:{port}", app, runner)
    finally:
        await runner.cleanup()


class KeyChain:
    """An agent's keys generated ahead for a test: the inception key, then each key it will rotate to, every one
    committed to (by hash) in the event before it, as an agent's node keeps them."""

    def __init__(self, rotations: int = 3) -> None:
        self._keys = [SigningKey.generate() for _ in range(rotations + 2)]
        self.events = [keyhistory.incept(self._keys[0], self._keys[1].did)]

    @property
    def id(self) -> str:
        return self._keys[0].did

    @property
    def inception(self) -> str:
        return self.events[0]

    @property
    def key(self) -> SigningKey:
        """The key in force."""
        return self._keys[len(self.events) - 1]

    def retired(self) -> list[SigningKey]:
        return self._keys[:len(self.events) - 1]

    def next_rotation(self) -> tuple[str, SigningKey]:
        """The event rotating to the committed next key (signed by the key in force), and that key."""
        at = len(self.events) - 1
        event = keyhistory.rotate(self._keys[at], keyhistory.replay(self.id, self.events), self._keys[at + 1].did,
                                  self._keys[at + 2].did if at + 2 < len(self._keys) else None)
        return event, self._keys[at + 1]

    def rotated(self, event: str) -> None:
        self.events.append(event)


ORG_KEYS: dict[str, SigningKey] = {}
"""Organisation keys by DID, so :func:`bump` can re-endorse the facts it changes, as their organisation would."""


@dataclass
class Org:
    name: str
    key: SigningKey

    def __post_init__(self) -> None:
        ORG_KEYS[self.key.did] = self.key

    def agent(self, name: str, *, skills: list[dict[str, Any]] | None = None, version: int = 1,
              description: str = "", ttl_seconds: int = 300, key: SigningKey | None = None,
              a2a: str | None = None) -> tuple[SigningKey, AgentFacts]:
        agent_key = key or SigningKey.generate()
        facts = AgentFacts.model_validate(endorse(self.key, {
            "id": agent_key.did,
            "name": name,
            "organisation": {"id": self.key.did, "name": self.name},
            "description": description or f"{name} agent of {self.name}",
            "version": version,
            "endpoints": {"a2a": a2a or f"http://127.0.0.1:9/agents/{name}/a2a"},
            "skills": skills or [{"id": "echo", "name": "Echo", "description": "Returns its input",
                                  "tags": ["text", "test"]}],
            "model": {"family": "none", "cost_per_1k_input": 0.0, "cost_per_1k_output": 0.0},
            "ttl_seconds": ttl_seconds,
        }))
        return agent_key, facts

    def rotating_agent(self, name: str, **fields: Any) -> tuple[KeyChain, AgentFacts]:
        """An agent whose key can rotate: register it with ``key_event=chain.inception``, signed by ``chain.key``."""
        chain = KeyChain()
        _, facts = self.agent(name, key=chain.key, **fields)
        return chain, facts


STORE_TABLES = ("agents", "agent_skills", "nonces", "changes", "log_entries", "receipts")


async def snapshot(registry: LiveRegistry) -> dict[str, Any]:
    """Everything the store holds (log and receipts included), to prove a refused write changed nothing."""
    from sqlalchemy import text

    async with registry.store.engine.connect() as conn:
        return {table: [tuple(r) for r in (await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))).all()]
                for table in STORE_TABLES}


async def downgrade_registry(db_url: str, revision: str) -> None:
    """Take a registry database back to migration ``revision`` (the next registry started upgrades it again)."""
    from alembic import command
    from alembic.config import Config

    from guildnet.registry import db as registry_db

    def downgrade(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(registry_db._MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    engine = registry_db.create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
    finally:
        await engine.dispose()


def new_org(name: str) -> Org:
    return Org(name, SigningKey.generate())


def bump(facts: AgentFacts, **changes: Any) -> AgentFacts:
    """``facts`` with ``changes``, endorsed again by its organisation (the old endorsement names the old facts)."""
    data = facts.to_json()
    data.update(changes)
    return AgentFacts.model_validate(endorse(ORG_KEYS[facts.organisation.id], data))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_cli(*args: str, url: str, stderr: Any = None, ready: str = "/healthz") -> Any:
    """Start ``guildnet ARGS`` as a real OS process; return it (an asyncio Process) once ``url`` + ``ready``
    answers 200.

    Its stderr goes to ``stderr`` (a binary file) or a temporary file: never a pipe nobody reads, where a
    chatty server would block."""
    import asyncio
    import sys

    import aiohttp

    own = stderr is None
    log = stderr or tempfile.TemporaryFile()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guildnet.cli", *args, stdout=asyncio.subprocess.DEVNULL, stderr=log)
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                if process.returncode is not None:
                    log.seek(0)
                    raise RuntimeError(f"guildnet {args[:2]} exited: {log.read().decode()[-2000:]}")
                try:
                    async with session.get(url + ready) as response:
                        if response.status == 200:
                            return process
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
    finally:
        if own:
            log.close()  # the child holds its own descriptor of the file
    process.kill()
    raise RuntimeError(f"guildnet {args[:2]} did not become ready")


@contextlib.asynccontextmanager
async def cli_process(*args: str, url: str, ready: str = "/healthz") -> AsyncIterator[str]:
    """``guildnet ARGS`` as a real OS process; yields ``url`` once ``ready`` (a path) answers 200."""
    import asyncio

    process = await start_cli(*args, url=url, ready=ready)
    try:
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)


@contextlib.asynccontextmanager
async def registry_process(db_url: str, *extra_args: str) -> AsyncIterator[str]:
    """``guildnet registry serve`` as a real OS process on 127.0.0.1; yields its base URL."""
    port = free_port()
    if "--key" not in extra_args:
        extra_args = (*extra_args, "--key", key_path_for(db_url))
    async with cli_process("registry", "serve", "--port", str(port), "--db", db_url, *extra_args,
                           url=f"http://127.0.0.1:{port}") as url:
        yield url


async def reputation_requests(registry_url: str) -> float:
    """How many reputation requests (batched, any status) the registry at ``registry_url`` has answered."""
    async with aiohttp.ClientSession() as http, http.get(f"{registry_url}/metrics") as response:
        text = await response.text()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "guildnet_http_requests_total" and sample.labels.get("route") == "/v1/reputation")


Intercept = Callable[[web.Request], web.Response | None]


@contextlib.asynccontextmanager
async def pass_through(upstream: str, intercept: Intercept, *, sites: int = 1) -> AsyncIterator[list[str]]:
    """A man in the middle of ``upstream`` on ``sites`` ports of 127.0.0.1: each request is answered by
    ``intercept`` when it returns a response, and passed through to ``upstream`` when it returns None."""
    async with aiohttp.ClientSession() as session:
        async def handle(request: web.Request) -> web.Response:
            answer = intercept(request)
            if answer is not None:
                return answer
            async with session.request(request.method, upstream + request.path_qs, data=await request.read(),
                                       headers={"Content-Type": request.content_type}) as response:
                return web.Response(status=response.status, body=await response.read(),
                                    content_type=response.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for _ in range(sites):
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield [f"http://127.0.0.1:{address[1]}" for address in runner.addresses]
        finally:
            await runner.cleanup()
