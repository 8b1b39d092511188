"""A node's local view of the registry: candidates for a skill, kept fresh by the watch stream.

Delegation must not pay a registry round trip per task, and must keep working while the registry is down.
So the index loads the live agents of each skill it is asked about once, then follows ``/v1/watch`` from the
feed position of that load: registrations and updates of agents offering a tracked skill are fetched (and
their signatures checked by the client), revocations drop an agent at once, liveness changes flip it. When
the stream breaks, the client resumes from the last sequence it saw, so a peer revoked while the node was
cut off is dropped as soon as the stream is back, before any further change is applied.

Nothing here takes the registry's word: every record comes through :meth:`RegistryClient.get` or ``search``,
which verify it against the agent's own key history and its organisation's endorsement; a change event is only
a hint to fetch and verify again (a ``rotated`` event's key is never used as such). A record that fails, or that
is older than one this index already verified for the agent (a registry rolling an agent back to a previous
registration), is dropped, logged with the reason, and reported through ``on_refused`` (the node counts it in
``/metrics``). The stream's follower survives any error: it logs it, waits, and resumes from where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from guildnet.registry.client import AgentEntry, RegistryClient, RegistryError, UntrustworthyRecord

log = logging.getLogger(__name__)


class PeerIndex:
    def __init__(self, client: RegistryClient, *, clock: Callable[[], float] = time.time,
                 on_refused: Callable[[str, str], None] | None = None,
                 on_stream_failure: Callable[[BaseException], None] | None = None,
                 reconnect_delay: float = 0.5) -> None:
        self.client = client
        self.clock = clock  # stamps last_seen when the stream says an agent is live again
        self.on_refused = on_refused
        self.on_stream_failure = on_stream_failure
        """Told of each failure of the change stream (then resumed after ``reconnect_delay``)."""
        self.reconnect_delay = reconnect_delay
        self.refused: dict[str, str] = {}
        """The last reason each refused agent was dropped for (also logged and counted)."""
        self._entries: dict[str, AgentEntry] = {}
        self._versions: dict[str, int] = {}
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
            for agent_id, reason in page.refused:
                self._refuse(agent_id, reason)
            for entry in page.agents:
                if entry.id not in self._revoked:
                    self._accept(entry)
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

    def _accept(self, entry: AgentEntry) -> None:
        """Keep a verified record, unless it is older than one already verified (a rollback)."""
        seen = self._versions.get(entry.id, 0)
        if entry.version < seen:
            self._refuse(entry.id, f"the registry served version {entry.version} after version {seen} was "
                                   "verified here (rolled back)")
            return
        self._versions[entry.id] = entry.version
        self._entries[entry.id] = entry

    def _refuse(self, agent_id: str, reason: str) -> None:
        self.refused[agent_id] = reason
        log.warning("registry record of %s refused: %s", agent_id, reason)
        if self.on_refused is not None:
            self.on_refused(agent_id, reason)

    async def _follow(self) -> None:
        """Apply the change stream for ever: whenever it drops or sends something that is not a change, say so
        and resume where it was."""
        while True:
            try:
                async for change in self.client.watch(self._position, reconnect_delay=self.reconnect_delay,
                                                      on_drop=self._stream_failed):
                    seq = int(change["seq"])
                    try:
                        await self._apply(change)
                    except UntrustworthyRecord as exc:
                        self._refuse(str(change.get("agent")), str(exc))
                    except (RegistryError, OSError) as exc:
                        log.warning("could not apply change %s for %s: %s", seq, change.get("agent"), exc)
                    self._position = seq
                    self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a malformed event: never stop following
                self._stream_failed(exc)
                await asyncio.sleep(self.reconnect_delay)

    def _stream_failed(self, error: Exception) -> None:
        log.warning("the registry's change stream stopped (%s: %s); resuming from %d", type(error).__name__, error,
                    self._position)
        if self.on_stream_failure is not None:
            self.on_stream_failure(error)

    async def _apply(self, change: dict[str, Any]) -> None:
        agent_id = str(change["agent"])
        kind = change["kind"]
        if kind == "revoked":
            self._revoked.add(agent_id)
            self._entries.pop(agent_id, None)
        elif kind in ("registered", "updated", "rotated"):
            skills = change.get("skills", ())
            if agent_id in self._entries or (isinstance(skills, list) and self._skills.intersection(skills)):
                entry = await self.client.get(agent_id)  # verified: the event itself proves nothing
                if entry.revoked or not self._skills.intersection(s.id for s in entry.facts.skills):
                    self._entries.pop(agent_id, None)
                else:
                    self._accept(entry)
        elif kind == "live" and agent_id in self._entries:
            old = self._entries[agent_id]
            live = bool(change.get("live"))
            self._entries[agent_id] = dataclasses.replace(old, live=live,
                                                          last_seen=self.clock() if live else old.last_seen)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
