"""The signed agent cards of the peers a delegator calls: which bindings each offers, and the key it signs with.

A peer's AgentFacts (checked against its key history by the registry client) give one A2A URL, its JSON-RPC
endpoint. Its agent card, beside that endpoint, lists every interface it serves (JSON-RPC, HTTP+JSON, gRPC) and
whether it sends push notifications. A card is used only if it carries a valid signature by the agent's key in
force, as the verified record names it: an interface list nobody signed could send the task, and the caller's
signed token, anywhere. The verified card is also where the key a push notification must be signed by is
pinned (:mod:`.push_wait`).

Cards are kept :data:`CARD_TTL` seconds per agent (and fetched again at once if the agent's key in force
changed). A card that cannot be fetched or does not verify leaves the facts' JSON-RPC URL, and the failure is
remembered for :data:`FAILED_TTL` seconds so a peer without a card (or a hostile one) costs one bounded fetch,
not one per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from guildnet.registry.client import AgentEntry

from ..a2a.client import A2AClient, card_url

log = logging.getLogger(__name__)

CARD_TTL: Final = 300.0
FAILED_TTL: Final = 60.0
MAX_KEPT: Final = 10_000
FETCH_SECONDS: Final = 5.0
"""The longest a card fetch may take (less when the attempt has less time)."""


@dataclass(frozen=True, slots=True)
class PeerTarget:
    """What to call: the verified card (all its bindings) or, without one, the facts' JSON-RPC URL."""

    endpoint: str | dict[str, Any]
    key: str
    """The agent's key in force the card was verified with (a push must be signed by it)."""

    @property
    def card(self) -> dict[str, Any] | None:
        return self.endpoint if isinstance(self.endpoint, dict) else None

    @property
    def pushes(self) -> bool:
        """The card says the peer sends push notifications."""
        capabilities = self.card.get("capabilities") if self.card else None
        return isinstance(capabilities, dict) and capabilities.get("pushNotifications") is True


@dataclass
class PeerCards:
    client: A2AClient
    _kept: dict[str, tuple[float, PeerTarget]] = field(default_factory=dict)

    async def target(self, entry: AgentEntry, within: float) -> PeerTarget:
        """The peer's verified card (from cache, or fetched within ``min(within / 2, FETCH_SECONDS)``), or its
        facts' URL when it has none that verifies."""
        url = entry.facts.endpoints.a2a or ""
        now = time.monotonic()
        kept = self._kept.get(entry.id)
        if kept is not None and kept[0] > now and kept[1].key == entry.current_key:
            return kept[1]
        try:
            async with asyncio.timeout(max(0.0, min(within / 2, FETCH_SECONDS))):
                card = await self.client.resolve_card(card_url(url), expected_did=entry.current_key)
        except Exception as exc:  # no card, a card by another key, a hostile reply: the signed facts' URL
            log.info("no verified agent card for %s at %s (%s: %s): calling its JSON-RPC URL", entry.id,
                     card_url(url), type(exc).__name__, exc)
            found = PeerTarget(url, entry.current_key)
            self._keep(entry.id, now + FAILED_TTL, found)
            return found
        found = PeerTarget(card, entry.current_key)
        self._keep(entry.id, now + CARD_TTL, found)
        return found

    def _keep(self, agent_id: str, until: float, found: PeerTarget) -> None:
        if len(self._kept) >= MAX_KEPT:
            self._kept.clear()
        self._kept[agent_id] = (until, found)

