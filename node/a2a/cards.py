"""Agent cards as a node serves them: built from the agent, signed by its key, served with caching headers.

Each card's bytes, ETag and Last-Modified are computed once at start: a card changes only with the node's
code or configuration, so clients (and the A2A TCK's CARD-CACHE checks) can revalidate with ``If-None-Match``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import web

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON
from guildnet.protocols.keys import SigningKey

from ..agent import Agent


def build_card(agent: Agent, url: str, version: str, provider: tuple[str, str] | None, *,
               interfaces: Sequence[a2a.CardInterface] = (), push_notifications: bool = False,
               extended_card: bool = False, extensions: Sequence[str] = ()) -> JSON:
    """The agent's card: JSON-RPC at ``url`` first, then ``interfaces``; ``extensions`` are declared required."""
    skills = [a2a.CardSkill(s.id, s.name, s.description, tuple(s.tags)) for s in agent.skills]
    card = a2a.build_agent_card(name=agent.name, description=agent.description, version=version, url=url,
                                skills=skills, provider=provider, interfaces=interfaces,
                                push_notifications=push_notifications, extended_card=extended_card)
    if extensions:
        card["capabilities"]["extensions"] = [{"uri": uri, "required": True} for uri in extensions]
    return card


@dataclass(frozen=True, slots=True)
class ServedCard:
    """A signed card ready to serve: its JSON, its bytes and their validators."""

    card: JSON
    body: bytes
    etag: str
    last_modified: str
    signer: str

    @classmethod
    def sign(cls, card: JSON, key: SigningKey, *, since: float) -> ServedCard:
        signed = a2a.sign_agent_card(card, key)
        body = json.dumps(signed, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(signed, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"', formatdate(since, usegmt=True), key.did)

    def response(self, request: web.Request) -> web.Response:
        headers = {"ETag": self.etag, "Cache-Control": "public, max-age=300", "Last-Modified": self.last_modified}
        if request.headers.get("If-None-Match") in (self.etag, f"W/{self.etag}", "*"):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, content_type="application/json", headers=headers)
