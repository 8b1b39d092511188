"""What delegate() costs on top of a bare A2A call to the same peer.

A registry and a peer node (the echo agent) run as their own processes on 127.0.0.1; the caller runs here.
"bare" is one A2A SendMessage to the peer, anonymous (the peer lets this machine in unsigned); "bare signed"
the same call carrying the caller's token (signed by its agent key, verified by the peer: the cost of
authentication); "delegate" is Delegator.delegate(): candidates from the watch-fed cache, ranking, the signed
call, receipt checks, the output checked against the pinned schema, countersigning and a background
submission to the registry. Sequential, after warm-up, interleaved in blocks so all see the same machine.
Goal (issue 4): delegation overhead p50 < 2 ms, over the bare signed call.

Latency on a shared 2-core machine moves with whatever else runs, so the CPU each kind of call costs is
measured too, per process (the caller, the peer node, the registry; the registry's share of a delegation is the
receipt it files), over the same blocks: a figure the load moves much less, and what the overhead is made of.

    python bench/delegation.py [--requests 500] [--out bench/results/delegation.json]

Prints a table and writes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import cpu_seconds, percentile
from processes import free_port, guildnet_process

from guildnet.node.a2a.client import A2AClient
from guildnet.node.delegation.delegator import Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import a2a
from guildnet.protocols.agentfacts import AgentFacts, endorse
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results")


async def main(requests: int) -> dict[str, Any]:
    """Measure in a scratch folder, removed afterwards; kept (and named) when the run fails, for its logs."""
    tmp = Path(tempfile.mkdtemp(prefix="guildnet-delegation-"))
    try:
        result = await measure(tmp, requests)
    except BaseException:
        print(f"the run failed: its logs and databases are in {tmp}", file=sys.stderr)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return result


async def measure(tmp: Path, requests: int) -> dict[str, Any]:
    registry_port, node_port = free_port(), free_port()
    registry_url = f"http://127.0.0.1:{registry_port}"
    (tmp / "node.toml").write_text(f"""
[node]
org_name = "peer-org"
org_key = "org.key"
port = {node_port}
db = "sqlite:///node.db"
registry = "{registry_url}"

[[agents]]
agent = "{ROOT / 'examples/echo/agent.py'}:agent"
key = "echo.key"
""")
    # the caller's key submits a receipt per task, faster than a key's default write budget allows
    registry_args = ["registry", "serve", "--port", str(registry_port), "--db", f"sqlite:///{tmp}/registry.db",
                     "--write-rate-per-key", "off"]
    async with guildnet_process(registry_args, registry_port, tmp / "registry.log") as registry_process, \
            guildnet_process(["node", "run", str(tmp / "node.toml")], node_port, tmp / "node.log") as peer_process:
        async with RegistryClient(registry_url) as registry, A2AClient() as client, \
                A2AClient() as signed_client:
            org, caller = SigningKey.generate(), SigningKey.generate()
            await registry.register(AgentFacts.model_validate(endorse(org, {
                "id": caller.did, "name": "caller", "version": 1, "organisation": {"id": org.did, "name": "caller-org"},
                "skills": [{"id": "plan", "name": "Plan"}]})), caller)
            async with asyncio.timeout(15):  # the peer node registers its agent at start-up
                async for change in registry.watch(0):
                    if change["kind"] == "registered" and change["agent"] != caller.did:
                        break
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, signed_client, StaticIdentity(caller), org.did)
            endpoint = (await registry.search(skill="echo")).agents[0].facts.endpoints.a2a or ""
            bare: list[float] = []
            signed: list[float] = []
            delegated: list[float] = []

            async def bare_call(i: int) -> None:
                started = time.perf_counter()
                await client.send_message(endpoint, a2a.skill_request({"text": f"t{i}"}, "echo"))
                bare.append((time.perf_counter() - started) * 1000)

            async def signed_call(i: int) -> None:
                started = time.perf_counter()
                await signed_client.send_message(endpoint, a2a.skill_request({"text": f"t{i}"}, "echo"))
                signed.append((time.perf_counter() - started) * 1000)

            async def delegate_call(i: int) -> None:
                started = time.perf_counter()
                result = await delegator.delegate("echo", {"text": f"t{i}"}, deadline=10)
                delegated.append((time.perf_counter() - started) * 1000)
                assert result.output == {"text": f"t{i}"}

            for i in range(30):  # warm-up: connections, caches, the first reputation look-up
                await bare_call(i)
                await signed_call(i)
                await delegate_call(i)
            bare.clear()
            signed.clear()
            delegated.clear()
            pids = {"caller": 0, "peer": peer_process.pid, "registry": registry_process.pid}
            cpu = {kind: dict.fromkeys(pids, 0.0) for kind in ("bare", "bare_signed", "delegate")}

            def cpu_now() -> dict[str, float]:
                return {name: time.process_time() if pid == 0 else cpu_seconds(pid) for name, pid in pids.items()}

            async def timed_block(kind: str, call: Any, first: int) -> None:
                before = cpu_now()
                for i in range(50):
                    await call(first + i)
                await delegator.flush()  # the receipts this block filed are part of its cost
                after = cpu_now()
                for name in pids:
                    cpu[kind][name] += after[name] - before[name]

            for block in range(requests // 50):
                await timed_block("bare", bare_call, block * 50)
                await timed_block("bare_signed", signed_call, block * 50)
                await timed_block("delegate", delegate_call, block * 50)
            await delegator.flush()
            await index.close()
            head = await registry.log_head()
            entries = await registry.log_entries(max(0, head.size - 256), head.size)
            accepted = sum(entry["kind"] == "receipt" for entry in entries)
    def figures(values: list[float]) -> dict[str, float]:
        return {"p50_ms": percentile(sorted(values), 50), "p99_ms": percentile(sorted(values), 99),
                "mean_ms": statistics.fmean(values)}

    cpu_ms = {kind: {name: seconds * 1000 / len(bare) for name, seconds in per.items()} for kind, per in cpu.items()}
    return {"requests": len(bare), "bare": figures(bare), "bare_signed": figures(signed),
            "delegate": figures(delegated), "cpu_ms_per_call": cpu_ms, "load_average": os.getloadavg(),
            "receipts_in_last_256_log_entries": accepted}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500, help="calls of each kind (multiple of 50)")
    parser.add_argument("--out", type=Path, default=RESULTS / "delegation.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = asyncio.run(main(args.requests))
    bare, signed, delegated = result["bare"], result["bare_signed"], result["delegate"]

    def row(name: str, values: dict[str, float], minus: dict[str, float] | None = None, note: str = "") -> None:
        cells = [values[k] - (minus[k] if minus else 0.0) for k in ("p50_ms", "p99_ms", "mean_ms")]
        print(f"{name:<28}" + "".join(f"{c:>9.2f}" for c in cells) + note)

    print(f"{'':<28}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    row("bare A2A (anonymous)", bare)
    row("bare A2A (signed)", signed)
    row("delegate (signed)", delegated)
    row("authentication (signed-bare)", signed, bare, "   (token signed by the caller, verified by the peer)")
    row("delegation overhead", delegated, signed, "   (goal: p50 < 2 ms)")
    cpu = result["cpu_ms_per_call"]
    print(f"\n{'CPU ms per call':<28}{'caller':>9}{'peer':>9}{'registry':>9}{'total':>9}")
    for name, kind in (("bare A2A (anonymous)", "bare"), ("bare A2A (signed)", "bare_signed"),
                       ("delegate (signed)", "delegate")):
        print(f"{name:<28}" + "".join(f"{cpu[kind][p]:>9.2f}" for p in ("caller", "peer", "registry"))
              + f"{sum(cpu[kind].values()):>9.2f}")
    print(f"{'delegation overhead':<28}" + "".join(f"{cpu['delegate'][p] - cpu['bare_signed'][p]:>9.2f}"
                                                 for p in ("caller", "peer", "registry"))
          + f"{sum(cpu['delegate'].values()) - sum(cpu['bare_signed'].values()):>9.2f}")
    print(f"\nload average (1, 5, 15 min): before {' '.join(f'{v:.2f}' for v in load_before)}, "
          f"after {' '.join(f'{v:.2f}' for v in result['load_average'])} on {os.cpu_count()} CPUs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                    "load_average_before": load_before, **result}, indent=2))
    print(f"wrote {args.out}")
