"""Reading a node process's process data from its SQLite file while it runs.

A serving node scrubs and writes its process records in the background, after the reply; its first records
wait for the name models to load. On a loaded machine that outlasts the few seconds a stopping node gives its
queue, so a test that wants the rows waits for them while the node still runs."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any


async def process_rows(db: Path, columns: str, *, count: int, where: str = "1 = 1",
                       within: float = 60.0) -> list[tuple[Any, ...]]:
    """``columns`` of the node's ``process_calls`` rows matching ``where``, once ``count`` are written (or
    whatever is there after ``within`` seconds, for the test's own assertion to report)."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute(f"SELECT {columns} FROM process_calls WHERE {where}").fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)
