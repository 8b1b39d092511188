"""Waiting for a long delegated task without holding a connection: the peer pushes, this node's webhook hears.

A delegation whose deadline is long (:attr:`~guildnet.node.delegation.delegator.Delegator.push_after`) to a peer
whose verified card declares push notifications is sent with ``returnImmediately`` and a push config naming a
webhook of this node, one URL per call (``/delegation/push/{slot}``, the slot a random 128-bit name) and a
secret token. The call then costs the peer no open stream and this node no connection for minutes. When a
notification says the task settled, the task is read once (GetTask: the result and the callee's signed receipt
are checked as for a blocking call).

What the webhook accepts (it is reachable by anyone who can reach the node):

* a POST to a slot this node is waiting on (404 otherwise: a late or unknown delivery is told to stop);
* with the slot's token in ``X-A2A-Notification-Token`` (401 otherwise);
* with an ``A2A-Notification-Signature`` that verifies against the key pinned from the peer's *signed card*, for
  this slot's URL and this body (:func:`~guildnet.protocols.a2a.push.verify_notification`; 401 otherwise), for
  the task the peer started (``tid``);
* a body of at most :data:`MAX_BODY` bytes (413), parsed with a nesting bound.

A repeated event id (the peer retries until it hears 2xx) is acknowledged and ignored. A notification only
wakes the caller: the result is what GetTask returns. If notifications do not come (the peer's push guard refuses
this node's address, the webhook is unreachable from there), the caller polls GetTask, first after
``poll_first`` seconds, then at doubling intervals up to ``poll_max``; if the peer refuses the push config
outright, the call is made again as a blocking one.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from guildnet.protocols import a2a, bounded_json
from guildnet.protocols.a2a import push as wire

log = logging.getLogger(__name__)

PATH: Final = "/delegation/push/{slot}"
MAX_BODY: Final = 1024 * 1024
MAX_WAITING: Final = 10_000
"""Calls waiting for a push at once (more are made as blocking calls)."""
MAX_EVENTS_PER_SLOT: Final = 1_000
"""Event ids remembered per slot (for dropping repeats)."""
_SETTLED: Final = a2a.TERMINAL_STATES | a2a.INTERRUPTED_STATES


@dataclass
class Slot:
    """One delegated call waiting for its peer's notifications."""

    url: str
    token: str
    key: str
    """The peer's key in force, pinned from its signed card: every notification must be signed by it."""
    task_id: str | None = None
    """The peer's task, once SendMessage named it; notifications for another task are refused."""
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    events: set[str] = field(default_factory=set)

    @property
    def config(self) -> dict[str, Any]:
        """The TaskPushNotificationConfig to send with the message."""
        return {"url": self.url, "token": self.token}


class PushInbox:
    """This node's webhook for the tasks it delegates (mounted on the node's app)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._slots: dict[str, Slot] = {}
        self.heard = 0
        """Notifications accepted (verified, and not a repeat)."""
        self.refused = 0
        """Notifications refused (unknown slot, wrong token, bad signature, another task): for the metrics."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self._receive)

    @property
    def waiting(self) -> int:
        return len(self._slots)

    @contextmanager
    def expect(self, key: str) -> Iterator[Slot | None]:
        """A slot for one call, signed for by ``key``; None when :data:`MAX_WAITING` calls already wait."""
        if len(self._slots) >= MAX_WAITING:
            yield None
            return
        name = secrets.token_urlsafe(16)
        slot = self._slots[name] = Slot(f"{self.base_url}{PATH.format(slot=name)}", secrets.token_urlsafe(24), key)
        try:
            yield slot
        finally:
            del self._slots[name]

    async def _receive(self, request: web.Request) -> web.Response:
        slot = self._slots.get(request.match_info["slot"])
        if slot is None:
            return self._refuse(404, "no delegated task waits here")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._refuse(413, "too large")
        body = await bounded_json.read_at_most(request.content, MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return self._refuse(413, "too large")
        if not hmac.compare_digest(request.headers.get(wire.TOKEN_HEADER, ""), slot.token):
            return self._refuse(401, "wrong token")
        try:
            claims = wire.verify_notification(request.headers.get(wire.SIGNATURE_HEADER, ""), expected_did=slot.key,
                                              url=slot.url, body=body)
        except wire.NotificationRefused as exc:
            return self._refuse(401, str(exc))
        if slot.task_id is not None and claims.get("tid") != slot.task_id:
            return self._refuse(401, "a notification for another task")
        event = str(claims.get("jti"))
        if event in slot.events:
            return web.Response(status=204)  # a retry of an event already heard
        if len(slot.events) < MAX_EVENTS_PER_SLOT:
            slot.events.add(event)
        self.heard += 1
        try:
            state = _state(bounded_json.loads(body))
        except (ValueError, UnicodeDecodeError):
            return self._refuse(400, "not JSON")
        if state in _SETTLED:
            slot.settled.set()
        return web.Response(status=204)

    def _refuse(self, status: int, why: str) -> web.Response:
        self.refused += 1
        log.info("refused a push notification: %s", why)
        return web.Response(status=status, text=why)


def _state(event: Any) -> str | None:
    """The task state a StreamResponse carries (a status update, or a whole task), if any."""
    if not isinstance(event, dict):
        return None
    for key in ("statusUpdate", "task"):
        found = event.get(key)
        status = found.get("status") if isinstance(found, dict) else None
        if isinstance(status, dict) and isinstance(status.get("state"), str):
            return str(status["state"])
    return None


async def settled(slot: Slot, read: Callable[[], Any], *, poll_first: float, poll_max: float) -> dict[str, Any]:
    """The task once it settled: read (GetTask) when a notification says so, or at each poll; returns the task."""
    interval = poll_first
    while True:
        try:
            await asyncio.wait_for(slot.settled.wait(), timeout=interval)
        except TimeoutError:
            interval = min(interval * 2, poll_max)
        task = await read()
        status = task.get("status") if isinstance(task, dict) else None
        if isinstance(status, dict) and status.get("state") in _SETTLED:
            return dict(task)
        slot.settled.clear()  # a notification for a state the peer has not stored yet: wait for the next
