"""Inbound calls become process data: every skill call a transport serves is recorded, PII-scrubbed.

A :class:`RecordedAgent` wraps an agent for one transport (MCP, A2A); the transports call it like the agent
itself. The record is written after the call, with its outcome, latency, trace id and, for model-backed
agents, which model answered and why it escalated (``ctx.annotations["slm"]``, which only the node writes).
Recording never changes a call's result: a failure to write is logged, not raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from guildnet.protocols.agentfacts import Skill

from ..agent import Agent, InvalidInput, TaskContext
from ..tracing import new_traceparent, trace_id
from .process_log import CallRecord, Outcome, ProcessLog, Transport

log = logging.getLogger(__name__)


class RecordedAgent(Agent):
    def __init__(self, inner: Agent, process_log: ProcessLog, transport: Transport) -> None:
        super().__init__(inner.name, description=inner.description, model=inner.model)
        self.inner = inner
        self.process_log = process_log
        self.transport: Transport = transport

    @property
    def skills(self) -> Sequence[Skill]:
        return self.inner.skills

    async def run(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return await self.inner.run(skill_id, arguments, ctx)

    async def call(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        if trace_id(ctx.traceparent) is None:  # the node starts the trace: model calls and delegations join it
            ctx.traceparent = new_traceparent()
        started = time.perf_counter()
        outcome: Outcome = "error"
        output: dict[str, Any] | None = None
        error: str | None = None
        try:
            output = await self.inner.call(skill_id, arguments, ctx)
            outcome = "ok"
            return output
        except InvalidInput as exc:
            outcome, error = "rejected", str(exc)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            await self._record(skill_id, arguments, ctx, outcome, output, error, started)

    async def _record(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext, outcome: Outcome,
                      output: dict[str, Any] | None, error: str | None, started: float) -> None:
        slm = ctx.annotations.get("slm") or {}
        escalations = slm.get("escalations") or []
        record = CallRecord(
            direction="in", transport=self.transport, skill=skill_id, agent=self.inner.name, outcome=outcome,
            model=slm.get("model") or (self.inner.model.family if self.inner.model else None),
            input=arguments, output=output, latency_ms=(time.perf_counter() - started) * 1000,
            escalated=bool(escalations), escalation_reason="; ".join(map(str, escalations)) or None,
            error=error, trace_id=trace_id(ctx.traceparent))
        try:
            await self.process_log.record(record)
        except Exception:
            log.exception("could not record a %s call of %s.%s", self.transport, self.inner.name, skill_id)
