"""Helpers for witness tests: witnesses in this process or as `guildnet witness serve` processes, and waiting for
a registry to serve a cosigned head."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from registry_support import cli_process, free_port

from guildnet.protocols import keyfile
from guildnet.protocols.witness import Witness, WitnessedLog
from guildnet.registry.cosigning import WitnessEndpoint
from guildnet.witness.server import WitnessConfig, create_app


def witness_identity(tmp_path: Path, name: str) -> Witness:
    """The witness ``name``'s key file under ``tmp_path`` (created now), as a verifier names it."""
    return Witness(f"witness.test/{name}", keyfile.load_or_create(tmp_path / f"{name}.key").did)


@contextlib.asynccontextmanager
async def witness_in_process(tmp_path: Path, name: str, log_key: str) -> AsyncIterator[WitnessEndpoint]:
    """A witness app on a real socket of this process, following the log of ``log_key``."""
    from guildnet.protocols.transparency import origin_for

    identity = witness_identity(tmp_path, name)
    app = create_app(WitnessConfig(name=identity.name, key_path=tmp_path / f"{name}.key",
                                   db_path=tmp_path / f"{name}.db",
                                   logs=(WitnessedLog(origin_for(log_key), log_key),)))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield WitnessEndpoint(f"http://127.0.0.1:{runner.addresses[0][1]}", identity)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def witness_process(tmp_path: Path, name: str, log_key: str) -> AsyncIterator[WitnessEndpoint]:
    """``guildnet witness serve`` as a real OS process on 127.0.0.1, following the log of ``log_key``."""
    identity = witness_identity(tmp_path, name)
    port = free_port()
    async with cli_process("witness", "serve", "--name", identity.name, "--key", str(tmp_path / f"{name}.key"),
                           "--db", str(tmp_path / f"{name}.db"), "--follow", log_key, "--port", str(port),
                           url=f"http://127.0.0.1:{port}") as url:
        yield WitnessEndpoint(url, identity)


async def wait_for_head(url: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll ``url``/v1/log/head until ``done(body)`` (20 s at most); the body, or a failure naming the last one."""
    body: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            async with session.get(url + "/v1/log/head") as response:
                body = await response.json()
            if done(body):
                return body
            await asyncio.sleep(0.05)
    raise AssertionError(f"the registry never served the head wanted; last: {body}")
