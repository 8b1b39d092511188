"""What this node verified of each registry's transparency log, kept in the node's own database.

The registry client (:class:`guildnet.registry.client.RegistryClient`) checks every new head against the last
one it verified; kept here, that check survives restarts: a registry cannot show a restarted node an earlier
or different history than the one it saw, and once a fork is seen it is remembered until an operator clears it
(``DELETE FROM registry_heads WHERE registry = ...``, after finding out what happened).
"""

from __future__ import annotations

import time
from typing import cast

from sqlalchemy import BigInteger, Float, String, Table, Text, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guildnet.registry.client import AuditState, LogHead


class Base(DeclarativeBase):
    pass


class RegistryHeadRow(Base):
    __tablename__ = "registry_heads"

    registry_url: Mapped[str] = mapped_column("registry", String(2048), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(256))
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(64))
    checkpoint: Mapped[str] = mapped_column(Text)
    forked: Mapped[str | None] = mapped_column(Text, nullable=True)
    seen_at: Mapped[float] = mapped_column(Float)


_T = cast(Table, RegistryHeadRow.__table__)


class SqlHeadStore:
    """A :class:`~guildnet.registry.client.HeadStore` on the node's database (migrated with the node's tables)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self, registry: str) -> AuditState | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(_T).where(_T.c.registry == registry))).first()
        if row is None:
            return None
        head = LogHead(row.origin, int(row.size), bytes.fromhex(row.root), row.checkpoint)
        return AuditState(row.key, head, row.forked)

    async def save(self, registry: str, state: AuditState) -> None:
        values = {"registry": registry, "key": state.key, "origin": state.head.origin, "size": state.head.size,
                  "root": state.head.root.hex(), "checkpoint": state.head.checkpoint, "forked": state.forked,
                  "seen_at": time.time()}
        async with self.engine.begin() as conn:
            await conn.execute(delete(_T).where(_T.c.registry == registry))
            await conn.execute(insert(_T), values)
