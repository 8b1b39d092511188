"""A man in the middle of a registry, and an attacker's endpoint that counts who reaches it.

:class:`RegistryMitm` forwards every request to a real registry and lets a test rewrite what comes back
(records, search pages, log heads) and inject events into the watch stream: everything a lying registry, or
anyone on a plain-HTTP path to it, can do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

Json = dict[str, Any]


class RegistryMitm:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.record: Callable[[Json], Json] | None = None
        """Rewrites each agent record served (by get and in search pages)."""
        self.head: Callable[[Json], Json] | None = None
        """Rewrites the log head served."""
        self.consistency: Callable[[Json], Json] | None = None
        """Rewrites consistency proofs served."""
        self.events: asyncio.Queue[Json | str] = asyncio.Queue()
        """Forged events, sent to every watcher as if the registry sent them (a string is sent as it is)."""
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    def honest(self) -> None:
        self.record = self.head = self.consistency = None

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[RegistryMitm]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_shutdown.append(self._close_watchers)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            self._session = session
            try:
                yield self
            finally:
                await runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        if request.path == "/v1/watch":
            return await self._watch(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read()) as upstream:
            body, status, content_type = await upstream.read(), upstream.status, upstream.content_type
        if status == 200 and request.method == "GET" and content_type == "application/json":
            body = json.dumps(self._rewrite(request.path, json.loads(body))).encode()
        return web.Response(body=body, status=status, content_type=content_type)

    def _rewrite(self, path: str, doc: Json) -> Json:
        if path == "/v1/agents" and self.record is not None:
            return {**doc, "agents": [self.record(hit) for hit in doc["agents"]]}
        if path.startswith("/v1/agents/") and path.count("/") == 3 and self.record is not None:
            return self.record(doc)
        if path == "/v1/log/head" and self.head is not None:
            return self.head(doc)
        if path == "/v1/log/consistency" and self.consistency is not None:
            return self.consistency(doc)
        return doc

    async def _close_watchers(self, _app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close()

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        async with self._session.ws_connect(self.upstream + request.path_qs) as upstream:
            async def relay() -> None:
                async for message in upstream:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    await ws.send_str(message.data)

            async def inject() -> None:
                while True:
                    event = await self.events.get()
                    await ws.send_str(event if isinstance(event, str) else json.dumps(event))

            async def closed() -> None:
                async for _ in ws:
                    pass

            tasks = [asyncio.create_task(relay()), asyncio.create_task(inject()), asyncio.create_task(closed())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._sockets.discard(ws)
        await ws.close()
        return ws


class AttackerEndpoint:
    """An A2A endpoint of the attacker's: counts every request that reaches it (the tests want zero)."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[AttackerEndpoint]:
        async def count(request: web.Request) -> web.Response:
            self.requests += 1
            return web.json_response({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "gotcha"}})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", count)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield self
        finally:
            await runner.cleanup()
