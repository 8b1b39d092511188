"""Hostile input to every registry endpoint: never a 5xx, always problem+json, never a stored change."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry_support import live_registry, new_org, snapshot

from guildnet.protocols import jws
from guildnet.protocols.keys import SigningKey

KEY = SigningKey.generate()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@st.composite
def signed_garbage(draw: st.DrawFn) -> str:
    """Correctly signed JWS whose payload is anything: tests the checks after the signature."""
    payload: dict[str, Any] = draw(st.dictionaries(
        st.sampled_from(["action", "facts", "iat", "nonce", "agent", "new_key", "x"]), json_values, max_size=6))
    if draw(st.booleans()):
        payload["iat"] = int(time.time())
        payload["nonce"] = "A" * draw(st.integers(0, 40))
    return jws.sign(payload, KEY)


bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.builds(lambda parts: ".".join(parts), st.lists(st.text("abcXYZ-_=+/019", max_size=40), min_size=1, max_size=4)),
    signed_garbage(),
)
paths = st.sampled_from(["/v1/agents", "/v1/agents/{id}/heartbeat", "/v1/agents/{id}/revoke",
                         "/v1/agents/{id}/rotate", "/v1/agents/did:key:zbad/revoke"])
queries = st.dictionaries(st.sampled_from(["skill", "q", "org", "live", "limit", "cursor", "x"]),
                          st.text(max_size=30), max_size=4)


async def test_fuzzed_requests_never_crash_or_change_state(tmp_path: Path) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/fuzz.db") as registry, aiohttp.ClientSession() as http:
        from guildnet.registry.client import RegistryClient

        async with RegistryClient(registry.url, session=http) as client:
            await client.register(facts, key)
        before = await snapshot(registry)
        seen_statuses: set[int] = set()

        # hypothesis draws the cases; they are sent afterwards because the server runs on this event loop
        examples: list[tuple[str, bytes | str, str, dict[str, str]]] = []

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(path=paths, body=bodies, content_type=st.sampled_from(["application/jose", "text/plain", ""]),
               query=queries)
        def collect(path: str, body: bytes | str, content_type: str, query: dict[str, str]) -> None:
            examples.append((path.replace("{id}", facts.id), body, content_type, query))

        collect()
        for path, body, content_type, query in examples:
            headers = {"Content-Type": content_type} if content_type else {}
            async with http.post(registry.url + path, data=body, headers=headers) as response:
                text = await response.text()
                seen_statuses.add(response.status)
                assert response.status < 500, (path, body, text)
                assert response.content_type == "application/problem+json", (path, body, text)
                assert "Traceback" not in text
                problem = json.loads(text)
                assert problem["status"] == response.status and problem["detail"]
            async with http.get(registry.url + "/v1/agents", params=query) as response:
                assert response.status in (200, 400), (query, await response.text())
        assert await snapshot(registry) == before
        assert {400, 415}.issubset(seen_statuses)  # the checks behind them were reached
