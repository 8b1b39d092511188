"""How many 2025-era MCP sessions one client address may hold open.

A 2025-11-25 client opens a session with ``initialize`` and the server keeps it (with its memory) until the
client deletes it or it idles out; the SDK caps the total (10,000) but not any one client, so one address could
fill the table and lock every other client out for the idle timeout. This counts each address's sessions from
the ``Mcp-Session-Id`` the server hands out and each later request that uses it, forgets one on DELETE or after
``idle`` seconds without a request (the SDK's own idle timeout), and answers 429 to an ``initialize`` past
``per_address``. An ``initialize`` let through holds a place until its answer is known, so a burst of them in
parallel cannot slip past the count. Stateless 2026-07-28 requests open no session and are never counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

SESSION_HEADER = "mcp-session-id"
DEFAULT_PER_ADDRESS = 64
DEFAULT_IDLE = 300.0
_OPENING = web.RequestKey("guildnet.mcp.opening", bool)


class SessionQuota:
    def __init__(self, *, per_address: int = DEFAULT_PER_ADDRESS, idle: float = DEFAULT_IDLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_address = per_address
        self.idle = idle
        self.clock = clock
        self._sessions: dict[str, dict[str, float]] = {}
        self._opening: dict[str, int] = {}

    def _open(self, address: str) -> dict[str, float]:
        sessions = self._sessions.get(address, {})
        now = self.clock()
        for sid in [s for s, seen in sessions.items() if now - seen > self.idle]:
            del sessions[sid]
        if not sessions:
            self._sessions.pop(address, None)
        return sessions

    def refuse(self, request: web.Request, opens_session: bool) -> web.Response | None:
        """429 when ``request`` would open one session too many for its address; else None."""
        if not opens_session or SESSION_HEADER in request.headers:
            return None
        address = request.remote or ""
        opening = self._opening.get(address, 0)
        if len(self._open(address)) + opening < self.per_address:
            self._opening[address] = opening + 1
            request[_OPENING] = True
            return None
        return web.json_response(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": (
                f"this address holds {self.per_address} open MCP sessions: close one (DELETE), or use the stateless "
                "2026-07-28 protocol, which needs none")}}, status=429, headers={"Retry-After": str(int(self.idle))})

    def settle(self, request: web.Request, response: web.StreamResponse | None) -> None:
        """Count the session a response opened or used; forget one the client deleted (``response`` None: the
        request failed). Call it for every request, answered or not."""
        address = request.remote or ""
        if request.get(_OPENING):
            request[_OPENING] = False
            left = self._opening.get(address, 1) - 1
            if left > 0:
                self._opening[address] = left
            else:
                self._opening.pop(address, None)
        if response is None:
            return
        sid = request.headers.get(SESSION_HEADER) or response.headers.get(SESSION_HEADER)
        if not sid:
            return
        if request.method == "DELETE":
            self._sessions.get(address, {}).pop(sid, None)
        elif response.status < 400:
            self._sessions.setdefault(address, {})[sid] = self.clock()
