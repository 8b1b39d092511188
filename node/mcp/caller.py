"""Who is calling an MCP handler: the node authenticates the HTTP request, handlers read the result here.

The node checks a request's caller before the SDK sees it (:func:`guildnet.node.mcp.server.setup_mcp`) and keeps
the verdict on the aiohttp request under :data:`CALLER`; the ASGI bridge copies it into the ASGI scope's
``state``, so a handler finds it on ``ctx.request`` whichever way the request came in (the native fast path hands
handlers the aiohttp request, the SDK transport a Starlette one).
"""

from __future__ import annotations

from typing import Any

CALLER = "guildnet.caller"
"""Key of the authenticated caller's DID (None: anonymous) on the aiohttp request and in the ASGI state."""


def caller_of(ctx: Any) -> str | None:
    """The authenticated caller of the request ``ctx`` handles (None: anonymous, or a transport without HTTP)."""
    request = getattr(ctx, "request", None)
    if request is None:
        return None
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):  # Starlette (the SDK transport, through the bridge)
        state = scope.get("state")
        return state.get(CALLER) if isinstance(state, dict) else None
    getter = getattr(request, "get", None)  # aiohttp (the fast path)
    return getter(CALLER) if callable(getter) else None
