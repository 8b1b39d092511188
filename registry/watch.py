"""Fan-out of the change feed to watchers, within one process and across replicas.

One reader per process follows the ``changes`` table and hands each change to every subscriber's
bounded queue, so a thousand watchers cost one query per change, not a thousand. Across replicas the
wake-up comes from PostgreSQL ``LISTEN/NOTIFY`` (sent inside the writing transaction, so it fires on
commit); the table stays the source of truth, so a missed notification only delays a change until the
next periodic poll, never loses it. A subscriber whose queue overflows is detached and catches up from the
table, so one slow watcher never holds back the others or grows memory, and still misses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .store import NOTIFY_CHANNEL, Change, RegistryStore

log = logging.getLogger(__name__)


class _Subscriber:
    __slots__ = ("overflowed", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=size)
        self.overflowed = False


class ChangeHub:
    def __init__(self, store: RegistryStore, *, poll_interval: float = 1.0, queue_size: int = 1000) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.queue_size = queue_size
        self._subscribers: set[_Subscriber] = set()
        self._wake = asyncio.Event()
        self._position = 0
        self._task: asyncio.Task[None] | None = None
        self._listen_conn: AsyncConnection | None = None

    @property
    def watcher_count(self) -> int:
        return len(self._subscribers)

    def notify(self, _seq: int = 0) -> None:
        """Wake the reader (called after a local commit, or by a PostgreSQL notification)."""
        self._wake.set()

    async def start(self) -> None:
        self._position = await self.store.last_seq()
        if self.store.engine.dialect.name == "postgresql":
            await self._listen()
        self._task = asyncio.create_task(self._follow(), name="guildnet-change-hub")

    async def _listen(self) -> None:
        self._listen_conn = await self.store.engine.connect()
        raw = await self._listen_conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.add_listener(NOTIFY_CHANNEL, lambda *_args: self.notify())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listen_conn is not None:
            await self._listen_conn.close()

    async def _follow(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands as the event fires
            # (CPython gh-86296), and stop() then waited for ever on a task that kept polling.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if not self._subscribers:
                    # Nobody to tell: move to the feed's end instead of reading every change (at 1,000 writes/s
                    # reading them cost the registry's event loop ~5 % of its time for no one). A watcher that
                    # subscribes after the second check reads its backlog from the table, past this position.
                    position = await self.store.last_seq()
                    if not self._subscribers:
                        self._position = max(self._position, position)
                        continue
                while True:
                    changes = await self.store.changes_since(self._position)
                    if not changes:
                        break
                    for change in changes:
                        self._publish(change)
                    self._position = changes[-1].seq
            except Exception:  # a database hiccup must not end the feed; the next poll retries
                log.exception("reading the change feed failed; retrying")

    def _publish(self, change: Change) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.queue.put_nowait(change)
            except asyncio.QueueFull:
                subscriber.overflowed = True
                self._subscribers.discard(subscriber)

    async def subscribe(self, since: int) -> AsyncGenerator[Change, None]:
        """Yield every change with ``seq > since`` in order, then live changes as they commit.

        A subscriber that falls more than ``queue_size`` changes behind is detached from the live fan-out
        and catches up from the table instead, so its memory stays bounded and it still misses nothing.
        """
        last = since
        while True:
            subscriber = _Subscriber(self.queue_size)
            self._subscribers.add(subscriber)
            try:
                while True:  # catch up from the table; changes committed meanwhile also reach the queue
                    backlog = await self.store.changes_since(last)
                    if not backlog:
                        break
                    for change in backlog:
                        yield change
                    last = backlog[-1].seq
                while not (subscriber.overflowed and subscriber.queue.empty()):
                    change = await subscriber.queue.get()
                    if change.seq > last:
                        yield change
                        last = change.seq
            finally:
                self._subscribers.discard(subscriber)
