"""Servers a benchmark runs as their own processes: ``guildnet ...`` on a free 127.0.0.1 port, until healthy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg

PG_ADMIN = os.environ.get("GUILDNET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def registry_database(backend: str, prefix: str) -> AsyncIterator[tuple[str, Path]]:
    """A fresh registry database URL of ``backend`` ('sqlite' or 'postgresql') and a scratch folder for its logs;
    both are removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    pg_name = None
    if backend == "sqlite":
        db = f"sqlite:///{folder}/registry.db"
    else:
        pg_name = f"guildnet_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{pg_name}"')
        await admin.close()
        db = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
    try:
        yield db, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if pg_name:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await admin.close()


@contextlib.asynccontextmanager
async def kept_registry_database(backend: str, name: str) -> AsyncIterator[tuple[str, Path]]:
    """The registry database ``name`` of ``backend``, created if missing and kept afterwards (a 1M-agent prefill
    takes longer than the runs that reuse it), and a fresh scratch folder for logs (removed afterwards). SQLite's
    file is ``$TMPDIR/guildnet-bench-NAME.db``; PostgreSQL's database is NAME on the bench's server."""
    folder = Path(tempfile.mkdtemp(prefix=f"guildnet-bench-{name}-"))
    if backend == "sqlite":
        db = f"sqlite:///{Path(tempfile.gettempdir()) / f'guildnet-bench-{name}.db'}"
    else:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        db = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        yield db, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def guildnet_process(args: list[str], port: int, log_path: Path, *, pinned: bool = False,
                           ready_within: float = 30.0) -> AsyncIterator[asyncio.subprocess.Process]:
    """``guildnet ARGS`` serving on ``port``; yields the process once ``/healthz`` answers (within
    ``ready_within`` seconds), stops it after.

    Its output goes to ``log_path`` (a file, never a pipe nobody reads); ``pinned`` runs it on core 0 (taskset
    execs, so the pid stays the server's) and leaves the other core to the load generator."""
    command = [sys.executable, "-m", "guildnet.cli", *args]
    if pinned:
        command = ["taskset", "-c", "0", *command]
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                       stderr=log)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            deadline = time.monotonic() + ready_within
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    output = await asyncio.to_thread(log_path.read_text, errors="replace")
                    raise RuntimeError(f"guildnet {args[0]} exited: {output[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"guildnet {args[0]} did not become ready in {ready_within:.0f} s")
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
