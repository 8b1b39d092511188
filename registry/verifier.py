"""Checking registrations on other cores: signature, freshness, facts and endorsement, in worker processes.

A registration carries two Ed25519 signatures (the write's and the organisation's endorsement), facts to validate
and a text to embed for search by meaning: ~0.4 ms of CPU (0.2 ms before the embedding and the check against the
facts' text as registered), about as much as the rest of the registry's work on it once its rows are written in
bulk (profiled at 100k and 1M agents). The event loop and the writer hold one core; with ``workers`` > 0
these checks run in a ``spawn`` process pool beside them, so a registry uses the machine's other cores for the
part that needs no database. With 0 (the default, and what tests run) they run inline. Either way the same pure
functions decide, and a refusal is the same ``WriteRefused`` (it crosses the process boundary by pickling).

Registrations go to the pool in batches, as writes go to the database: one task per registration cost the event
loop's process ~0.35 ms of its own (a pipe write, a wake-up of the pool's manager thread, a pickled result and a
thread-safe callback each), about as much as the checks it moved away; in batches its CPU per registration went
from 1.01 to 0.64 ms (100k agents, one worker). At most two
batches per worker are in flight (one running, one waiting in its pipe); registrations that arrive meanwhile wait
and go together in the next batch, so a burst costs a few round trips, and a lone registration goes at once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from guildnet.protocols.signed_write import SignedWrite, open_write

from .records import Registration, parse_registration

Opened = tuple[SignedWrite, Registration]

MAX_BATCH = 64
"""Registrations in one task sent to a worker: enough to share a round trip's cost, few enough that a worker
answers the first of them within ~40 ms."""

IN_FLIGHT_PER_WORKER = 2


def open_registration(token: str, now: float, window: int) -> Opened:
    """Verify a register write and parse its facts."""
    write = open_write(token, now=now, window=window)
    return write, parse_registration(write)


def open_registrations(requests: list[tuple[str, float, int]]) -> list[Opened | Exception]:
    """What a worker runs: each request's opened write, or the exception that refused it (a refusal of one
    registration leaves the others of its batch as they are)."""
    opened: list[Opened | Exception] = []
    for token, now, window in requests:
        try:
            opened.append(open_registration(token, now, window))
        except Exception as exc:  # sent back and raised to that request's caller, whatever it is
            opened.append(exc)
    return opened


_Waiting = tuple[tuple[str, float, int], asyncio.Future[Opened]]


class RegistrationVerifier:
    """Checks register writes inline, or in batches on ``workers`` processes."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self._waiting: list[_Waiting] = []
        self._in_flight = 0

    async def open(self, token: str, *, now: float, window: int) -> Opened:
        if self._pool is None:
            return open_registration(token, now, window)
        future: asyncio.Future[Opened] = asyncio.get_running_loop().create_future()
        self._waiting.append(((token, now, window), future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        assert self._pool is not None
        while self._waiting and self._in_flight < IN_FLIGHT_PER_WORKER * self.workers:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            self._in_flight += 1
            task = asyncio.get_running_loop().run_in_executor(self._pool, open_registrations,
                                                              [request for request, _ in batch])
            task.add_done_callback(partial(self._answer, batch))

    def _answer(self, batch: list[_Waiting], task: asyncio.Future[list[Opened | Exception]]) -> None:
        self._in_flight -= 1
        outcomes: list[Opened | BaseException]
        if task.cancelled():
            outcomes = [asyncio.CancelledError()] * len(batch)
        elif (failure := task.exception()) is not None:  # the pool itself failed (a worker died): each caller hears
            outcomes = [failure] * len(batch)
        else:
            outcomes = list(task.result())
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if self._waiting:
            self._dispatch()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
