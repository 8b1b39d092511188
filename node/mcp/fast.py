"""The native fast path for stateless 2026-07-28 Streamable HTTP POSTs: aiohttp straight into the SDK's engine.

A 2026-07-28 request is one self-contained POST, so serving it needs none of the SDK transport's session
machinery: this handler does in aiohttp what ``mcp.server._streamable_http_modern.handle_modern_request`` does in
Starlette, and hands the request to the same engine (``serve_one``: middleware, params validation, the handler,
result serialisation and the ``serverInfo`` stamp), with the SDK's own inbound ladder (``classify_inbound_request``:
protocol version, ``_meta`` envelope, ``Mcp-Method``/``Mcp-Name``), ``Mcp-Param-*`` check, DNS-rebinding check and
error-to-HTTP-status table. What it leaves out is the ASGI bridge, Starlette's request and response objects, and the
sibling-task-plus-memory-stream dance per request: the handler runs in the aiohttp task, and its notifications are
written straight to the response.

Behaviour kept from the SDK transport (and checked by the conformance suite on both paths):

* answers are ``application/json`` with the status the error table gives, unless the handler sends a notification
  (progress, a log entry) before it returns: then the response becomes ``text/event-stream`` from that
  notification on, and the result is its last event;
* a client that goes away cancels the handler (aiohttp cancels the handler task when the node runs with
  ``handler_cancellation``; otherwise the transport is checked every ``poll_interval`` seconds while it runs);
* a handler that runs silent for ``ping_interval`` seconds commits to SSE and keeps the stream alive with comments.

2025-era requests (``initialize``, a session id, a handshake-era ``MCP-Protocol-Version``) and
``subscriptions/listen`` (a stream as long as the client stays, served from the SDK's subscription bus) never come
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import mcp_types as types
from aiohttp import web
from mcp.server import Server
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, aclose_shielded, modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
    validate_mcp_param_headers,
    x_mcp_header_map,
)
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from guildnet.protocols import bounded_json

from .direct import DirectCalls

JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform",
               "X-Accel-Buffering": "no"}
DEFAULT_PING_INTERVAL = 15.0


def is_modern(request: web.Request) -> bool:
    """Whether the SDK would serve ``request`` statelessly (a protocol version header outside the handshake era;
    an unknown version too, so the ladder can refuse it in the protocol's shape)."""
    version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
    return version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS


def _error(request_id: types.RequestId | None, code: int, message: str, data: Any = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    body = {"jsonrpc": "2.0", "id": request_id, "error": error}
    return web.Response(body=_dumps(body), status=ERROR_CODE_HTTP_STATUS.get(code, 200), headers=JSON_HEADERS)


def _dumps(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def _event(message: Mapping[str, Any]) -> bytes:
    return b"event: message\r\ndata: " + _dumps(message) + b"\r\n\r\n"


@dataclass
class _Exchange:
    """The SDK's ``DispatchContext`` for one POST: notifications go straight onto this request's response."""

    request: web.Request
    transport: TransportContext
    request_id: types.RequestId
    message_metadata: ServerMessageMetadata
    progress_token: types.ProgressToken | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)  # what the SDK uses of anyio's Event
    can_send_request: bool = field(default=False, init=False)
    stream: web.StreamResponse | None = None
    closed: bool = False
    writing: asyncio.Lock | None = None  # made at the first write: a plain JSON answer never needs one

    async def send_raw_request(self, method: str, params: Mapping[str, Any] | None,
                               opts: CallOptions | None = None) -> dict[str, Any]:
        raise NoBackChannelError(method)  # 2026-07-28 has no server-to-client requests

    async def commit(self) -> web.StreamResponse:
        if self.stream is None:
            self.stream = web.StreamResponse(status=200, headers=SSE_HEADERS)
            await self.stream.prepare(self.request)
        return self.stream

    async def write(self, chunk: bytes) -> None:
        """Write one event (the first one commits the answer to SSE); the handler's notifications and the
        watchdog's pings come from two tasks, so one write finishes before the next starts."""
        if self.writing is None:
            self.writing = asyncio.Lock()
        async with self.writing:
            if self.closed:
                return
            try:
                await (await self.commit()).write(chunk)
            except (ConnectionResetError, RuntimeError):
                self.closed = True  # the client left; the handler is cancelled by whoever notices first

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.write(_event(message))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)


class FastPath:
    """Serves stateless 2026-07-28 POSTs for ``server`` (see the module docstring)."""

    def __init__(self, server: Server[Any], security: TransportSecuritySettings, *,
                 lifespan_state: Callable[[], Any], direct: DirectCalls | None = None, poll_interval: float = 0.25,
                 ping_interval: float = DEFAULT_PING_INTERVAL) -> None:
        """``direct`` takes plain calls of agent tools past the SDK's per-request kernel (:mod:`.direct`); every
        other request goes through the kernel."""
        self.server = server
        self.direct = direct
        self.security = TransportSecurityMiddleware(security)
        self.lifespan_state = lifespan_state
        self.poll_interval = poll_interval
        self.ping_interval = ping_interval
        self._annotated: dict[str, tuple[Any, bool]] = {}

    async def handle(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Answer ``request`` whose whole ``body`` was read (and its caller checked) already."""
        refusal = await self.security.validate_request(cast(Any, request), is_post=request.method == "POST")
        if refusal is not None:
            return web.Response(status=refusal.status_code, body=bytes(refusal.body))
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        has_json, has_sse = check_accept_headers(cast(Any, request))
        if not (has_json and has_sse):
            return web.Response(status=406)
        try:
            decoded = bounded_json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _error(None, types.PARSE_ERROR, "Parse error")
        if isinstance(decoded, dict) and "id" not in decoded:
            return self._notification(request, decoded)
        try:
            message = types.JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            return _error(None, types.INVALID_REQUEST, "Body must be a single JSON-RPC request or notification object")
        duplicated = find_duplicated_routing_header(request.headers.items())
        if duplicated is not None:
            return _error(message.id, types.HEADER_MISMATCH, f"{duplicated} header appears more than once")
        headers = {name.lower(): value for name, value in request.headers.items()}
        verdict = classify_inbound_request(decoded, headers=headers)
        if isinstance(verdict, InboundLadderRejection):
            return _error(message.id, verdict.code, verdict.message, verdict.data)
        rejection = self._param_headers(message, headers)
        if rejection is not None:
            return _error(message.id, rejection.code, rejection.message, rejection.data)
        exchange = _Exchange(request, TransportContext(kind="streamable-http", can_send_request=False,
                                                       headers=cast(Any, request.headers)),
                             message.id, ServerMessageMetadata(request_context=request),
                             progress_token=progress_token_from_params(message.params))
        if self.direct is not None and self.direct.takes(message):
            work = self.direct.call(message, verdict.protocol_version, exchange.progress)
        else:
            connection = Connection.from_envelope(verdict.protocol_version, verdict.client_info,
                                                  verdict.client_capabilities)
            work = self._dispatch(exchange, message, connection)
        return await self._serve(exchange, message, work)

    def _notification(self, request: web.Request, decoded: dict[str, Any]) -> web.Response:
        try:
            types.JSONRPCNotification.model_validate(decoded)
        except ValidationError:
            return _error(None, types.INVALID_REQUEST, "Body must be a single JSON-RPC request or notification object")
        unsupported = unsupported_protocol_version_rejection(request.headers.get(MCP_PROTOCOL_VERSION_HEADER, ""))
        if unsupported is not None:
            return _error(None, unsupported.code, unsupported.message, unsupported.data)
        return web.Response(status=202)  # 2026-07-28 defines no client notifications over HTTP: accepted, dropped

    def _param_headers(self, message: types.JSONRPCRequest, headers: Mapping[str, str]
                       ) -> InboundLadderRejection | None:
        """``Mcp-Param-*`` headers against the called tool's ``x-mcp-header`` schema annotations."""
        lookup = self.server.get_tool_input_schema
        params = message.params or {}
        name, arguments = params.get("name"), params.get("arguments")
        if message.method != "tools/call" or lookup is None or not isinstance(name, str) \
                or not isinstance(arguments, Mapping | None):
            return None
        sent = any(h.startswith("mcp-param-") for h in headers)
        if not (arguments or sent):
            return None
        schema = lookup(name)
        if schema is None:
            return None
        annotated = self._annotated.get(name)
        if annotated is None or annotated[0] is not schema:  # a tool's schema walked once, not per call
            annotated = self._annotated[name] = (schema, bool(x_mcp_header_map(schema)))
        if not (annotated[1] or sent):
            return None  # nothing declared and nothing sent: nothing to check
        return validate_mcp_param_headers(schema, arguments or {}, headers)

    async def _serve(self, exchange: _Exchange, message: types.JSONRPCRequest,
                     work: Coroutine[Any, Any, dict[str, Any]]) -> web.StreamResponse:
        """Run ``work`` (the call's wire result) and answer with it, or with the error it raised."""
        watchdog = _Watchdog(exchange, self.poll_interval, self.ping_interval)
        try:
            result = await work
        except asyncio.CancelledError:
            watchdog.timer.cancel()
            if not watchdog.fired:
                raise  # aiohttp's own cancellation (handler_cancellation, shutdown): not ours to swallow
            cast(asyncio.Task[Any], asyncio.current_task()).uncancel()
            exchange.closed = True
            return exchange.stream or web.Response(status=499)  # the client left: nobody reads it
        except Exception as exc:
            await watchdog.stop()
            error = modern_error_data(exc)
            if exchange.stream is None:
                exchange.closed = True
                return _error(message.id, error.code, error.message, error.data)
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message.id,
                                     "error": error.model_dump(mode="json", by_alias=True, exclude_none=True)}
        else:
            await watchdog.stop()
            reply = {"jsonrpc": "2.0", "id": message.id, "result": result}
        if exchange.stream is None:
            exchange.closed = True  # a task the call started may outlive it: its notifications go nowhere
            return web.Response(body=_dumps(reply), headers=JSON_HEADERS)
        await exchange.write(_event(reply))
        if not exchange.closed:
            exchange.closed = True
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await exchange.stream.write_eof()
        return exchange.stream

    async def _dispatch(self, exchange: _Exchange, message: types.JSONRPCRequest,
                        connection: Connection) -> dict[str, Any]:
        """``serve_one``, but the connection's (usually empty) exit stack is unwound under the SDK's shielded, bounded
        scope only when the call failed or was cancelled: the shield costs more than the rest of the unwinding."""
        runner = ServerRunner(self.server, connection, self.lifespan_state())
        try:
            result = await runner.on_request(cast(Any, exchange), message.method, message.params)
        except BaseException:
            await aclose_shielded(connection)
            raise
        await connection.exit_stack.aclose()
        return result


class _Watchdog:
    """Watches one call that runs in the request's own task, off the event loop's timer heap instead of in a
    second task: cheaper at concurrency 1, where a task per call and ``asyncio.wait`` on it cost two extra loop
    turns and their futures on every round trip.

    Every ``poll_interval`` seconds it checks the client is still there and cancels the request's task when it is
    not (aiohttp cancels it itself when the node runs with ``handler_cancellation``); a call silent for
    ``ping_interval`` seconds gets an SSE comment, written from a task of its own."""

    def __init__(self, exchange: _Exchange, poll_interval: float, ping_interval: float) -> None:
        self.exchange = exchange
        self.task = asyncio.current_task()
        self.loop = asyncio.get_running_loop()
        self.poll_interval = poll_interval
        self.ping_interval = ping_interval
        self.quiet_since = self.loop.time()
        self.fired = False
        self.pings: set[asyncio.Task[None]] = set()
        self.timer = self.loop.call_later(poll_interval, self._check)

    def _check(self) -> None:
        transport = self.exchange.request.transport
        if self.exchange.closed or transport is None or transport.is_closing():
            self.fired = True
            if self.task is not None:
                self.task.cancel()
            return
        if self.loop.time() - self.quiet_since >= self.ping_interval:
            ping = asyncio.ensure_future(self.exchange.write(b": ping\r\n\r\n"))
            self.pings.add(ping)
            ping.add_done_callback(self.pings.discard)
            self.quiet_since = self.loop.time()
        self.timer = self.loop.call_later(self.poll_interval, self._check)

    async def stop(self) -> None:
        """No more checks; a ping being written is finished first, so the reply never overtakes it."""
        self.timer.cancel()
        if self.pings:
            await asyncio.gather(*self.pings, return_exceptions=True)
