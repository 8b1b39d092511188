"""The SDK's OpenTelemetry span per MCP request, opened only when a tracer provider is there to record it.

``mcp`` puts an ``OpenTelemetryMiddleware`` first on every ``Server``: per request it reads a W3C trace context out
of ``_meta`` through the global propagator and opens a span around the rest of the chain. Without an OpenTelemetry
SDK tracer provider (the node's default: the node keeps ``traceparent`` itself, :mod:`guildnet.node.tracing`) that
span is a non-recording one that no exporter ever sees, yet it cost about 30 us of the ~100 us the SDK's request
pipeline takes per ``tools/call`` (in-process, measured in issue 14's work).

:func:`only_when_collected` wraps that middleware so the span is opened exactly when the API has a real provider,
asked per request, so installing one at any time (``set_tracer_provider``, or ``OTEL_PYTHON_TRACER_PROVIDER``)
brings the spans back at once. What goes with the skipped span: while a handler runs without a provider, the
current OpenTelemetry span is the ambient one rather than a non-recording copy of the caller's; agents read the
caller's trace from ``TaskContext.traceparent``, which is unchanged.
"""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from opentelemetry import trace


def collected() -> bool:
    """Whether spans go anywhere: a tracer provider other than the API's placeholder is installed."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


class _WhenCollected:
    """One of the server's OpenTelemetry middlewares, run only while :func:`collected`."""

    def __init__(self, middleware: OpenTelemetryMiddleware) -> None:
        self.middleware = middleware

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if collected():
            return await self.middleware(ctx, call_next)
        return await call_next(ctx)


def only_when_collected(server: Server[Any]) -> None:
    """Wrap ``server``'s OpenTelemetry middleware in place (idempotent: a wrapped one is left as it is)."""
    server.middleware[:] = [_WhenCollected(entry) if isinstance(entry, OpenTelemetryMiddleware) else entry
                            for entry in server.middleware]
