"""Prometheus metrics of one node, served at ``/metrics``.

Each :class:`~guildnet.node.node.Node` owns a private :class:`prometheus_client.CollectorRegistry`, so
several nodes in one process (tests, the three-organisation demo) keep separate counts. Series:

* ``guildnet_http_requests_total{route,method,status}`` and ``guildnet_http_request_duration_seconds``: the
  same names as the registry's, labelled by route template (``/agents/{name}/a2a``), never by raw path;
* ``guildnet_node_delegations_total{outcome}`` (``success``/``failed``) and
  ``guildnet_node_delegation_attempts_total{outcome}`` (one per peer tried: success, failure, timeout, ...);
* ``guildnet_node_slm_escalations_total{reason}``: a model tier whose answer was not accepted;
* ``guildnet_node_a2a_tasks_total{agent,state}``: A2A tasks reaching a settled state (completed, failed,
  canceled, rejected, input_required, auth_required);
* ``guildnet_node_mcp_tool_calls_total{agent,skill,outcome}``: MCP ``tools/call`` runs (ok, rejected, error).

The node counts without any hook in the A2A or MCP servers: every call already passes through its process
log (:class:`MeteredProcessLog`) and every settled A2A task through its task store (:class:`MeteredTaskStore`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from guildnet.protocols import a2a
from guildnet.protocols.a2a import TaskRecord

from .a2a.store import TaskPage, TaskStore
from .flywheel.process_log import CallRecord, ProcessLog
from .pii import Scrubber

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twin of every series: Prometheus does not need them
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ESCALATION_REASONS = {"disagreement": "disagreement", "low logprob": "low_logprob",
                      "invalid output": "invalid_output", "timeout": "timeout", "connection": "connection",
                      "http": "http", "response": "response"}
"""How :class:`~guildnet.node.slm.agent.SLMAgent` words a rejection (the text before ':'), as a label value."""
SETTLED_STATES = a2a.TERMINAL_STATES | a2a.INTERRUPTED_STATES
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_template(request: web.Request) -> str:
    """The matched route's template, or ``unmatched`` (404/405), so raw paths never become label values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


_REFUSALS = (("key history", "key-history"), ("key in force", "key-history"), ("endorsement", "endorsement"),
             ("rolled back", "rollback"), ("differ", "facts-mismatch"), ("does not verify", "signature"),
             ("not in the log", "not-in-log"), ("not AgentFacts", "malformed"))


def escalation_reason(text: str | None) -> str:
    return ESCALATION_REASONS.get((text or "").split(":", 1)[0].strip(), "other")


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("guildnet_http_requests", "HTTP requests answered, by route template, method "
                                "and status", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("guildnet_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.delegations = Counter("guildnet_node_delegations", "Tasks delegated to peers, by outcome "
                                   "(success, failed)", ["outcome"], registry=self.registry)
        self.delegation_attempts = Counter("guildnet_node_delegation_attempts", "Peers called while delegating, "
                                           "by outcome", ["outcome"], registry=self.registry)
        self.escalations = Counter("guildnet_node_slm_escalations", "Model tiers whose answer was not accepted, "
                                   "by reason", ["reason"], registry=self.registry)
        self.a2a_tasks = Counter("guildnet_node_a2a_tasks", "A2A tasks reaching a settled state",
                                 ["agent", "state"], registry=self.registry)
        self.mcp_tool_calls = Counter("guildnet_node_mcp_tool_calls", "MCP tool calls, by agent, skill and "
                                      "outcome", ["agent", "skill", "outcome"], registry=self.registry)
        self.records_refused = Counter("guildnet_node_registry_records_refused", "Registry records dropped because "
                                       "they did not verify (signature, key history, endorsement, rollback)",
                                       ["reason"], registry=self.registry)
        self.registry_log_consistent = Gauge("guildnet_node_registry_log_consistent", "1 while every head of the "
                                             "registry's log this node saw extends the one before; 0 once a fork or "
                                             "rollback was seen (delegation through it stops)", registry=self.registry)
        self.registry_log_size = Gauge("guildnet_node_registry_log_size", "Size of the last verified head of the "
                                       "registry's log", registry=self.registry)
        self.process_records_dropped = Counter("guildnet_node_process_records_dropped", "Calls not kept as process "
                                               "data: the scrubber's queue was full, or still held them at shutdown",
                                               registry=self.registry)
        self.watch_failures = Counter("guildnet_node_registry_watch_failures", "Times the registry's change stream "
                                      "broke (the node resumes it where it was), by error type", ["error"],
                                      registry=self.registry)
        self.schema_mismatches = Counter("guildnet_node_delegation_schema_mismatches", "Peers that declare another "
                                         "output schema for a skill than the one this node pinned (their results "
                                         "are checked against the pin), by skill", ["skill"], registry=self.registry)
        self._last_escalation: OrderedDict[str, tuple[str | None, str]] = OrderedDict()

    def middleware(self) -> Middleware:
        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                labels = (route_template(request), request.method, str(status))
                self.requests.labels(*labels).inc()
                self.latency.labels(*labels).observe(time.perf_counter() - started)

        return observe

    def response(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def delegated(self, outcome: str, attempt_outcomes: Iterable[str]) -> None:
        self.delegations.labels(outcome).inc()
        for attempt in attempt_outcomes:
            self.delegation_attempts.labels(attempt).inc()

    def record_refused(self, _agent: str, reason: str) -> None:
        """Count a refused registry record under the kind of failure (not the text: it names the agent)."""
        kind = next((label for needle, label in _REFUSALS if needle in reason), "other")
        self.records_refused.labels(kind).inc()

    def watch_failed(self, error: BaseException) -> None:
        self.watch_failures.labels(type(error).__name__).inc()

    def schema_mismatch(self, skill: str, _agent: str) -> None:
        self.schema_mismatches.labels(skill).inc()

    def task_settled(self, agent: str, state: str) -> None:
        self.a2a_tasks.labels(agent, state.removeprefix("TASK_STATE_").lower()).inc()

    def call_recorded(self, record: CallRecord) -> None:
        if record.direction == "in" and record.transport == "mcp":
            self.mcp_tool_calls.labels(record.agent, record.skill, record.outcome).inc()
        elif record.direction == "model" and record.escalated:
            # every sample of one tier is recorded with the same trace, model and reason: count the tier once
            tier = (record.model, escalation_reason(record.escalation_reason))
            trace = record.trace_id or ""
            if self._last_escalation.get(trace) != tier:
                self.escalations.labels(tier[1]).inc()
            self._last_escalation[trace] = tier
            self._last_escalation.move_to_end(trace)
            if len(self._last_escalation) > 1024:
                self._last_escalation.popitem(last=False)


class MeteredProcessLog(ProcessLog):
    """The node's process log, counting each call it records (before the write, so a failed write still counts)."""

    def __init__(self, engine: AsyncEngine, scrubber: Scrubber, metrics: NodeMetrics, *,
                 retention_days: float | None = None, pending: int = 0) -> None:
        super().__init__(engine, scrubber, retention_days=retention_days, pending=pending)
        self.metrics = metrics

    async def record_many(self, records: Iterable[CallRecord]) -> None:
        batch = list(records)
        for record in batch:
            self.metrics.call_recorded(record)
        await super().record_many(batch)

    def _drop(self, count: int, why: str) -> None:
        super()._drop(count, why)
        self.metrics.process_records_dropped.inc(count)


class MeteredTaskStore(TaskStore):
    """A task store that counts settled A2A tasks: the A2A server persists every settled state before it
    tells anyone, so each store write of a settled task is exactly one transition to that state."""

    def __init__(self, inner: TaskStore, metrics: NodeMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def open(self) -> int:
        return await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def put(self, record: TaskRecord, *, new: bool) -> None:
        await self.inner.put(record, new=new)
        if record.state in SETTLED_STATES:
            self.metrics.task_settled(record.agent, record.state)

    async def get(self, agent: str, task_id: str) -> TaskRecord | None:
        return await self.inner.get(agent, task_id)

    async def list(self, agent: str, query: a2a.ListQuery, *, owner: str | None) -> TaskPage:
        return await self.inner.list(agent, query, owner=owner)

    async def purge(self, updated_before: float) -> int:
        return await self.inner.purge(updated_before)
