"""W3C trace context (``traceparent``) for process data: one task keeps one trace id across its inbound
call, its model calls, and its delegations to other organisations (each delegation a new span).

A call that arrives without a ``traceparent`` starts a trace at the node, so everything the node records for
it can be grouped as one task by the flywheel. Parsing and formatting are OpenTelemetry's W3C propagator (the
API package, which ``mcp`` already brings): it refuses what the spec refuses (version ``ff``, all-zero ids,
upper-case hex, wrong lengths), so a caller's malformed header starts a fresh trace instead of polluting one.
The API has no id generator (that is in the SDK), so new ids are random bits from :mod:`secrets`.
"""

from __future__ import annotations

import secrets

from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    format_trace_id,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_HEADER = "traceparent"


def _parse(traceparent: str | None) -> SpanContext | None:
    if not traceparent:
        return None
    span = get_current_span(_PROPAGATOR.extract({_HEADER: traceparent})).get_span_context()
    return span if span.is_valid else None


def _format(trace: int, flags: TraceFlags) -> str:
    span = SpanContext(trace_id=trace, span_id=secrets.randbits(64) or 1, is_remote=False, trace_flags=flags)
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, set_span_in_context(NonRecordingSpan(span)))
    return carrier[_HEADER]


def new_traceparent() -> str:
    """A new trace (sampled) with its first span."""
    return _format(secrets.randbits(128) or 1, TraceFlags(TraceFlags.SAMPLED))


def trace_id(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a valid ``traceparent``, else ``None``."""
    span = _parse(traceparent)
    return format_trace_id(span.trace_id) if span is not None else None


def child_traceparent(parent: str) -> str:
    """Same trace, new span: how one task is followed across organisations. An invalid parent starts a trace."""
    span = _parse(parent)
    return _format(span.trace_id, span.trace_flags) if span is not None else new_traceparent()
