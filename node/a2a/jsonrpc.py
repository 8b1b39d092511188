"""The JSON-RPC binding of A2A on aiohttp: one POST endpoint per agent, SSE for streams.

Version handling: only A2A 1.0 is served. A request without ``A2A-Version`` is a 0.3 request (spec §3.6)
and is refused with VersionNotSupportedError (-32009), whatever its method name, exactly as a2a-sdk 1.3
does on a 1.0-only endpoint; 0.3 method names under ``A2A-Version: 1.0`` are unknown methods (-32601).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from aiohttp import web

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON, A2AError

from ..callers import Authenticator, Unauthenticated
from .tasks import AgentTasks

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "application/a2a+json", "application/json-rpc")
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
                "X-Accel-Buffering": "no"}

Method = Callable[[AgentTasks, a2a.RpcRequest, str | None], Awaitable[Any]]


async def _send_message(tasks: AgentTasks, rpc: a2a.RpcRequest, caller: str | None) -> JSON:
    return await tasks.send(a2a.parse_send_params(rpc.params), caller)


async def _get_task(tasks: AgentTasks, rpc: a2a.RpcRequest, caller: str | None) -> JSON:
    return await tasks.get(a2a.parse_task_query(rpc.params), caller)


async def _list_tasks(tasks: AgentTasks, rpc: a2a.RpcRequest, caller: str | None) -> JSON:
    return await tasks.list(a2a.parse_list_query(rpc.params), caller)


async def _cancel_task(tasks: AgentTasks, rpc: a2a.RpcRequest, caller: str | None) -> JSON:
    return await tasks.cancel(a2a.parse_task_query(rpc.params), caller)


async def _extended_card(tasks: AgentTasks, rpc: a2a.RpcRequest, caller: str | None) -> JSON:
    raise A2AError(a2a.UNSUPPORTED_OPERATION, "This agent declares no extended agent card")


async def _push_config(tasks: AgentTasks, rpc: a2a.RpcRequest, caller: str | None) -> JSON:
    raise A2AError(a2a.PUSH_NOT_SUPPORTED)


METHODS: dict[str, Method] = {
    "SendMessage": _send_message,
    "GetTask": _get_task,
    "ListTasks": _list_tasks,
    "CancelTask": _cancel_task,
    "GetExtendedAgentCard": _extended_card,
    "CreateTaskPushNotificationConfig": _push_config,
    "GetTaskPushNotificationConfig": _push_config,
    "ListTaskPushNotificationConfigs": _push_config,
    "DeleteTaskPushNotificationConfig": _push_config,
}


async def handle(request: web.Request, tasks: AgentTasks, *, body_timeout: float,
                 authenticator: Authenticator) -> web.StreamResponse:
    """Answer one JSON-RPC request for the agent whose tasks are ``tasks``, on behalf of the caller the request
    proves (401, before anything is read into a task, when it proves none the node accepts)."""
    try:
        async with asyncio.timeout(body_timeout):
            body = await request.read()
    except TimeoutError:
        timed_out = web.Response(status=408, text=f"the request body did not arrive within {body_timeout:g} s")
        timed_out.force_close()  # Connection: close; aiohttp drops the unread rest within its lingering time
        return timed_out
    try:
        caller = await authenticator.caller(authorization=request.headers.get("Authorization"), remote=request.remote,
                                            method=request.method, path=request.path_qs, body=body)
    except Unauthenticated as exc:
        refusal = A2AError(a2a.INVALID_REQUEST, f"Unauthenticated: {exc}")
        return web.Response(body=a2a.error_response(a2a.request_id_of(body), refusal), status=401,
                            content_type="application/json",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    try:
        content_type = request.headers.get("Content-Type")
        if content_type is not None and request.content_type not in _JSON_TYPES:
            raise A2AError(a2a.CONTENT_TYPE_NOT_SUPPORTED,
                           f"Content-Type {request.content_type!r} is not supported; use application/json")
        rpc = a2a.parse_request(body)
    except A2AError as exc:
        return _json(a2a.error_response(a2a.request_id_of(body), exc))
    try:
        a2a.check_version(request.headers.get(a2a.VERSION_HEADER) or request.query.get(a2a.VERSION_HEADER))
        if rpc.method == "SendStreamingMessage":
            events = await tasks.stream(a2a.parse_send_params(rpc.params), caller)
            return await _sse(request, rpc.id, events)
        if rpc.method == "SubscribeToTask":
            events = await tasks.subscribe(a2a.parse_task_query(rpc.params), caller)
            return await _sse(request, rpc.id, events)
        method = METHODS.get(rpc.method)
        if method is None:
            raise A2AError(a2a.METHOD_NOT_FOUND, f"Method not found: {rpc.method}")
        result = await method(tasks, rpc, caller)
    except A2AError as exc:
        return _json(a2a.error_response(rpc.id, exc))
    except Exception:
        log.exception("A2A %s failed", rpc.method)
        return _json(a2a.error_response(rpc.id, A2AError(a2a.INTERNAL_ERROR)))
    return _json(a2a.result_response(rpc.id, result))


async def _sse(request: web.Request, rid: a2a.RequestId, events: AsyncGenerator[JSON, None]) -> web.StreamResponse:
    """Each event as one ``data:`` line holding a JSON-RPC response; an error mid-stream as ``event: error``."""
    response = web.StreamResponse(headers=_SSE_HEADERS)
    try:
        await response.prepare(request)
        try:
            async for event in events:
                await response.write(b"".join((b"data: ", a2a.result_response(rid, event), b"\n\n")))
        except A2AError as exc:
            await response.write(b"".join((b"event: error\ndata: ", a2a.error_response(rid, exc), b"\n\n")))
    finally:
        await events.aclose()  # unsubscribes at once, even when the client went away
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
