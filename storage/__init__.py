"""How every guildnet database gets its schema: Alembic migrations, run the one way (guildnet.storage).

The node, the registry and the witness each keep their own tables and migrations (``node/migrations``,
``registry/migrations``, ``witness/migrations``) and may share nothing else: the node reaches a registry only
over HTTP, the witness is run by another organisation. This leaf package is what they share instead of three
copies of the same upgrade. It imports nothing of guildnet's, so any of them may use it.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def upgrade(connection: Connection, migrations: Path, *, lock_id: int | None = None) -> None:
    """Bring the tables on ``connection`` to the newest revision in ``migrations`` (idempotent), inside the
    caller's transaction. The ``env.py`` there reads the connection from ``config.attributes["connection"]``.

    On PostgreSQL, ``lock_id`` names an advisory lock held until the transaction ends, so replicas (or a node and
    a registry sharing one database) that start at once upgrade one after the other instead of racing to create
    the same tables; each component passes its own id. SQLite serialises writers by itself."""
    from alembic import command  # imported when a database is opened, not by every CLI command (0.1-0.4 s)
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    if lock_id is not None and connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine, migrations: Path, *, lock_id: int) -> None:
    """:func:`upgrade` in one transaction of an async engine (the node's and the registry's)."""
    async with engine.begin() as connection:
        await connection.run_sync(upgrade, migrations, lock_id=lock_id)
