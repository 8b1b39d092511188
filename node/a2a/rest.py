"""The HTTP+JSON binding of A2A on aiohttp: the proto's REST paths under each agent's interface URL.

``/agents/{name}/rest/message:send``, ``.../tasks/{id}``, ``.../tasks/{id}/pushNotificationConfigs`` and so on
(:mod:`guildnet.protocols.a2a.rest` reads the path). Results are the ProtoJSON objects themselves; errors are
AIP-193 bodies with the spec's HTTP status (§11.6); streams are SSE whose ``data:`` lines are StreamResponse
objects. Authentication, the version check and the task engine are those of the JSON-RPC binding.
"""

from __future__ import annotations

import logging

from aiohttp import web

from guildnet.protocols import a2a
from guildnet.protocols.a2a import A2AError
from guildnet.protocols.a2a import rest as wire

from ..callers import Authenticator
from .jsonrpc import admit, sse
from .operations import EXTENSIONS_HEADER, AgentEndpoint

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "application/a2a+json")
CONTENT_TYPE = "application/json"


def _error(exc: A2AError, *, status: int | None = None) -> web.Response:
    return web.Response(body=wire.body(exc.to_status_json()), status=status or exc.http_status,
                        content_type=CONTENT_TYPE)


async def handle(request: web.Request, endpoint: AgentEndpoint, path: str, *, body_timeout: float,
                 authenticator: Authenticator) -> web.StreamResponse:
    """Answer one HTTP+JSON request; ``path`` is what follows the agent's interface URL."""
    admitted = await admit(request, body_timeout, authenticator, lambda _, error: wire.body(error.to_status_json()))
    if isinstance(admitted, web.Response):
        return admitted
    body, caller = admitted
    try:
        if body and request.headers.get("Content-Type") is not None and request.content_type not in _JSON_TYPES:
            raise A2AError(a2a.CONTENT_TYPE_NOT_SUPPORTED,
                           f"Content-Type {request.content_type!r} is not supported; use application/json")
        call = wire.route(request.method, path, request.query, body)
        a2a.check_version(request.headers.get(a2a.VERSION_HEADER) or request.query.get(a2a.VERSION_HEADER))
        endpoint.check_extensions(request.headers.get(EXTENSIONS_HEADER))
        if call.streaming:
            events = await endpoint.stream(call.method, call.params, caller)
            return await sse(request, events, wire.stream_event, wire.stream_error)
        result = await endpoint.call(call.method, call.params, caller)
    except wire.NotRouted as exc:
        reason = A2AError(a2a.METHOD_NOT_FOUND if exc.status == 404 else a2a.UNSUPPORTED_OPERATION, exc.message)
        return _error(reason, status=exc.status)
    except A2AError as exc:
        return _error(exc)
    except Exception:
        log.exception("A2A %s %s failed", request.method, path)
        return _error(A2AError(a2a.INTERNAL_ERROR))
    return web.Response(body=wire.body(result), content_type=CONTENT_TYPE)
