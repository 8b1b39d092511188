"""Prometheus metrics of one registry app, served at ``/metrics``.

Each app gets its own :class:`prometheus_client.CollectorRegistry` (not the process-global one), so several
registries in one process (tests, replicas in a benchmark) keep separate counts and never collide on names.
Series (see docs/configuration.md for the list with the node's):

* ``guildnet_http_requests_total{route,method,status}`` and ``guildnet_http_request_duration_seconds``:
  every request, labelled by route template (``/v1/agents/{agent_id}``), never by raw path, so an agent id
  cannot blow up the number of series;
* ``guildnet_registry_writes_total{action,outcome}``: signed writes (register, heartbeat, node_heartbeat,
  revoke, rotate, receipt), ``accepted``, ``refused`` (4xx) or ``error`` (5xx); each write of a batch of
  registrations counts alone, a batch refused whole counts once;
* ``guildnet_registry_refusals_total{status}``: every 4xx/5xx answer, on any route, and every refused write of a
  batch of registrations (answered in its own item of a 200);
* ``guildnet_registry_watch_connections`` and ``guildnet_registry_log_size``: gauges set at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

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

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twin of every series: Prometheus does not need them
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WRITE_ROUTES = {
    "/v1/agents": "register",
    "/v1/agents/{agent_id}/heartbeat": "heartbeat",
    "/v1/agents/{agent_id}/revoke": "revoke",
    "/v1/agents/{agent_id}/withdraw": "withdraw",
    "/v1/agents/{agent_id}/rotate": "rotate",
    "/v1/receipts": "receipt",
    "/v1/heartbeats": "node_heartbeat",
    "/v1/registrations": "register",
}
"""POST routes that carry a signed write, and the write's action."""
BATCH_ROUTE = "/v1/registrations"
"""Its answered writes are counted one by one (:meth:`RegistryMetrics.count_write`); a batch refused whole counts
as one refused write."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_template(request: web.Request) -> str:
    """The matched route's template, or ``unmatched`` (404/405), so raw paths never become label values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class RegistryMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("guildnet_http_requests", "HTTP requests answered, by route template, method "
                                "and status", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("guildnet_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.writes = Counter("guildnet_registry_writes", "Signed writes, by action and outcome "
                              "(accepted, refused, error)", ["action", "outcome"], registry=self.registry)
        self.refusals = Counter("guildnet_registry_refusals", "Answers with a 4xx or 5xx status",
                                ["status"], registry=self.registry)
        self.watchers = Gauge("guildnet_registry_watch_connections", "Open /v1/watch streams on this replica",
                              registry=self.registry)
        self.log_size = Gauge("guildnet_registry_log_size", "Leaves in the transparency log (its tree size)",
                              registry=self.registry)

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        route = route_template(request)
        labels = (route, request.method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        action = WRITE_ROUTES.get(route) if request.method == "POST" else None
        if action is not None and not (route == BATCH_ROUTE and status < 400):  # its writes are counted each
            self.count_write(action, status)
        if status >= 400:
            self.refusals.labels(str(status)).inc()

    def count_write(self, action: str, status: int, *, in_batch: bool = False) -> None:
        """One signed write answered with ``status``; a write of a batch (whose request answers 200) also counts
        its refusal among the refusals."""
        self.writes.labels(action, "accepted" if status < 400 else "refused" if status < 500 else "error").inc()
        if in_batch and status >= 400:
            self.refusals.labels(str(status)).inc()

    def middleware(self) -> Middleware:
        """Outermost middleware: it sees the status other middlewares (problem+json) settled on."""
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
                self.observe(request, status, time.perf_counter() - started)

        return observe

    def response(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
