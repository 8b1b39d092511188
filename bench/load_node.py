"""Node under load: hundreds of concurrent A2A calls and SSE streams, and a stuck agent beside a fast one.

The node is the real thing, ``guildnet node run`` (aiohttp, A2A and MCP on one app, SQLite task store and
process-data recorder), in its own process pinned to core 0, the load generator on core 1. It serves two
agents defined in this file: ``echo`` (returns its text) and ``stuck`` (its handler waits an hour: a peer
that hangs). Requests are made with the node's own :class:`~guildnet.node.a2a_client.A2AClient`, every
answer is checked (a completed task with the echoed text, or a stream ending COMPLETED with that artifact),
and a wrong answer counts as an error.

Scenarios:

* ``send``: ``--concurrency`` (500) SendMessage calls in flight at once, each on its own connection, until
  ``--requests`` have been made;
* ``stream``: ``--streams`` (100) SendStreamingMessage streams open at once, read to their terminal event;
* ``slow peer``: ``--stuck`` (100) calls to ``stuck`` are left hanging (half blocking SendMessage holding
  their connection, half returnImmediately tasks), then ``echo`` is driven at concurrency 32; its p50/p99
  beside the same load with nothing stuck (``baseline``) shows whether a hung handler stalls the other
  agent. The hung tasks are then cancelled with CancelTask (each must answer CANCELED).

    python bench/load_node.py              # writes bench/results/load_node.json
    python bench/load_node.py --quick      # smaller numbers, no JSON unless --out

tests/test_load.py runs the same scenarios with smaller numbers as a CI check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from measure import percentile
from processes import free_port, guildnet_process
from pydantic import BaseModel

from guildnet.node.a2a.client import A2AClient
from guildnet.node.agent import FunctionAgent
from guildnet.protocols import a2a

RESULTS = Path(__file__).with_name("results")
HANG_SECONDS = 3600.0


# ---- the agents the node serves (``guildnet node run`` imports this file for them) -------------------------
class Text(BaseModel):
    text: str


async def _echo(data: Text) -> Text:
    return Text(text=data.text)


async def _hang(data: Text) -> Text:
    await asyncio.sleep(HANG_SECONDS)
    return data


echo_agent = FunctionAgent("echo", description="Returns its text")
echo_agent.add_skill(_echo, id="echo", name="Echo", description="Returns its text unchanged", tags=["text"])
stuck_agent = FunctionAgent("stuck", description="Hangs")
stuck_agent.add_skill(_hang, id="hang", name="Hang", description="Waits an hour, then answers", tags=["slow"])


# ---- the node process --------------------------------------------------------------------------------------
def node_config(directory: Path, port: int) -> Path:
    """A node.toml serving this file's two agents on 127.0.0.1:``port``, keys and database in ``directory``."""
    here = Path(__file__).resolve()
    config = directory / "node.toml"
    config.write_text(f"""[node]
org_name = "load"
org_key = "{directory / 'org.key'}"
host = "127.0.0.1"
port = {port}
db = "sqlite:///{directory / 'node.db'}"

[[agents]]
agent = "{here}:echo_agent"
key = "{directory / 'echo.key'}"

[[agents]]
agent = "{here}:stuck_agent"
key = "{directory / 'stuck.key'}"
""")
    return config


@contextlib.asynccontextmanager
async def start_node(directory: Path, *, pinned: bool = False) -> AsyncIterator[str]:
    """``guildnet node run`` in its own process; yields the base URL once /healthz answers."""
    port = free_port()
    async with guildnet_process(["node", "run", str(node_config(directory, port))], port, directory / "node.log",
                                pinned=pinned):
        yield f"http://127.0.0.1:{port}"


# ---- requests ----------------------------------------------------------------------------------------------
class WrongAnswer(Exception):
    """The node answered, but not with what the echo agent must return."""


async def send_echo(client: A2AClient, url: str, text: str) -> None:
    result = await client.send_message(f"{url}/agents/echo/a2a", a2a.skill_request({"text": text}))
    task = result.get("task") or {}
    if task.get("status", {}).get("state") != a2a.COMPLETED or a2a.artifact_output(task) != {"text": text}:
        raise WrongAnswer(f"not a completed echo: {str(result)[:200]}")


async def stream_echo(client: A2AClient, url: str, text: str) -> None:
    output, state = None, None
    async for event in client.stream(f"{url}/agents/echo/a2a", a2a.skill_request({"text": text})):
        if "artifactUpdate" in event:
            output = a2a.artifact_output({"artifacts": [event["artifactUpdate"]["artifact"]]})
        status = (event.get("statusUpdate") or event.get("task") or {}).get("status") or {}
        state = status.get("state", state)
    if state != a2a.COMPLETED or output != {"text": text}:
        raise WrongAnswer(f"stream ended in {state} with output {output}")


@dataclass
class Result:
    scenario: str
    concurrency: int
    ok: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    first_error: str | None = None


Call = Callable[[A2AClient, str, str], Awaitable[None]]


async def drive(client: A2AClient, url: str, scenario: str, call: Call, concurrency: int,
                requests: int) -> Result:
    """``requests`` calls with ``concurrency`` in flight; latency per call, errors counted, never raised."""
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0

    async def worker(n: int) -> None:
        nonlocal issued
        while issued < requests:
            issued += 1
            started = time.perf_counter()
            try:
                await call(client, url, f"{scenario}-{n}-{issued}")
            except Exception as exc:  # a benchmark counts every failure, whatever its kind
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Result(scenario, concurrency, len(latencies), len(errors), round(elapsed, 2),
                  round(len(latencies) / elapsed, 1), round(percentile(latencies, 50) * 1000, 2),
                  round(percentile(latencies, 99) * 1000, 2), round(latencies[-1] * 1000 if latencies else 0, 2),
                  errors[0] if errors else None)


@dataclass
class StuckReport:
    hanging: int
    still_hanging_after: int
    cancelled: int
    cancel_errors: int


async def slow_peer(client: A2AClient, url: str, *, stuck: int, concurrency: int, requests: int
                    ) -> tuple[Result, StuckReport]:
    """Leave ``stuck`` calls hanging in the stuck agent, measure echo meanwhile, then cancel the hung tasks."""
    endpoint = f"{url}/agents/stuck/a2a"
    blocking = [asyncio.create_task(client.send_message(endpoint, a2a.skill_request({"text": "b"})))
                for _ in range(stuck // 2)]
    submitted = await asyncio.gather(*(client.send_message(endpoint, a2a.skill_request({"text": "i"}),
                                                           return_immediately=True)
                                       for _ in range(stuck - len(blocking))))
    task_ids = [r["task"]["id"] for r in submitted]
    await asyncio.sleep(0.5)  # every hung handler is now parked
    result = await drive(client, url, "echo beside stuck", send_echo, concurrency, requests)
    states = await asyncio.gather(*(client.get_task(endpoint, t) for t in task_ids))
    still = sum(not b.done() for b in blocking) + sum(t["status"]["state"] not in a2a.TERMINAL_STATES
                                                      for t in states)
    cancelled = cancel_errors = 0
    for outcome in await asyncio.gather(*(client.cancel_task(endpoint, t) for t in task_ids),
                                        return_exceptions=True):
        if isinstance(outcome, dict) and outcome.get("status", {}).get("state") == a2a.CANCELED:
            cancelled += 1
        else:
            cancel_errors += 1
    for task in blocking:
        task.cancel()
    await asyncio.gather(*blocking, return_exceptions=True)
    return result, StuckReport(stuck, still, cancelled, cancel_errors)


async def run_all(url: str, *, concurrency: int, requests: int, streams: int, stream_requests: int, stuck: int,
                  probe_requests: int) -> dict[str, Any]:
    """Every scenario against the node at ``url``; returns the table rows and the stuck-agent report."""
    connector = aiohttp.TCPConnector(limit=0)  # aiohttp's default of 100 connections would cap the load
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        client = A2AClient(session)
        await drive(client, url, "warm-up", send_echo, 8, 64)
        rows = [await drive(client, url, "SendMessage", send_echo, concurrency, requests),
                await drive(client, url, "SendStreamingMessage", stream_echo, streams, stream_requests),
                await drive(client, url, "echo baseline", send_echo, 32, probe_requests)]
        beside, report = await slow_peer(client, url, stuck=stuck, concurrency=32, requests=probe_requests)
        rows.append(beside)
    return {"rows": [asdict(r) for r in rows], "stuck": asdict(report)}


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{'scenario':<24}{'in flight':>10}{'ok':>8}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}")
    for r in result["rows"]:
        print(f"{r['scenario']:<24}{r['concurrency']:>10}{r['ok']:>8}{r['errors']:>8}{r['rps']:>9.1f}"
              f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}")
        if r["first_error"]:
            print(f"  first error: {r['first_error'][:200]}")
    s = result["stuck"]
    print(f"\nstuck agent: {s['hanging']} calls hung (half blocking, half returnImmediately), "
          f"{s['still_hanging_after']} still hanging after the echo run; CancelTask: {s['cancelled']} CANCELED, "
          f"{s['cancel_errors']} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller numbers; no JSON unless --out is given")
    parser.add_argument("--concurrency", type=int, default=500, help="SendMessage calls in flight")
    parser.add_argument("--requests", type=int, help="SendMessage calls in all (default 10x concurrency)")
    parser.add_argument("--streams", type=int, default=100, help="SSE streams open at once")
    parser.add_argument("--stuck", type=int, default=100, help="calls left hanging in the stuck agent")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/load_node.json)")
    args = parser.parse_args()
    scale = 5 if args.quick else 1
    concurrency, streams, stuck = args.concurrency // scale, args.streams // scale, args.stuck // scale
    requests = args.requests or concurrency * (4 if args.quick else 10)
    out = args.out or (None if args.quick else RESULTS / "load_node.json")
    pinned = hasattr(os, "sched_setaffinity") and shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1
    if pinned:
        os.sched_setaffinity(0, {1})

    async def go() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="guildnet-load-node-") as tmp:
            async with start_node(Path(tmp), pinned=pinned) as url:
                return await run_all(url, concurrency=concurrency, requests=requests, streams=streams,
                                     stream_requests=streams * 10, stuck=stuck, probe_requests=2000 // scale)

    result = asyncio.run(go())
    print_table(result)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                                   "cpus": os.cpu_count(), "pinned": pinned, **result}, indent=2) + "\n")
        print(f"wrote {out}")
    if any(r["errors"] for r in result["rows"]) or result["stuck"]["cancel_errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
