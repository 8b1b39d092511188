"""Write rate limits per client address and per signing key, answered with 429 and ``Retry-After``.

The per-address limit is checked before the body is read, so a flood costs no signature checks. The per-key
limit is checked only after the signature verified: a limit keyed on an unverified ``kid`` would let anyone
spend a victim's budget with junk signed by nobody. Counting is done by the ``limits`` library (moving
windows, the same engine as Flask-Limiter and SlowAPI); its storage is in memory by default, or any URI it
accepts (``redis://...``) so that several replicas share one budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


@dataclass(frozen=True)
class RateLimited(Exception):
    """A write over its budget; ``retry_after`` is whole seconds until one more write is allowed."""

    scope: str
    limit: str
    retry_after: int


class WriteLimits:
    """Per-address and per-key write budgets, e.g. ``"300/minute"``; ``None`` turns one off."""

    def __init__(self, per_ip: str | None, per_key: str | None, storage_uri: str = "memory://") -> None:
        self._per_ip: RateLimitItem | None = parse(per_ip) if per_ip else None
        self._per_key: RateLimitItem | None = parse(per_key) if per_key else None
        if not storage_uri.startswith("async+"):
            storage_uri = "async+" + storage_uri  # the asyncio flavour of the same backend
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    async def check_address(self, address: str, writes: int = 1) -> None:
        """Spend ``writes`` of the address's budget (a batch of registrations spends one per registration)."""
        await self._hit(self._per_ip, "address", address, writes)

    async def check_key(self, did: str) -> None:
        await self._hit(self._per_key, "key", did)

    async def _hit(self, item: RateLimitItem | None, scope: str, identity: str, cost: int = 1) -> None:
        if item is None or await self._limiter.hit(item, scope, identity, cost=cost):
            return
        stats = await self._limiter.get_window_stats(item, scope, identity)
        raise RateLimited(scope, str(item), max(1, math.ceil(stats.reset_time - time.time())))
