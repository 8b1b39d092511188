from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path

import asyncpg
import pytest
from registry_support import PG_ADMIN_DSN, database


@cache
def postgres_reachable() -> bool:
    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("postgres" in item.keywords for item in items) and not postgres_reachable():
        if os.environ.get("CI"):
            raise pytest.UsageError(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}; CI must run both back ends")
        skip = pytest.mark.skip(reason=f"PostgreSQL not reachable at {PG_ADMIN_DSN}")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_guildnet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the GUILDNET_* variables it sets: a developer's shell must not change a result."""
    for name in list(os.environ):
        if name.startswith("GUILDNET_") and name != "GUILDNET_TEST_PG":
            monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh registry database on each back end: every registry test runs on SQLite and PostgreSQL."""
    async with database(request.param, tmp_path) as url:
        yield url
