"""Where push-notification configs and pending deliveries live: beside the tasks (same database), or in memory.

A delivery is written before the event it carries is acknowledged to anyone (the A2A service awaits
:meth:`PushStore.enqueue` before a task's settling event goes out), and deleted only once the webhook answered
2xx or the retries ran out. So a node killed between a task's completion and the delivery delivers it after the
restart, and a webhook that is down gets it when it is back. Each delivery keeps its event id across retries
and restarts: a receiver that remembers ids never acts on one event twice.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

from sqlalchemy import Float, Index, Integer, String, Table, Text, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guildnet.protocols.a2a.push import PushConfig


@dataclass(frozen=True, slots=True)
class StoredConfig:
    agent: str
    owner: str | None
    config: PushConfig


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one webhook: ``body`` is posted as is, every attempt (its id is the event id)."""

    id: str
    agent: str
    task_id: str
    config_id: str
    body: bytes
    attempts: int = 0
    next_at: float = 0.0


class PushStore(ABC):
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @abstractmethod
    async def put_config(self, stored: StoredConfig) -> None:
        """Insert or replace (same task and id) a config."""

    @abstractmethod
    async def configs(self, agent: str, task_id: str) -> list[StoredConfig]: ...

    @abstractmethod
    async def delete_config(self, agent: str, task_id: str, config_id: str) -> None:
        """Delete a config and its pending deliveries (nothing more goes to it); idempotent."""

    @abstractmethod
    async def purge(self, created_before: float) -> int:
        """Delete the configs made before ``created_before`` (their tasks are past the node's retention) and
        their pending deliveries; how many configs."""

    @abstractmethod
    async def configured_tasks(self) -> set[tuple[str, str]]:
        """``(agent, task id)`` of every task with a config: what the service checks events against."""

    @abstractmethod
    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        """Durably add deliveries."""

    @abstractmethod
    async def pending(self) -> int: ...

    @abstractmethod
    async def due(self, now: float, limit: int) -> list[Delivery]:
        """Deliveries whose next attempt is due, oldest first."""

    @abstractmethod
    async def done(self, delivery_id: str) -> None:
        """Delivered, or given up: forget it."""

    @abstractmethod
    async def retry(self, delivery_id: str, attempts: int, next_at: float) -> None: ...


class InMemoryPushStore(PushStore):
    """For in-memory task stores: configs and deliveries die with the process."""

    def __init__(self) -> None:
        self._configs: dict[tuple[str, str, str], StoredConfig] = {}
        self._created: dict[tuple[str, str, str], float] = {}
        self._deliveries: dict[str, Delivery] = {}

    async def put_config(self, stored: StoredConfig) -> None:
        key = (stored.agent, stored.config.task_id, stored.config.id)
        self._configs[key] = stored
        self._created[key] = time.time()

    async def purge(self, created_before: float) -> int:
        old = [key for key, created in self._created.items() if created < created_before]
        for agent, task_id, config_id in old:
            await self.delete_config(agent, task_id, config_id)
        return len(old)

    async def configs(self, agent: str, task_id: str) -> list[StoredConfig]:
        return [c for (a, t, _), c in self._configs.items() if a == agent and t == task_id]

    async def delete_config(self, agent: str, task_id: str, config_id: str) -> None:
        self._configs.pop((agent, task_id, config_id), None)
        self._created.pop((agent, task_id, config_id), None)
        for key, d in list(self._deliveries.items()):
            if (d.agent, d.task_id, d.config_id) == (agent, task_id, config_id):
                del self._deliveries[key]

    async def configured_tasks(self) -> set[tuple[str, str]]:
        return {(a, t) for a, t, _ in self._configs}

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            self._deliveries[d.id] = d

    async def pending(self) -> int:
        return len(self._deliveries)

    async def due(self, now: float, limit: int) -> list[Delivery]:
        return sorted((d for d in self._deliveries.values() if d.next_at <= now), key=lambda d: d.next_at)[:limit]

    async def done(self, delivery_id: str) -> None:
        self._deliveries.pop(delivery_id, None)

    async def retry(self, delivery_id: str, attempts: int, next_at: float) -> None:
        if delivery_id in self._deliveries:
            self._deliveries[delivery_id] = replace(self._deliveries[delivery_id], attempts=attempts, next_at=next_at)


class Base(DeclarativeBase):
    pass


class PushConfigRow(Base):
    __tablename__ = "a2a_push_configs"

    agent: Mapped[str] = mapped_column(String(128), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    url: Mapped[str] = mapped_column(String(2048))
    token: Mapped[str | None] = mapped_column(Text, nullable=True)
    scheme: Mapped[str | None] = mapped_column(String(64), nullable=True)
    credentials: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[float] = mapped_column(Float)


class PushDeliveryRow(Base):
    __tablename__ = "a2a_push_deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent: Mapped[str] = mapped_column(String(128))
    task_id: Mapped[str] = mapped_column(String(128))
    config_id: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_a2a_push_deliveries_next_at", "next_at"),
                      Index("ix_a2a_push_deliveries_config", "agent", "task_id", "config_id"))


_C = cast(Table, PushConfigRow.__table__)
_D = cast(Table, PushDeliveryRow.__table__)


class SqlPushStore(PushStore):
    """On the node's database (the tables come with migration 0006)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def put_config(self, stored: StoredConfig) -> None:
        c = stored.config
        async with self.engine.begin() as conn:
            await conn.execute(delete(_C).where(_C.c.agent == stored.agent, _C.c.task_id == c.task_id,
                                                _C.c.id == c.id))
            await conn.execute(insert(_C).values(agent=stored.agent, task_id=c.task_id, id=c.id, owner=stored.owner,
                                                 url=c.url, token=c.token, scheme=c.scheme,
                                                 credentials=c.credentials, created=time.time()))

    async def configs(self, agent: str, task_id: str) -> list[StoredConfig]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_C).where(_C.c.agent == agent, _C.c.task_id == task_id)
                                       .order_by(_C.c.created))).all()
        return [StoredConfig(r.agent, r.owner, PushConfig(r.id, r.task_id, r.url, r.token, r.scheme, r.credentials))
                for r in rows]

    async def delete_config(self, agent: str, task_id: str, config_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(_C).where(_C.c.agent == agent, _C.c.task_id == task_id, _C.c.id == config_id))
            await conn.execute(delete(_D).where(_D.c.agent == agent, _D.c.task_id == task_id,
                                                _D.c.config_id == config_id))

    async def purge(self, created_before: float) -> int:
        async with self.engine.begin() as conn:
            old = (await conn.execute(select(_C.c.agent, _C.c.task_id, _C.c.id)
                                      .where(_C.c.created < created_before))).all()
            for row in old:
                await conn.execute(delete(_D).where(_D.c.agent == row.agent, _D.c.task_id == row.task_id,
                                                    _D.c.config_id == row.id))
            await conn.execute(delete(_C).where(_C.c.created < created_before))
        return len(old)

    async def configured_tasks(self) -> set[tuple[str, str]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_C.c.agent, _C.c.task_id).distinct())).all()
        return {(r.agent, r.task_id) for r in rows}

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        async with self.engine.begin() as conn:
            await conn.execute(insert(_D), [{"id": d.id, "agent": d.agent, "task_id": d.task_id,
                                             "config_id": d.config_id, "body": d.body.decode(),
                                             "attempts": d.attempts, "next_at": d.next_at} for d in deliveries])

    async def pending(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(_D))).scalar_one())

    async def due(self, now: float, limit: int) -> list[Delivery]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(_D).where(_D.c.next_at <= now).order_by(_D.c.next_at)
                                       .limit(limit))).all()
        return [Delivery(r.id, r.agent, r.task_id, r.config_id, r.body.encode(), r.attempts, r.next_at) for r in rows]

    async def done(self, delivery_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(_D).where(_D.c.id == delivery_id))

    async def retry(self, delivery_id: str, attempts: int, next_at: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(_D).where(_D.c.id == delivery_id).values(attempts=attempts, next_at=next_at))
