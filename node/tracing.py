"""W3C trace context (``traceparent``) for process data: one task keeps one trace id across its inbound
call, its model calls, and its delegations to other organisations (each delegation a new span).

A call that arrives without a ``traceparent`` starts a trace at the node, so everything the node records for
it can be grouped as one task by the flywheel.
"""

from __future__ import annotations

import secrets


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a well-formed ``traceparent``, else ``None``."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def child_traceparent(parent: str) -> str:
    """Same trace, new span: how one task is followed across organisations."""
    if trace_id(parent) is None:
        return new_traceparent()
    version, trace, _span, flags = parent.split("-")
    return f"{version}-{trace}-{secrets.token_hex(8)}-{flags}"
