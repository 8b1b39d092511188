"""Receipts are never lost quietly: each countersigned receipt is written here before it is sent, and stays
until the registry files it or refuses it for good.

A delegation ends before the registry answers (feedback never delays the caller), so what the registry says
is kept as the receipt's state:

* ``filed``: in the registry's log (the row is deleted: the log holds it now);
* ``pending``: the registry could not take it yet (unreachable, overloaded, or the calling agent is not
  registered there because its node never ran): the node files it again from its audit loop;
* ``refused``: the registry refused it for good (the reason and what to do are kept).

Without a database (a delegator built in Python alone) the states are kept in memory only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from sqlalchemy import Float, Integer, String, Table, Text, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient, RegistryError

log = logging.getLogger(__name__)
State = Literal["filed", "pending", "refused"]
RETRY_BATCH = 100


class Base(DeclarativeBase):
    pass


class OutboxRow(Base):
    __tablename__ = "receipt_outbox"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    receipt: Mapped[str] = mapped_column(Text)
    caller: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    tries: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


_T = cast(Table, OutboxRow.__table__)


@dataclass(frozen=True, slots=True)
class ReceiptState:
    """What became of one receipt: its state, the registry's reason, and what to do about it."""

    state: State
    reason: str | None = None
    hint: str | None = None

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("state", self.state), ("reason", self.reason), ("hint", self.hint)) if v}

    def describe(self) -> str:
        if self.state == "filed":
            return "receipt countersigned and filed in the registry's log"
        text = ("receipt kept, not yet filed (your node files it when the registry takes it)"
                if self.state == "pending" else "receipt refused by the registry")
        return text + (f": {self.reason}" if self.reason else "") + (f"; {self.hint}" if self.hint else "")


def receipt_id(receipt: str) -> str:
    return hashlib.sha256(receipt.encode()).hexdigest()


def judge(exc: Exception) -> ReceiptState:
    """The state a failed submission leaves a receipt in: worth retrying, or refused for good."""
    if isinstance(exc, RegistryError):
        if exc.status == 409:  # counted before: the log has it
            return ReceiptState("filed")
        if "caller" in exc.detail and "not registered" in exc.detail:
            return ReceiptState("pending", exc.detail, "the calling agent is not registered in this registry: "
                                "run your node (guildnet node run CONFIG) once; it files kept receipts itself")
        if exc.status >= 500 or exc.status == 429:
            return ReceiptState("pending", f"{exc.status} {exc.title}: {exc.detail}",
                                "the registry is busy or failing; your node files the receipt again later")
        return ReceiptState("refused", exc.detail or exc.title, _refusal_hint(exc.detail))
    return ReceiptState("pending", f"{type(exc).__name__}: {exc}",
                        "the registry did not answer; your node (guildnet node run CONFIG) files the receipt when "
                        "it does")


def _refusal_hint(detail: str) -> str | None:
    if "same organisation" in detail:
        return "delegate to another organisation's agent: an organisation cannot rate itself"
    if "revoked" in detail:
        return "a revoked agent's work is not counted"
    if "trust" in detail or "pre-trusted" in detail:
        return ("the registry admits receipts from organisations with trust (docs/reputation.md); the call itself "
                "succeeded")
    return None


class ReceiptOutbox:
    """Keeps receipts (in the node's database, when it has one) and files them in the registry."""

    def __init__(self, registry: RegistryClient, engine: AsyncEngine | None = None) -> None:
        self.registry = registry
        self.engine = engine

    async def keep(self, receipt: str, caller: str) -> str:
        """Write ``receipt`` down as pending (before anything is sent); returns its id."""
        rid = receipt_id(receipt)
        if self.engine is not None:
            now = time.time()
            async with self.engine.begin() as conn:
                if await conn.scalar(select(_T.c.id).where(_T.c.id == rid)) is None:
                    await conn.execute(insert(_T), {"id": rid, "receipt": receipt, "caller": caller,
                                                    "state": "pending", "reason": None, "tries": 0,
                                                    "created_at": now, "updated_at": now})
        return rid

    async def file(self, receipt: str, key: SigningKey) -> ReceiptState:
        """Send ``receipt`` (kept before) to the registry, signed by the caller's ``key``; record the outcome."""
        try:
            await self.registry.submit_receipt(receipt, key)
            state = ReceiptState("filed")
        except Exception as exc:  # refused or unreachable: judged, recorded, never raised
            state = judge(exc)
        await self._record(receipt_id(receipt), state)
        return state

    async def _record(self, rid: str, state: ReceiptState) -> None:
        if self.engine is None:
            return
        async with self.engine.begin() as conn:
            if state.state == "filed":
                await conn.execute(delete(_T).where(_T.c.id == rid))
            else:
                await conn.execute(update(_T).where(_T.c.id == rid).values(
                    state=state.state, reason=state.reason, tries=_T.c.tries + 1, updated_at=time.time()))

    async def pending(self) -> list[tuple[str, str]]:
        """``(receipt, caller)`` of the receipts still to file, oldest first."""
        if self.engine is None:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(_T.c.receipt, _T.c.caller).where(_T.c.state == "pending")
                                      .order_by(_T.c.created_at).limit(RETRY_BATCH))
            return [(row.receipt, row.caller) for row in rows]

    async def retry(self, keys: Mapping[str, SigningKey]) -> dict[State, int]:
        """File the pending receipts of the callers in ``keys`` (agent id -> its key in force) again; stops at the
        first one the registry cannot take yet (it would not take the rest either)."""
        counts: dict[State, int] = {"filed": 0, "pending": 0, "refused": 0}
        for receipt, caller in await self.pending():
            key = keys.get(caller)
            if key is None:
                continue  # countersigned by an agent this node no longer serves
            state = await self.file(receipt, key)
            counts[state.state] += 1
            if state.state == "pending":
                break
        if counts["filed"] or counts["refused"]:
            log.info("kept receipts: %d filed, %d refused by the registry", counts["filed"], counts["refused"])
        return counts
