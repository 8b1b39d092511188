"""The node's one database (``[node] db``): the A2A task store and the process log share it.

SQLite files get WAL (readers such as the flywheel never block the writers) and a busy timeout (two writers,
the task store and the process log, wait for each other instead of failing with "database is locked").
The schema comes from Alembic migrations (``node/migrations``), never from dropping and recreating tables;
:func:`migrate` is idempotent and, on PostgreSQL, serialised by an advisory lock, so several components or
replicas may run it at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from guildnet import storage

VERSION_TABLE = "guildnet_node_version"
_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK_ID = 7_301_947_114


def create_engine(url: str, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> AsyncEngine:
    """An async engine for ``url``. ``synchronous``: FULL survives power loss (tasks a caller was told about);
    NORMAL, with WAL, survives a process crash and costs less (process data)."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        def pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

        event.listen(engine.sync_engine, "connect", pragmas)
    return engine


async def migrate(engine: AsyncEngine) -> None:
    """Bring the node's tables to the newest migration (idempotent)."""
    await storage.migrate(engine, _MIGRATIONS, lock_id=_MIGRATION_LOCK_ID)
