"""Hostile callees: an agent a node delegates to answers with 800 MB, a redirect to a third host, nothing at
all, a malformed task, or garbage under a schema it made loose. Each is bounded or refused, the delegation
falls back to an honest agent within its deadline, and the caller's event loop keeps turning.

The hostile peers run as their own processes (bench/hostile_peer.py), the honest one as a node on a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from delegation_support import Text, running_node, translator, wait_for_registrations
from pydantic import BaseModel, ConfigDict
from registry_support import live_registry, new_org
from test_load import bench_module

from guildnet.node.a2a.client import A2AClient
from guildnet.node.agent import FunctionAgent
from guildnet.node.delegation.delegator import DelegationFailed, DelegationResult, Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.delegation.schemas import SchemaPins
from guildnet.node.identity import StaticIdentity
from guildnet.protocols.agentfacts import AgentFacts, ModelFacts, endorse
from guildnet.registry.client import RegistryClient

BENCH = bench_module("hostile_peers")
"""bench/hostile_peers.py measures these attacks: the test starts the peers and watches the caller with its code."""
hostile_peer = BENCH.hostile_process
watched = BENCH.watched
DEADLINE = 6.0
TEXT_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
               "additionalProperties": False}


@dataclass
class Federation:
    registry: RegistryClient
    delegator: Delegator
    index: PeerIndex
    url: str
    tmp: Path
    org: Any


@contextlib.asynccontextmanager
async def federation(tmp_path: Path, *, pins: SchemaPins | None = None) -> AsyncIterator[Federation]:
    """A registry, a caller (organisation A, its agent registered) and an honest translator (organisation B)."""
    org_a = new_org("org-a")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as server, \
            RegistryClient(server.url) as registry:
        caller_key, caller = org_a.agent("planner")
        await registry.register(caller, caller_key)
        async with running_node("org-b", translator("honest", price=0.01), server.url,
                                f"sqlite+aiosqlite:///{tmp_path}/b.db"), \
                A2AClient(signer=StaticIdentity(caller_key)) as a2a_client:
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, a2a_client, StaticIdentity(caller_key), org_a.key.did,
                                  reputation_ttl=0.0, pins=pins or SchemaPins(configured={"translate": TEXT_SCHEMA}))
            try:
                yield Federation(registry, delegator, index, server.url, tmp_path, new_org("mallory"))
            finally:
                await delegator.flush()
                await index.close()


async def register_hostile(fed: Federation, endpoint: str, *, output_schema: dict[str, Any] | None = None) -> None:
    """Mallory's agent offers 'translate' cheaper than the honest one, so it is tried first."""
    key, facts = fed.org.agent("cheap", a2a=endpoint, skills=[{
        "id": "translate", "name": "Translate", "description": "Translate text",
        "input_schema": TEXT_SCHEMA, "output_schema": output_schema or TEXT_SCHEMA}])
    await fed.registry.register(facts, key)
    await settle(fed)


async def settle(fed: Federation, agents: int = 2) -> None:
    """Until the caller's index holds ``agents`` translators (registered, in their latest version)."""
    await fed.index.track("translate")
    await wait_for_registrations(fed.registry, agents + 1)  # and the caller's own agent
    async with asyncio.timeout(10):
        await fed.index.wait_for_position((await fed.registry.search(limit=1)).seq)
    assert len(fed.index.candidates("translate")) == agents


async def delegate(fed: Federation) -> DelegationResult:
    return await fed.delegator.delegate("translate", {"text": "hola"}, deadline=DEADLINE, min_reputation=0.0)


def outcomes(result: DelegationResult) -> list[tuple[str, str]]:
    return [(a.name, a.outcome) for a in result.attempts]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["huge", "huge-declared"])
async def test_an_800_mb_reply_is_cut_off_and_the_next_agent_answers(tmp_path: Path, mode: str) -> None:
    async with federation(tmp_path) as fed, hostile_peer(mode) as endpoint:
        await register_hostile(fed, endpoint)
        async with watched() as watch:
            result = await delegate(fed)
        assert result.output == {"text": "HOLA"} and outcomes(result) == [("cheap", "error"), ("honest", "success")]
        assert "larger than the 4194304 bytes" in result.attempts[0].detail \
            or "more than the 4194304" in result.attempts[0].detail
        assert watch["peak_rss_growth_mb"] < 64, watch  # the 800 MB never come in: at most the 4 MiB cap
        assert watch["worst_stall_ms"] < 500 and watch["wall_s"] < DEADLINE, watch


class ThirdHost:
    """A listening socket that counts who connects to it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/collect"

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = self.socket.accept()
                self.connections += 1
                connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@contextlib.contextmanager
def third_host() -> Iterator[ThirdHost]:
    host = ThirdHost()
    try:
        yield host
    finally:
        host.close()


async def test_a_redirect_is_not_followed_to_a_third_host(tmp_path: Path) -> None:
    with third_host() as third:
        async with federation(tmp_path) as fed, hostile_peer("redirect", third.url) as endpoint:
            await register_hostile(fed, endpoint)
            result = await delegate(fed)
            assert outcomes(result) == [("cheap", "error"), ("honest", "success")]
            assert "307" in result.attempts[0].detail
        assert third.connections == 0  # the task input and the caller's signature never went there


async def test_a_peer_that_never_answers_costs_only_its_share_of_the_deadline(tmp_path: Path) -> None:
    async with federation(tmp_path) as fed, hostile_peer("tarpit") as endpoint:
        await register_hostile(fed, endpoint)
        async with watched() as watch:
            result = await delegate(fed)
        assert outcomes(result) == [("cheap", "timeout"), ("honest", "success")]
        assert result.attempts[0].latency_ms / 1000 <= DEADLINE / 2 + 0.5  # two candidates: half each at most
        assert watch["wall_s"] < DEADLINE and watch["worst_stall_ms"] < 500, watch


async def test_a_malformed_reply_moves_on_to_the_next_agent(tmp_path: Path) -> None:
    async with federation(tmp_path) as fed, hostile_peer("malformed") as endpoint:
        await register_hostile(fed, endpoint)
        result = await delegate(fed)
        assert outcomes(result) == [("cheap", "error"), ("honest", "success")]
        assert "without a task object" in result.attempts[0].detail


class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")


def loose_translator(answer: dict[str, Any]) -> FunctionAgent:
    """A real agent that declares its output as 'any object' and returns ``answer``, with a valid signed receipt."""
    agent = FunctionAgent("cheap", description="translates, loosely",
                          model=ModelFacts(family="demo", cost_per_1k_input=0.0, cost_per_1k_output=0.0))

    async def translate(data: Text) -> Anything:
        return Anything(**answer)

    agent.add_skill(translate, id="translate", name="Translate", description="Translate text")
    return agent


async def test_garbage_under_a_loose_schema_fails_the_pinned_one(tmp_path: Path) -> None:
    """The caller's pin (here its configured schema) is the check, not the callee's {"type": "object"}: the
    garbage earns a failure receipt and the honest agent answers."""
    async with federation(tmp_path) as fed, \
            running_node("mallory", loose_translator({"garbage": True}), fed.url, f"sqlite+aiosqlite:///{tmp_path}/m.db"):
        await settle(fed)
        result = await delegate(fed)
        assert outcomes(result) == [("cheap", "invalid-output"), ("honest", "success")]
        assert "schema pinned from config" in result.attempts[0].detail
        assert fed.delegator.pins.mismatches  # the loose declaration was flagged


async def test_without_a_configured_schema_the_first_one_seen_is_pinned(tmp_path: Path) -> None:
    """No configuration: the schema of the first agent seen for the skill is pinned (in the node's database);
    one registered later with a looser schema is flagged and held to the pin."""
    pins = SchemaPins()
    async with federation(tmp_path, pins=pins) as fed:
        await settle(fed, agents=1)
        first = await delegate(fed)  # only the honest agent so far: its schema is pinned
        assert outcomes(first) == [("honest", "success")]
        async with running_node("mallory", loose_translator({"garbage": True}), fed.url, f"sqlite+aiosqlite:///{tmp_path}/m.db"):
            await settle(fed)
            result = await delegate(fed)
        assert outcomes(result) == [("cheap", "invalid-output"), ("honest", "success")]
        assert "schema pinned from first-seen" in result.attempts[0].detail
        [(skill, _)] = pins.mismatches
        assert skill == "translate"


async def test_a_backtracking_pattern_in_a_first_seen_schema_costs_microseconds(tmp_path: Path) -> None:
    """A callee, first to declare a skill, registers an output schema with ``^(a|aa)+$`` and answers 38 a's and
    a '!'. Python's re would stall the caller for seconds on it; the pin is applied with RE2."""
    schema = {"type": "object", "properties": {"text": {"type": "string", "pattern": "^(a|aa)+$"}},
              "required": ["text"]}
    async with federation(tmp_path, pins=SchemaPins()) as fed, \
            running_node("mallory", loose_translator({"text": "a" * 38 + "!"}), fed.url,
                         f"sqlite+aiosqlite:///{tmp_path}/m.db") as mallory:
        await settle(fed)
        registered = (await fed.registry.search(skill="translate", org=mallory.node.org_key.did)).agents[0].facts
        facts = registered.to_json()
        facts["version"] += 1
        facts["skills"][0]["output_schema"] = schema  # what the caller will pin; the node serves the loose one
        await fed.registry.register(AgentFacts.model_validate(endorse(mallory.node.org_key, facts)),
                                    mallory.agent_key)
        await settle(fed)
        async with watched() as watch:
            with pytest.raises(DelegationFailed) as failed:  # the honest "HOLA" breaks that pin too
                await delegate(fed)
        cheap = failed.value.attempts[0]
        assert (cheap.name, cheap.outcome) == ("cheap", "invalid-output")
        assert "does not match '^(a|aa)+$'" in cheap.detail
        assert watch["worst_stall_ms"] < 500, watch
