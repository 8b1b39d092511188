"""The JSON-RPC binding of A2A on aiohttp: one POST endpoint per agent, SSE for streams.

Version handling: only A2A 1.0 is served. A request without ``A2A-Version`` is a 0.3 request (spec §3.6)
and is refused with VersionNotSupportedError (-32009), whatever its method name, exactly as a2a-sdk 1.3
does on a 1.0-only endpoint; 0.3 method names under ``A2A-Version: 1.0`` are unknown methods (-32601).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

from aiohttp import web

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON, A2AError

from ..callers import Authenticator, Unauthenticated
from .operations import EXTENSIONS_HEADER, STREAMING, AgentEndpoint

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "application/a2a+json", "application/json-rpc")
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
                "X-Accel-Buffering": "no"}

async def read_body(request: web.Request, limit: float) -> bytes | web.Response:
    """The request body, or the 408 to answer when it does not arrive within ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        timed_out = web.Response(status=408, text=f"the request body did not arrive within {limit:g} s")
        timed_out.force_close()  # Connection: close; aiohttp drops the unread rest within its lingering time
        return timed_out


async def admit(request: web.Request, body_timeout: float, authenticator: Authenticator,
                refusal: Callable[[bytes, A2AError], bytes]) -> tuple[bytes, str | None] | web.Response:
    """The body and the caller the request proves (None: an anonymous one the node accepts); else the answer to
    give: 408 for a body too slow, 401 with ``refusal(body, error)`` (the binding's error shape) for no caller."""
    body = await read_body(request, body_timeout)
    if isinstance(body, web.Response):
        return body
    try:
        caller = await authenticator.caller(authorization=request.headers.get("Authorization"),
                                            remote=request.remote, method=request.method, path=request.path_qs,
                                            body=body)
    except Unauthenticated as exc:
        refused = A2AError(a2a.INVALID_REQUEST, f"Unauthenticated: {exc}")
        return web.Response(body=refusal(body, refused), status=401, content_type="application/json",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return body, caller


async def handle(request: web.Request, endpoint: AgentEndpoint, *, body_timeout: float,
                 authenticator: Authenticator) -> web.StreamResponse:
    """Answer one JSON-RPC request for ``endpoint``'s agent, on behalf of the caller the request proves (401,
    before anything is read into a task, when it proves none the node accepts)."""
    admitted = await admit(request, body_timeout, authenticator,
                           lambda body, error: a2a.error_response(a2a.request_id_of(body), error))
    if isinstance(admitted, web.Response):
        return admitted
    body, caller = admitted
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
        endpoint.check_extensions(request.headers.get(EXTENSIONS_HEADER))
        if rpc.method in STREAMING:
            return await sse(request, await endpoint.stream(rpc.method, rpc.params, caller), *_rpc_events(rpc.id))
        result = await endpoint.call(rpc.method, rpc.params, caller)
    except A2AError as exc:
        return _json(a2a.error_response(rpc.id, exc))
    except Exception:
        log.exception("A2A %s failed", rpc.method)
        return _json(a2a.error_response(rpc.id, A2AError(a2a.INTERNAL_ERROR)))
    return _json(a2a.result_response(rpc.id, result))


async def sse(request: web.Request, events: AsyncGenerator[JSON, None], encode: Callable[[JSON], bytes],
              encode_error: Callable[[A2AError], bytes]) -> web.StreamResponse:
    """Write ``events`` as server-sent events, each framed by ``encode`` (an error mid-stream by
    ``encode_error``); the binding decides the framing."""
    response = web.StreamResponse(headers=_SSE_HEADERS)
    try:
        await response.prepare(request)
        try:
            async for event in events:
                await response.write(encode(event))
        except A2AError as exc:
            await response.write(encode_error(exc))
    finally:
        await events.aclose()  # unsubscribes at once, even when the client went away
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _rpc_events(rid: a2a.RequestId) -> tuple[Callable[[JSON], bytes], Callable[[A2AError], bytes]]:
    """JSON-RPC framing: each event a ``data:`` line holding a response; an error as ``event: error``."""
    return (lambda event: b"".join((b"data: ", a2a.result_response(rid, event), b"\n\n")),
            lambda exc: b"".join((b"event: error\ndata: ", a2a.error_response(rid, exc), b"\n\n")))


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
