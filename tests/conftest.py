from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry_support import database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh registry database on each back end: every registry test runs on SQLite and PostgreSQL."""
    async with database(request.param, tmp_path) as url:
        yield url
