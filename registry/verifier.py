"""Checking registrations on other cores: signature, freshness, facts and endorsement, in worker processes.

A registration carries two Ed25519 signatures (the write's and the organisation's endorsement) and facts to
validate: ~1 ms of CPU of the ~1.5 ms a registration costs the registry once its rows are written in bulk
(profiled, 100k agents). The event loop and the writer hold one core; with ``workers`` > 0 these checks run in a
``spawn`` process pool beside them, so a registry uses the machine's other cores for the part that needs no
database. With 0 (the default, and what tests run) they run inline. Either way the same pure functions decide,
and a refusal is the same ``WriteRefused`` (it crosses the process boundary by pickling).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from guildnet.protocols.signed_write import SignedWrite, open_write

from .records import Registration, parse_registration


def open_registration(token: str, now: float, window: int) -> tuple[SignedWrite, Registration]:
    """Verify a register write and parse its facts (what a worker runs)."""
    write = open_write(token, now=now, window=window)
    return write, parse_registration(write)


class RegistrationVerifier:
    """Checks register writes inline, or in ``workers`` processes."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    async def open(self, token: str, *, now: float, window: int) -> tuple[SignedWrite, Registration]:
        if self._pool is None:
            return open_registration(token, now, window)
        return await asyncio.get_running_loop().run_in_executor(self._pool, open_registration, token, now, window)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
