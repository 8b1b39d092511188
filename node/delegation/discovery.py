"""A node's local view of the registry: candidates for a skill, kept fresh by the watch stream.

Delegation must not pay a registry round trip per task, and must keep working while the registry is down.
So the index loads the live agents of each skill it is asked about once, then follows ``/v1/watch`` from the
feed position of that load: registrations and updates of agents offering a tracked skill are fetched (and
their signatures checked by the client), revocations drop an agent at once, liveness changes flip it. When
the stream breaks, the client resumes from the last sequence it saw, so a peer revoked while the node was
cut off is dropped as soon as the stream is back, before any further change is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from guildnet.registry.client import AgentEntry, RegistryClient, RegistryError, UntrustworthyRecord

log = logging.getLogger(__name__)


class PeerIndex:
    def __init__(self, client: RegistryClient, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock  # stamps last_seen when the stream says an agent is live again
        self._entries: dict[str, AgentEntry] = {}
        self._skills: set[str] = set()
        self._revoked: set[str] = set()
        self._position = 0
        self._watcher: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def position(self) -> int:
        """The last change-feed sequence applied."""
        return self._position

    async def track(self, skill: str) -> None:
        """Load every live agent offering ``skill`` (once), then keep it fresh from the stream."""
        if skill in self._skills:
            return
        cursor: str | None = None
        first_position: int | None = None
        while True:
            page = await self.client.search(skill=skill, live=True, limit=100, cursor=cursor)
            if first_position is None:
                first_position = page.seq
            for entry in page.agents:
                if entry.id not in self._revoked:
                    self._entries[entry.id] = entry
            if page.next is None:
                break
            cursor = page.next
        self._skills.add(skill)
        if self._watcher is None:
            self._position = first_position or 0
            self._watcher = asyncio.create_task(self._follow(), name="guildnet-peer-index")

    def candidates(self, skill: str, *, exclude_org: str | None = None) -> list[AgentEntry]:
        """Live, unrevoked agents offering ``skill``.

        Liveness is the registry's (heartbeats do not reach the stream; the registry announces an agent
        stale within a second of its TTL running out). While the registry is unreachable the last known
        state stands: the node keeps delegating from its cache.
        """
        return [entry for entry in self._entries.values()
                if entry.live and not entry.revoked and entry.id not in self._revoked
                and entry.facts.skill(skill) is not None
                and (exclude_org is None or entry.facts.organisation.id != exclude_org)]

    def get(self, agent_id: str) -> AgentEntry | None:
        return self._entries.get(agent_id)

    def is_revoked(self, agent_id: str) -> bool:
        return agent_id in self._revoked

    async def wait_for_position(self, seq: int) -> None:
        """Wait until changes up to ``seq`` are applied (for callers that just wrote; bound it with a timeout)."""
        while self._position < seq:
            self._changed.clear()
            await self._changed.wait()

    async def _follow(self) -> None:
        async for change in self.client.watch(self._position):
            try:
                await self._apply(change)
            except (RegistryError, UntrustworthyRecord, OSError) as exc:
                log.warning("could not apply change %s for %s: %s", change.get("seq"), change.get("agent"), exc)
            self._position = int(change["seq"])
            self._changed.set()

    async def _apply(self, change: dict[str, Any]) -> None:
        agent_id = str(change["agent"])
        kind = change["kind"]
        if kind == "revoked":
            self._revoked.add(agent_id)
            self._entries.pop(agent_id, None)
        elif kind in ("registered", "updated"):
            if self._skills.intersection(change.get("skills", ())) or agent_id in self._entries:
                entry = await self.client.get(agent_id)
                if entry.revoked or not self._skills.intersection(s.id for s in entry.facts.skills):
                    self._entries.pop(agent_id, None)
                else:
                    self._entries[agent_id] = entry
        elif kind in ("live", "rotated") and agent_id in self._entries:
            old = self._entries[agent_id]
            if kind == "live":
                live = bool(change.get("live"))
                last_seen = self.clock() if live else old.last_seen
                self._entries[agent_id] = AgentEntry(old.facts, live, last_seen, old.revoked, old.current_key,
                                                     old.version, old.jws)
            else:
                self._entries[agent_id] = AgentEntry(old.facts, old.live, old.last_seen, old.revoked,
                                                     str(change["current_key"]), old.version, old.jws)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
