"""What hostile callees cost a delegating node: event-loop stall, memory, and wall time against the deadline.

A registry and an honest node (an echo agent at a price) run as their own processes; so does each hostile
callee (bench/hostile_peer.py, or a real node whose agent declares a loose schema and answers garbage), registered
cheaper so it is tried first. The caller runs here and delegates ``echo`` with a 6 s deadline while a thread samples
its resident memory and a task measures how long its event loop goes without turning. Last, the same figures while
the caller pins and applies a hostile output schema (a remote ``$ref`` to a tarpit, a backtracking pattern).

    python bench/hostile_peers.py

Prints a table and writes bench/results/hostile_peers.json. The "before" column quotes the figures the issue
reported for the same attacks on the code before (issue 17).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from processes import free_port, guildnet_process

from guildnet.node.a2a.client import A2AClient
from guildnet.node.delegation.delegator import DelegationFailed, Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.delegation.schemas import Pin, SchemaPins
from guildnet.node.identity import StaticIdentity
from guildnet.protocols.agentfacts import AgentFacts, endorse
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.schema_check import UnsafeSchema
from guildnet.registry.client import RegistryClient

RESULTS = Path(__file__).with_name("results")
HOSTILE_PEER = Path(__file__).with_name("hostile_peer.py")
DEADLINE = 6.0
ECHO_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
BEFORE = {
    "huge": "caller 77 -> 2,477 MB RSS (whole body read, then json.loads)",
    "redirect": "task input and caller DID re-POSTed to the third host",
    "tarpit": "no bound but the deadline",
    "malformed": "AttributeError ended delegate(); no fallback",
    "loose-schema": "garbage accepted, success receipt counted",
    "remote-$ref": "fetched with a blocking urlopen and no timeout: the caller's event loop stalled 29.9 s (3 s "
                   "deadline)",
    "pattern": "^(a|aa)+$ on 38 a's and a '!' stalled the caller's event loop 8.3 s",
}
AGENT = """
from pydantic import BaseModel, ConfigDict
from guildnet.node.agent import FunctionAgent
from guildnet.protocols.agentfacts import ModelFacts

class Text(BaseModel):
    text: str

class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")

honest = FunctionAgent("honest", description="echo at a price",
                       model=ModelFacts(family="demo", cost_per_1k_input=0.01, cost_per_1k_output=0.01))
loose = FunctionAgent("loose", description="echo, loosely",
                      model=ModelFacts(family="demo", cost_per_1k_input=0.0, cost_per_1k_output=0.0))

@honest.skill_handler(id="echo", name="Echo")
async def echo(data: Text) -> Text:
    return data

@loose.skill_handler(id="echo", name="Echo")
async def garbage(data: Text) -> Anything:
    return Anything(garbage=True)
"""


def node_config(tmp: Path, name: str, port: int, registry_url: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f"""
[node]
org_name = "{name}-org"
org_key = "{name}-org.key"
port = {port}
db = "sqlite:///{name}.db"
registry = "{registry_url}"
anonymous = "off"

[[agents]]
agent = "agents.py:{name}"
key = "{name}.key"
""")
    return path


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.asynccontextmanager
async def watched() -> AsyncIterator[dict[str, float]]:
    """What the caller's process goes through inside the block: the longest the event loop did not turn, the peak
    resident memory above where it started (sampled by a thread, so even while the loop is stuck) and the wall
    time. tests/test_hostile_callees.py asserts its bounds on these same figures."""
    figures = {"worst_stall_ms": 0.0, "peak_rss_growth_mb": 0.0, "wall_s": 0.0}
    stop = threading.Event()
    baseline = rss()

    def sample_memory() -> None:
        while not stop.is_set():
            figures["peak_rss_growth_mb"] = max(figures["peak_rss_growth_mb"], (rss() - baseline) / 2**20)
            time.sleep(0.005)

    async def sample_loop() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            figures["worst_stall_ms"] = max(figures["worst_stall_ms"], (loop.time() - before - 0.01) * 1000)

    sampler = threading.Thread(target=sample_memory)
    sampler.start()
    ticker = asyncio.create_task(sample_loop())
    started = time.perf_counter()
    try:
        yield figures
    finally:
        figures["wall_s"] = time.perf_counter() - started
        ticker.cancel()
        stop.set()
        sampler.join()


@contextlib.asynccontextmanager
async def hostile_process(mode: str, argument: str = "") -> AsyncIterator[str]:
    """bench/hostile_peer.py in ``mode`` on a free port, until it says it is ready; yields its A2A endpoint."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(sys.executable, str(HOSTILE_PEER), str(port), mode, argument,
                                                   stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 20)).strip() == b"ready"
        yield f"http://127.0.0.1:{port}/agents/cheap/a2a"
    finally:
        process.kill()
        await process.wait()


class ThirdHost:
    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/collect"

    def count(self) -> int:
        with contextlib.suppress(BlockingIOError):
            while True:
                connection, _ = self.socket.accept()
                connection.close()
                self.connections += 1
        return self.connections


async def schema_attacks(third: ThirdHost) -> list[dict[str, Any]]:
    """A callee first to declare a skill picks the output schema the caller pins (node/delegation/schemas.py): one
    whose ``$ref`` points at a host that accepts and never answers (``third``), and one with a backtracking
    pattern, applied to the output that makes it backtrack. Measured in this process, as the caller pins and
    checks them; nothing is run by a peer."""
    rows = []
    backtracking = {"type": "object", "properties": {"text": {"type": "string", "pattern": "^(a|aa)+$"}}}
    attacks: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("remote-$ref (tarpit)", {"$ref": third.url}, {"text": "hi"}),
        ("pattern ^(a|aa)+$", backtracking, {"text": "a" * 38 + "!"})]
    for attack, schema, output in attacks:
        async with watched() as figures:
            try:
                problem = await Pin.of("echo", schema, "first-seen").problem_with(output)
                verdict, outcome = ("invalid-output", problem) if problem else ("accepted", "")
            except UnsafeSchema as exc:
                verdict, outcome = "schema-refused", str(exc)
        rows.append({"attack": attack, "attempts": [verdict], "outcome": outcome, "answered_by": "-",
                     "deadline_s": DEADLINE, **figures, "third_host_connections": third.count(),
                     "before": BEFORE[attack.split(" ")[0]]})
        print(f"  {attack}: {verdict} ({outcome}) in {figures['wall_s']:.4f} s", file=sys.stderr)
    return rows


async def registered(registry: RegistryClient, name: str) -> None:
    """Until an agent called ``name`` has registered (a node registers its agents once it serves)."""
    async with asyncio.timeout(20):
        async for change in registry.watch(0):
            if change["kind"] == "registered" and (await registry.get(change["agent"])).facts.name == name:
                return


async def main() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="guildnet-hostile-"))
    (tmp / "agents.py").write_text(AGENT)
    registry_port, honest_port, loose_port = free_port(), free_port(), free_port()
    registry_url = f"http://127.0.0.1:{registry_port}"
    registry_args = ["registry", "serve", "--port", str(registry_port), "--db", f"sqlite:///{tmp}/registry.db"]
    third = ThirdHost()
    rows: list[dict[str, Any]] = []
    async with guildnet_process(registry_args, registry_port, tmp / "registry.log"), \
            guildnet_process(["node", "run", str(node_config(tmp, "honest", honest_port, registry_url))],
                             honest_port, tmp / "honest.log"), RegistryClient(registry_url) as registry:
        caller_org, caller = SigningKey.generate(), SigningKey.generate()
        await registry.register(AgentFacts.model_validate(endorse(caller_org, {
            "id": caller.did, "name": "caller", "version": 1,
            "organisation": {"id": caller_org.did, "name": "caller-org"}, "skills": [{"id": "plan", "name": "Plan"}]})),
            caller)
        await registered(registry, "honest")
        mallory = SigningKey.generate()
        async with A2AClient(signer=StaticIdentity(caller)) as client:
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, client, StaticIdentity(caller), caller_org.did, reputation_ttl=0,
                                  pins=SchemaPins(configured={"echo": ECHO_SCHEMA}))
            await index.track("echo")

            async def measure(attack: str) -> None:
                async with asyncio.timeout(15):
                    await index.wait_for_position((await registry.search(limit=1)).seq)
                assert len(index.candidates("echo")) == 2, "the honest agent and one hostile one"
                async with watched() as figures:
                    try:
                        result = await delegator.delegate("echo", {"text": "hi"}, deadline=DEADLINE,
                                                          min_reputation=0.0)
                        attempts, answered = result.attempts, result.agent.facts.name
                    except DelegationFailed as exc:
                        attempts, answered = exc.attempts, "-"
                rows.append({"attack": attack, "attempts": [f"{a.name}:{a.outcome}" for a in attempts],
                             "answered_by": answered, "deadline_s": DEADLINE, **figures,
                             "third_host_connections": third.count(), "before": BEFORE[attack.split(" ")[0]]})
                print(f"  {attack}: {rows[-1]['attempts']} in {figures['wall_s']:.2f} s", file=sys.stderr)

            for attack, mode, argument in [
                    ("huge (chunked)", "huge", ""), ("huge (declared length)", "huge-declared", ""),
                    ("redirect", "redirect", third.url), ("tarpit", "tarpit", ""),
                    ("malformed", "malformed", "")]:
                async with hostile_process(mode, argument) as endpoint:
                    key = SigningKey.generate()
                    await registry.register(AgentFacts.model_validate(endorse(mallory, {
                        "id": key.did, "name": "cheap", "version": 1,
                        "organisation": {"id": mallory.did, "name": "mallory"}, "endpoints": {"a2a": endpoint},
                        "skills": [{"id": "echo", "name": "Echo", "output_schema": ECHO_SCHEMA}]})), key)
                    await measure(attack)
                    await registry.revoke(key.did, key)
            async with guildnet_process(["node", "run", str(node_config(tmp, "loose", loose_port, registry_url))],
                                        loose_port, tmp / "loose.log"):
                await registered(registry, "loose")
                await measure("loose-schema")
            await delegator.flush()
            await index.close()
    rows.extend(await schema_attacks(third))
    third.socket.close()
    return {"deadline_s": DEADLINE, "rows": rows}


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    result = asyncio.run(main())
    print(f"{'attack':<24}{'attempts':<36}{'wall s':>7}{'stall ms':>9}{'+RSS MB':>8}{'3rd host':>9}")
    for row in result["rows"]:
        print(f"{row['attack']:<24}{' '.join(row['attempts']):<36}{row['wall_s']:>7.3f}{row['worst_stall_ms']:>9.1f}"
              f"{row['peak_rss_growth_mb']:>8.1f}{row['third_host_connections']:>9}")
    print(f"deadline {DEADLINE} s; before (issue 17): " + "; ".join(f"{k}: {v}" for k, v in BEFORE.items()))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "hostile_peers.json"
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), **result}, indent=2))
    print(f"wrote {out}")
