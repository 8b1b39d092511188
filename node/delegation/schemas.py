"""The output schema a caller holds each delegated skill to: its own, never the callee's word of the day.

A callee that publishes ``{"type": "object"}`` as its output schema could otherwise return anything and have
it accepted, with a success receipt. The schema a result is checked against is, in order:

1. ``config``: the node operator's own schema for the skill (``[node.pinned_schemas]``);
2. ``own``: the schema of the skill as one of this node's own agents serves it;
3. ``first-seen``: the schema the first verified agent offering the skill declared, pinned in the node's
   database when it was first seen and never replaced by what later agents (or the same agent, later) declare.

An agent whose declared schema differs from the pin is *flagged* (a log line and ``mismatches``), and its
results are still checked against the pin. A schema that :mod:`guildnet.protocols.schema_check` refuses (a
remote ``$ref``, a backtracking-only pattern) is never pinned: nothing can be checked against it, so the agent
is not called.

Validation runs in a worker thread with a time limit, on a reply whose size and nesting the A2A client has
already bounded: a hostile output cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from jsonschema.protocols import Validator
from sqlalchemy import Float, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guildnet.protocols import schema_check
from guildnet.protocols.canonical import content_hash
from guildnet.protocols.records import AgentEntry

log = logging.getLogger(__name__)
Source = Literal["config", "own", "first-seen"]
VALIDATION_SECONDS = 2.0


class Base(DeclarativeBase):
    pass


class SchemaPinRow(Base):
    __tablename__ = "schema_pins"

    skill: Mapped[str] = mapped_column(String(256), primary_key=True)
    schema_json: Mapped[str] = mapped_column("schema", Text)
    digest: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str] = mapped_column(String(256))
    pinned_at: Mapped[float] = mapped_column(Float)


_T = cast(Table, SchemaPinRow.__table__)


class NoUsableSchema(Exception):
    """No schema this node can check the skill's results against (the message says why)."""


@dataclass(frozen=True)
class Pin:
    skill: str
    schema: Mapping[str, Any]
    digest: str
    source: Source
    validator: Validator = field(repr=False, compare=False)

    @classmethod
    def of(cls, skill: str, schema: Mapping[str, Any], source: Source) -> Pin:
        """Raises :class:`~guildnet.protocols.schema_check.UnsafeSchema` for a schema that cannot be applied."""
        return cls(skill, schema, content_hash(schema), source, schema_check.checker(schema))

    async def problem_with(self, output: Any, *, within: float = VALIDATION_SECONDS) -> str | None:
        """Why ``output`` breaks the pinned schema, or None; checked off the event loop, at most ``within`` s."""
        try:
            async with asyncio.timeout(within):
                return await asyncio.to_thread(schema_check.first_error, self.validator, output)
        except TimeoutError:
            return f"the output could not be checked within {within:.1f} s"
        except Exception as exc:  # e.g. RecursionError from a self-referencing schema
            return f"the output could not be checked: {type(exc).__name__}"


@dataclass
class SchemaPins:
    """The pins of one node: configured and own schemas first, then first-seen ones (kept in ``engine``)."""

    engine: AsyncEngine | None = None
    """The node's database, where first-seen pins survive restarts; None keeps them in memory only."""
    configured: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    own: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    on_mismatch: Callable[[str, str], None] | None = None
    """Told ``(skill, agent id)`` the first time an agent declares another schema than the pin."""
    mismatches: dict[tuple[str, str], str] = field(default_factory=dict)
    """(skill, agent id) -> the digest that agent declared, for agents whose schema differs from the pin."""
    _pins: dict[str, Pin] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        for source, schemas in (("own", self.own), ("config", self.configured)):  # config wins over own
            for skill, schema in schemas.items():
                try:
                    self._pins[skill] = Pin.of(skill, schema, cast(Source, source))
                except schema_check.UnsafeSchema as exc:
                    raise ValueError(f"the {source} schema for skill {skill!r} cannot be applied: {exc}") from None

    async def pin_for(self, skill: str, entry: AgentEntry) -> Pin:
        """The pin ``entry``'s results for ``skill`` are checked against (pinning its declared schema if the
        skill has none yet); flags ``entry`` when it declares another. Raises :class:`NoUsableSchema`."""
        declared = entry.facts.skill(skill)
        pin = self._pins.get(skill) or await self._first_seen(skill, entry)
        if declared is not None:
            digest = content_hash(declared.output_schema)
            if digest != pin.digest and self.mismatches.get((skill, entry.id)) != digest:
                self.mismatches[(skill, entry.id)] = digest
                log.warning("%s declares another output schema for %s than the one pinned here (%s): its results "
                            "are checked against the pin", entry.id, skill, pin.source)
                if self.on_mismatch is not None:
                    self.on_mismatch(skill, entry.id)
        return pin

    async def _first_seen(self, skill: str, entry: AgentEntry) -> Pin:
        async with self._lock:
            if skill in self._pins:
                return self._pins[skill]
            stored = await self._load(skill)
            if stored is not None:
                pin = Pin.of(skill, stored, "first-seen")
            else:
                declared = entry.facts.skill(skill)
                if declared is None:
                    raise NoUsableSchema(f"{entry.id} does not declare skill {skill!r}")
                try:
                    pin = Pin.of(skill, declared.output_schema, "first-seen")
                except schema_check.UnsafeSchema as exc:
                    raise NoUsableSchema(f"its output schema cannot be applied: {exc}") from None
                pin = await self._store(pin, entry.id)
            self._pins[skill] = pin
            return pin

    async def _load(self, skill: str) -> Mapping[str, Any] | None:
        if self.engine is None:
            return None
        async with self.engine.connect() as conn:
            text = await conn.scalar(select(_T.c.schema).where(_T.c.skill == skill))
        return None if text is None else cast(Mapping[str, Any], json.loads(text))

    async def _store(self, pin: Pin, agent: str) -> Pin:
        """Keep ``pin``, unless another process of this node pinned the skill first (then that one holds)."""
        if self.engine is None:
            return pin
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(_T), {"skill": pin.skill, "schema": json.dumps(pin.schema),
                                                "digest": pin.digest, "agent": agent, "pinned_at": time.time()})
        except IntegrityError:
            stored = await self._load(pin.skill)
            if stored is not None:
                return Pin.of(pin.skill, stored, "first-seen")
        return pin
