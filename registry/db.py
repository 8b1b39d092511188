"""Database engines for the registry: SQLite (one file, WAL) by default, PostgreSQL for replicas.

Schema changes go through Alembic migrations (``registry/migrations``); :func:`migrate` brings any
database to the newest revision and is safe to run from several replicas at once on PostgreSQL
(an advisory lock serialises it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from guildnet import storage

DEFAULT_DB_URL = "sqlite+aiosqlite:///guildnet-registry.db"
_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK_ID = 7_301_947_113


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite:///`` URLs and pick the async drivers."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin: without this the driver
    # commits implicitly around SAVEPOINTs and a rolled-back write could leave part of itself behind.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes (kill -9)
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def create_engine(url: str = DEFAULT_DB_URL, **kwargs: Any) -> AsyncEngine:
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    # a text search by a common word ranks the first matches a sequential scan finds: scans start at the table's
    # first page, not where the last synchronised scan stopped (registry/store/reads.py)
    kwargs.setdefault("connect_args", {"server_settings": {"synchronize_seqscans": "off"}})
    return create_async_engine(url, **kwargs)


def sync_twin(engine: AsyncEngine, *, pool_size: int = 1) -> Engine:
    """A synchronous engine on the same SQLite file, for the registry's writer and reader threads."""
    url = engine.url.set(drivername="sqlite+pysqlite")
    twin = sa_create_engine(url, connect_args={"check_same_thread": False}, pool_size=pool_size, max_overflow=0)
    event.listen(twin, "connect", _sqlite_pragmas)
    event.listen(twin, "begin", _sqlite_begin)
    return twin


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    await storage.migrate(engine, _MIGRATIONS, lock_id=_MIGRATION_LOCK_ID)


def run_migrations(url: str) -> None:
    """Synchronous entry point (CLI)."""

    async def _run() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(_run())
