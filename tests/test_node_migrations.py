"""The node's schema comes from its migrations: a new database gets every table at the newest revision, in a
version table of its own (a registry may share the database); a database made before migrations is adopted
with its rows, and the table it lacked is added."""

from __future__ import annotations

from sqlalchemy import inspect, text

from guildnet.node.a2a.store import Base as TaskBase
from guildnet.node.db import VERSION_TABLE, create_engine, migrate


async def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_a_new_database_gets_every_table_at_head(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent
        async with engine.connect() as conn:
            version = (await conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalar_one()
    finally:
        await engine.dispose()
    assert version == "0008"
    assert {"a2a_tasks", "process_calls", "registry_heads", VERSION_TABLE} <= await tables(db_url)
    assert "alembic_version" not in await tables(db_url)  # the registry's version table stays free


async def test_a_database_from_before_migrations_is_adopted_with_its_rows(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:  # what a node made before: the task store's table alone
            await conn.run_sync(TaskBase.metadata.create_all)
            await conn.execute(text(
                "INSERT INTO a2a_tasks (id, agent, context_id, state, status, history, artifacts, created, updated) "
                "VALUES ('t1', 'echo', 'c1', 'TASK_STATE_COMPLETED', '{}', '[]', '[]', 1, 2)"))
        await migrate(engine)
        async with engine.connect() as conn:
            kept = (await conn.execute(text("SELECT id FROM a2a_tasks"))).scalars().all()
    finally:
        await engine.dispose()
    assert kept == ["t1"]
    assert {"a2a_tasks", "process_calls", VERSION_TABLE} <= await tables(db_url)
