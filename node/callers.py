"""Who calls this node: each A2A and MCP request's caller, proven by a token its agent key signed
(:mod:`guildnet.protocols.callerauth`), or an anonymous caller where the node allows one.

The token's key must be the calling agent's key in force, as the agent's verified key history proves it (looked
up in the registry through the node's verified client, cached for a minute): a key the agent rotated away from,
its first one included, no longer speaks for it, and a revoked agent is refused. An id the registry does not
know has no history: its own key proves it. If the registry cannot be reached, a token by the id's own key is
accepted (the node keeps serving) and one by any other key is refused. Each token is good for one request: its
``jti`` is remembered until it expires.

Anonymous access (``[node] anonymous``): ``"loopback"`` (the default) lets requests from this machine in without
a token (MCP clients on the desktop, local tools, the operator), ``"off"`` refuses every unsigned request,
``"on"`` accepts anyone. Tasks of anonymous callers belong to "anonymous": they are visible to every anonymous
caller, never to a signed one, and a signed caller's tasks are visible to that caller alone.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Literal

from guildnet.protocols.callerauth import CallRefused, verify_call

AnonymousPolicy = Literal["off", "loopback", "on"]
KeyResolver = Callable[[str], Awaitable[str | None]]
"""The key in force of an agent id, None for an id the registry does not know; raises :class:`Unauthenticated`
for a revoked agent, anything else when the history cannot be verified."""
log = logging.getLogger(__name__)
MAX_REMEMBERED = 100_000
KEY_CACHE_SECONDS = 60.0


@functools.lru_cache(maxsize=1024)
def _is_loopback(remote: str) -> bool:
    """Whether a peer address is this machine's (cached: parsing an address costs more than the rest of the check,
    and a node's callers come from few addresses)."""
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Unauthenticated(Exception):
    """The request proves no caller the node accepts; the message says what is missing."""


class Authenticator:
    def __init__(self, base_url: str, *, anonymous: AnonymousPolicy = "loopback", keys: KeyResolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self.anonymous = anonymous
        self.keys = keys
        self.clock = clock
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._key_cache: dict[str, tuple[float, str]] = {}

    def allows_anonymous(self, remote: str | None) -> bool:
        if self.anonymous == "on":
            return True
        if self.anonymous == "off" or not remote:
            return False
        return _is_loopback(remote)

    async def caller(self, *, authorization: str | None, remote: str | None, method: str, path: str,
                     body: bytes, base: str | None = None) -> str | None:
        """The verified caller's agent id, None for an allowed anonymous caller, else :class:`Unauthenticated`.

        The token's audience is ``base`` (default: the node's base URL) followed by ``path``: a binding with an
        address of its own (gRPC's ``host:port``) names that one, as its callers read it from the card."""
        if authorization is None:
            if self.allows_anonymous(remote):
                return None
            raise Unauthenticated("this node serves signed callers only: sign the request with your agent's key "
                                  "(Authorization: Bearer <guildnet-call+jws>, see docs/trust-model.md)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        try:
            call = verify_call(token.strip(), method=method, url=(base or self.base_url) + path, body=body,
                               now=self.clock())
        except CallRefused as exc:
            raise Unauthenticated(str(exc)) from exc
        if call.key != await self._key_in_force(call.agent, own_key=call.key == call.agent):
            raise Unauthenticated(f"the request is signed by {call.key}, which is not the key in force of "
                                  f"{call.agent}")
        self._remember(call.jti, call.expires)
        return call.agent

    async def _key_in_force(self, agent: str, *, own_key: bool) -> str:
        cached = self._key_cache.get(agent)
        now = self.clock()
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        if self.keys is None:
            if own_key:
                return agent
            raise Unauthenticated(f"the request is signed by a rotated key of {agent}, and this node has no registry "
                                  "to verify its key history")
        try:
            key = await self.keys(agent)
        except Unauthenticated:
            raise
        except Exception as exc:
            if own_key:  # the registry is out of reach: the id's own key still proves the id
                log.warning("the key history of %s could not be checked (%s): accepting its own key", agent, exc)
                return agent
            raise Unauthenticated(f"the key history of {agent} could not be verified: {exc}") from exc
        key = agent if key is None else key
        if len(self._key_cache) >= MAX_REMEMBERED:
            self._key_cache.clear()
        self._key_cache[agent] = (now, key)
        return key

    def _remember(self, jti: str, expires: int) -> None:
        now = self.clock()
        while self._seen and (next(iter(self._seen.values())) < now - 60 or len(self._seen) >= MAX_REMEMBERED):
            self._seen.popitem(last=False)
        if jti in self._seen:
            raise Unauthenticated("this token was used before: a token is good for one request")
        self._seen[jti] = expires
