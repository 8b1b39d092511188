"""Serve an ASGI 3 HTTP application from an aiohttp route.

The MCP SDK's Streamable HTTP endpoint is ASGI, the node is aiohttp. ``aiohttp-asgi`` 0.7.1 hangs on
it because its ``receive()`` never reports ``http.disconnect`` (the SDK's disconnect watcher then spins),
so this bridge does the small part we need and does it the way uvicorn does:

* the request body is streamed into ``http.request`` messages from ``request.content``. aiohttp's
  ``client_max_size`` (1 MiB) applies only to ``request.read()``/``post()``, so it does not cap MCP
  bodies; the ASGI application enforces its own limit (the SDK answers 413 above 4 MiB by default);
* once the body is consumed, ``receive()`` blocks until the client is gone and then returns
  ``http.disconnect``, which is what makes the SDK cancel the tool handler of a client that left;
* a response sent in one body message becomes one ``web.Response``; a streamed one (SSE) becomes a
  prepared ``web.StreamResponse`` that is written message by message, so events reach the client as
  they are produced;
* a write to a closed connection marks the exchange disconnected and is dropped (as uvicorn does),
  instead of raising into the application;
* what the node put on the aiohttp request under string keys (the authenticated caller) is the ASGI scope's
  ``state``, where a Starlette request (``request.state``) finds it.

How a disconnect is noticed: aiohttp has no public per-request "connection lost" callback. Its one
event-driven signal is handler cancellation (``AppRunner(app, handler_cancellation=True)``): the
handler task, and with it the ASGI application, is cancelled as soon as the peer goes away. Without it
(aiohttp's default) the bridge checks ``request.transport`` every ``poll_interval`` seconds while the
application waits in ``receive()``; a failed write is noticed at once either way. Both paths are
exercised by ``tests/test_mcp_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from guildnet.protocols import bounded_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_POLL_INTERVAL = 0.25
"""Seconds between transport checks while an application waits for a disconnect."""
DEFAULT_BODY_TIMEOUT = 30.0
"""Seconds the whole request body may take to arrive; a slower client is answered 408 (as uvicorn has no such
limit either, a slow-body client would otherwise hold the application for as long as it likes)."""


def _scope(request: web.Request) -> Scope:
    transport = request.transport
    client = transport.get_extra_info("peername") if transport is not None else None
    server = transport.get_extra_info("sockname") if transport is not None else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.rel_url.raw_path.encode("latin-1"),
        "query_string": request.rel_url.raw_query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": tuple(client[:2]) if client else None,
        "server": tuple(server[:2]) if server else None,
        "state": {name: value for name, value in request.items() if isinstance(name, str)},
    }


class _Exchange:
    """One request/response pair between aiohttp and the ASGI application."""

    def __init__(self, request: web.Request, poll_interval: float, body_timeout: float,
                 body: bytes | None = None) -> None:
        self.request = request
        self.body = body
        self.poll_interval = poll_interval
        self.body_deadline = asyncio.get_running_loop().time() + body_timeout
        self.body_timed_out = False
        self.body_done = False
        self.disconnected = asyncio.Event()
        self.status = 500
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.started = False
        self.response: web.StreamResponse | None = None

    def _peer_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def receive(self) -> Message:
        if not self.body_done and self.body is not None:  # read (and checked) before the application started
            self.body_done = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self.body_done:
            try:
                async with asyncio.timeout_at(self.body_deadline):
                    chunk = await self.request.content.readany()
            except (ConnectionResetError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.body_timed_out = isinstance(exc, TimeoutError)
                self.body_done = True
                self.disconnected.set()
                return {"type": "http.disconnect"}
            self.body_done = self.request.content.at_eof()
            return {"type": "http.request", "body": chunk, "more_body": not self.body_done}
        while not self.disconnected.is_set() and not self._peer_gone():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self.disconnected.wait()
        self.disconnected.set()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            for name, value in message.get("headers", ()):
                self.headers.add(name.decode("latin-1"), value.decode("latin-1"))
            self.started = True
            return
        if kind != "http.response.body" or self.disconnected.is_set():
            return
        if not self.started:
            raise RuntimeError("ASGI application sent a body before http.response.start")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        try:
            if self.response is None:
                if not more:  # the whole response in one message: one write, aiohttp sets the length
                    self.headers.popall("Content-Length", None)
                    self.response = web.Response(status=self.status, headers=self.headers, body=body)
                    await self.response.prepare(self.request)
                    await self.response.write_eof()
                    return
                self.response = web.StreamResponse(status=self.status, headers=self.headers)
                await self.response.prepare(self.request)
            if body:
                await self.response.write(body)
            if not more:
                await self.response.write_eof()
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError included: the peer left
            self.disconnected.set()

    def result(self) -> web.StreamResponse:
        """What the aiohttp handler returns once the application has finished."""
        if self.response is not None:
            return self.response
        if self.body_timed_out:
            timed_out = web.Response(status=408, text="the request body did not arrive in time")
            timed_out.force_close()  # Connection: close; aiohttp drops the unread rest within its lingering time
            return timed_out
        if self.started:  # headers but no body message: an empty response with that status
            self.headers.popall("Content-Length", None)
            return web.Response(status=self.status, headers=self.headers)
        # Nothing was sent: the peer left first (the write goes nowhere) or the app broke its contract.
        return web.Response(status=500, text="ASGI application returned no response")


Authorize = Callable[[web.Request, bytes], Awaitable[web.StreamResponse | None]]
"""Looks at a request and its whole body before the application does: a response refuses it, None lets it in."""


async def read_body(request: web.Request, *, body_timeout: float, max_body_size: int) -> bytes | web.StreamResponse:
    """The whole body of ``request``, or the answer to a client that sends too much (413) or too slowly (408)."""
    try:
        async with asyncio.timeout(body_timeout):
            body = await bounded_json.read_at_most(request.content, max_body_size + 1)
    except TimeoutError:
        timed_out = web.Response(status=408, text=f"the request body did not arrive within {body_timeout:g} s")
        timed_out.force_close()
        return timed_out
    if len(body) > max_body_size:
        too_large = web.Response(status=413, text=f"request bodies are limited to {max_body_size} bytes")
        too_large.force_close()
        return too_large
    return body


def asgi_handler(app: ASGIApp, *, poll_interval: float = DEFAULT_POLL_INTERVAL,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT, authorize: Authorize | None = None,
                 max_body_size: int = 4 * 1024 * 1024
                 ) -> Callable[[web.Request, bytes | None], Awaitable[web.StreamResponse]]:
    """Return an aiohttp handler that serves ``app`` (ASGI 3, ``http`` scope only) for its route.

    The request body must arrive within ``body_timeout`` seconds of the handler starting, else 408. With
    ``authorize``, the body is read whole first (at most ``max_body_size`` bytes, else 413) and shown to it. The
    handler also takes a body already read (and authorized) as a second argument.
    """
    if poll_interval <= 0 or body_timeout <= 0:
        raise ValueError("poll_interval and body_timeout must be positive")

    async def handle(request: web.Request, body: bytes | None = None) -> web.StreamResponse:
        if body is None and authorize is not None:
            read = await read_body(request, body_timeout=body_timeout, max_body_size=max_body_size)
            if isinstance(read, web.StreamResponse):
                return read
            body = read
            refusal = await authorize(request, body)
            if refusal is not None:
                return refusal
        exchange = _Exchange(request, poll_interval, body_timeout, body)
        await app(_scope(request), exchange.receive, exchange.send)
        return exchange.result()

    return handle
