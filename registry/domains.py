"""The registry's checks of organisations' domain claims: at registration, and again on a schedule.

A registration whose facts claim ``organisation.domain`` is accepted either way (the claim is the organisation's
business; the mark is the registry's), and the registry checks the proof before it answers, unless it checked
this (organisation, domain) recently: every agent of an organisation shares one mark, so a node that registers
twenty agents causes one look-up. The answer carries the mark; records served afterwards carry it too.

A background task re-checks each claim an unrevoked agent makes every ``recheck_interval`` seconds (and checks
one whose check at registration did not finish). A
verified mark survives ``withdraw_after - 1`` failed checks in a row (a resolver outage is not a lost domain) and
is withdrawn at the next, with a warning in the log. What a mark may say is decided in
:func:`guildnet.protocols.domain.next_mark`; the look-ups are :mod:`.domain_lookup`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from guildnet.protocols.domain import DomainLookups, DomainMark, check_domain, next_mark
from guildnet.protocols.signed_write import SignedWrite

from .store import RegistryStore

log = logging.getLogger(__name__)

_SELECT_MARK = text("SELECT mark FROM org_domains WHERE org_id = :org AND domain = :domain")
_UPSERT_MARK = text(
    "INSERT INTO org_domains (org_id, domain, status, checked_at, mark) VALUES (:org, :domain, :status, :at, :mark) "
    "ON CONFLICT (org_id, domain) DO UPDATE SET status = excluded.status, checked_at = excluded.checked_at, "
    "mark = excluded.mark")
_DUE = text(
    "SELECT DISTINCT a.org_id, a.org_domain, d.mark, d.checked_at FROM agents a LEFT JOIN org_domains d "
    "ON d.org_id = a.org_id AND d.domain = a.org_domain WHERE a.org_domain IS NOT NULL AND NOT a.revoked "
    "AND (d.checked_at IS NULL OR d.checked_at <= :due) ORDER BY d.checked_at LIMIT :limit")
"""Claims an unrevoked agent makes whose mark is due (or missing: a check at registration that did not finish)."""


def claimed_domain(write: SignedWrite) -> tuple[str, str] | None:
    """(organisation id, domain) an accepted registration claims, or None."""
    organisation = write.payload["facts"]["organisation"]
    domain = organisation.get("domain")
    return (str(organisation["id"]), str(domain)) if domain else None


class DomainChecker:
    """Checks claims, keeps one :class:`DomainMark` per (organisation, domain) in the store, and re-checks them."""

    BATCH = 256
    """Marks re-checked per round of the schedule (a round a minute at most), ``CONCURRENCY`` at a time."""
    CONCURRENCY = 8
    REMEMBERED = 30.0
    """Seconds a mark this replica read or wrote answers registrations without a database read (an organisation
    registers its agents together); the served records always read the stored mark."""
    MAX_REMEMBERED = 10_000

    def __init__(self, store: RegistryStore, lookups: DomainLookups, *, recheck_interval: float,
                 withdraw_after: int, retry_interval: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.lookups = lookups
        self.recheck_interval = recheck_interval
        self.withdraw_after = withdraw_after
        self.retry_interval = retry_interval
        """A claim that failed is checked again at registration no sooner than this: re-registering cannot make
        the registry query a domain in a loop."""
        self.clock = clock
        self._running: dict[tuple[str, str], asyncio.Task[DomainMark]] = {}
        self._remembered: dict[tuple[str, str], tuple[float, DomainMark]] = {}
        self._task: asyncio.Task[None] | None = None

    async def mark(self, org: str, domain: str) -> DomainMark | None:
        remembered = self._remembered.get((org, domain))
        if remembered is not None and time.monotonic() - remembered[0] < self.REMEMBERED:
            return remembered[1]
        stored = await self.store.read(lambda conn: conn.execute(_SELECT_MARK, {"org": org, "domain": domain})
                                       .scalar())
        if stored is None:
            return None
        mark = DomainMark.from_json_text(stored)
        self._remember(mark)
        return mark

    def _remember(self, mark: DomainMark) -> None:
        if len(self._remembered) >= self.MAX_REMEMBERED:
            self._remembered.clear()
        self._remembered[(mark.org, mark.domain)] = (time.monotonic(), mark)

    async def at_registration(self, org: str, domain: str) -> DomainMark:
        """The mark for a claim a registration just made: the stored one if checked recently enough, else a
        fresh check's."""
        previous = await self.mark(org, domain)
        if previous is not None:
            age = self.clock() - previous.checked_at
            if age < (self.recheck_interval if previous.verified else self.retry_interval):
                return previous
        return await self.check(org, domain, previous)

    async def check(self, org: str, domain: str, previous: DomainMark | None) -> DomainMark:
        """Check the claim now and store the new mark; a check of the same claim already under way is joined, and
        a caller that goes away (a registration whose client hung up) does not stop it."""
        key = (org, domain)
        task = self._running.get(key)
        if task is None:
            task = asyncio.create_task(self._check(org, domain, previous), name=f"guildnet-domain-check-{domain}")
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)

    async def _check(self, org: str, domain: str, previous: DomainMark | None) -> DomainMark:
        result = await check_domain(domain, org, self.lookups, now=self.clock())
        mark = next_mark(previous, result, withdraw_after=self.withdraw_after)
        await self.store.write(lambda conn: _store(conn, mark))
        self._remember(mark)
        self._report(previous, mark)
        return mark

    @staticmethod
    def _report(previous: DomainMark | None, mark: DomainMark) -> None:
        was = previous.status if previous is not None else None
        if mark.status == "withdrawn" and was == "verified":
            log.warning("domain mark withdrawn: %s for organisation %s after %d failed checks: %s", mark.domain,
                        mark.org, mark.failures, mark.detail)
        elif mark.verified and was != "verified":
            log.info("domain verified: %s for organisation %s by %s", mark.domain, mark.org, mark.method)
        elif not mark.verified:
            log.info("domain not verified: %s for organisation %s (%d failed in a row): %s", mark.domain, mark.org,
                     mark.failures, mark.detail)

    async def recheck_due(self) -> int:
        """Check the claims unrevoked agents make whose mark was last checked ``recheck_interval`` ago or more (or
        that have none), oldest first, one batch; returns how many were checked."""
        due = self.clock() - self.recheck_interval
        rows = await self.store.read(lambda conn: conn.execute(_DUE, {"due": due, "limit": self.BATCH}).all())
        claims = [(str(org), str(domain), DomainMark.from_json_text(mark) if mark else None)
                  for org, domain, mark, _ in rows]
        gate = asyncio.Semaphore(self.CONCURRENCY)

        async def one(org: str, domain: str, previous: DomainMark | None) -> None:
            async with gate:
                await self.check(org, domain, previous)

        results = await asyncio.gather(*(one(*claim) for claim in claims), return_exceptions=True)
        for (org, domain, _), result in zip(claims, results, strict=True):
            if isinstance(result, Exception):
                log.error("check of %s for %s failed: %r", domain, org, result)
        return len(claims)

    def start(self) -> None:
        self._task = asyncio.create_task(self._schedule(), name="guildnet-domain-recheck")

    async def _schedule(self) -> None:
        pause = min(self.recheck_interval, 60.0)
        while True:
            await asyncio.sleep(pause)
            try:
                await self.recheck_due()
            except Exception:
                log.exception("domain re-check round failed; retrying")

    async def stop(self) -> None:
        """Stop the schedule and any check under way (before the store closes)."""
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None


def _store(conn: Connection, mark: DomainMark) -> Any:
    return conn.execute(_UPSERT_MARK, {"org": mark.org, "domain": mark.domain, "status": mark.status,
                                       "at": mark.checked_at, "mark": mark.to_json_text()})
