"""The node's own check of a candidate organisation's domain, for delegations that require a verified domain.

A registry's domain mark is the registry's word; a node that requires a verified domain (``require_verified_domain``
in its config, or ``delegate --require-verified-domain``) does not take it: before a candidate is ranked, the node
looks the organisation's proof up itself (DNS TXT, then HTTPS; :func:`guildnet.protocols.domain.check_domain`)
through its own resolver. Results are cached per (organisation, domain), a pass for :attr:`DomainVerifier.ttl`
and a failure for the shorter :attr:`DomainVerifier.failure_ttl`, so a delegation costs no look-up in the common
case and a fixed proof is seen within a minute; concurrent checks of one claim share one look-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from guildnet.protocols.domain import DomainCheck, check_domain
from guildnet.registry.client import AgentEntry, DomainResolver

log = logging.getLogger(__name__)


class DomainVerifier:
    MAX_CACHED = 4096

    def __init__(self, resolver: DomainResolver, *, ttl: float = 600.0, failure_ttl: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.resolver = resolver
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[float, DomainCheck]] = {}
        self._running: dict[tuple[str, str], asyncio.Task[DomainCheck]] = {}

    async def check(self, org: str, domain: str) -> DomainCheck:
        """Whether ``domain`` names ``org``'s key, as this node found it (cached)."""
        key = (org, domain)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._look_up(org, domain))
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)

    async def _look_up(self, org: str, domain: str) -> DomainCheck:
        result = await check_domain(domain, org, self.resolver, now=self.clock())
        if len(self._cache) >= self.MAX_CACHED:
            now = self.clock()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[(org, domain)] = (result.checked_at + (self.ttl if result.verified else self.failure_ttl), result)
        return result

    async def split(self, entries: Sequence[AgentEntry]) -> tuple[list[AgentEntry], list[tuple[AgentEntry, str]]]:
        """``entries`` whose organisation's domain this node proved itself, and the others with why. The registry's
        mark is not consulted: a lying registry cannot lend an organisation a domain."""
        claims = sorted({(e.facts.organisation.id, e.facts.organisation.domain) for e in entries
                         if e.facts.organisation.domain is not None})
        checks = dict(zip(claims, await asyncio.gather(*(self.check(org, domain) for org, domain in claims)),
                          strict=True))
        kept: list[AgentEntry] = []
        refused: list[tuple[AgentEntry, str]] = []
        for entry in entries:
            organisation = entry.facts.organisation
            if organisation.domain is None:
                refused.append((entry, "its organisation claims no domain"))
                continue
            check = checks[(organisation.id, organisation.domain)]
            if check.verified:
                kept.append(entry)
            else:
                why = f"domain {organisation.domain} not proven: {check.detail}"
                log.warning("not a candidate: %s (%s): %s", entry.facts.name, entry.id, why)
                refused.append((entry, why))
        return kept, refused

    async def close(self) -> None:
        await self.resolver.close()
