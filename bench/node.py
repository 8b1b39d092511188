"""Node benchmark: our aiohttp node against the official SDK servers, same echo agent, same client, one run.

A2A: ``SendMessage`` (blocking) and ``SendStreamingMessage`` (the whole SSE stream, to the terminal event)
against our node (A2AService, aiohttp) and against a2a-sdk 1.3's server (Starlette on uvicorn), each with an
in-memory and with an SQLite task store (the SDK's DatabaseTaskStore gets WAL and a busy timeout, without
which it fails with "database is locked" under concurrency). MCP: ``tools/call`` as stateless 2026-07-28
POSTs against our node's ``/mcp`` and against a plain ``mcp`` MCPServer app on uvicorn (h11).

Every request is a raw JSON-RPC POST made by one aiohttp client, byte-for-byte the same for both servers
(fresh message ids aside), and its answer is checked (a completed task with the echoed data, a structured
tool result); a wrong answer counts as an error, not as throughput. Each server runs in its own subprocess
pinned to core 0 (``taskset``), the load generator on core 1. The machine is shared and noisy, so the run
is made of interleaved rounds (within a round each case runs on both servers back to back, the order
alternating) and the table gives medians over rounds. A case stops after ``--requests`` requests or
``--seconds`` seconds, whichever comes first. Beside each figure the server's CPU use over the case
(1.0 = its core busy: the figure is the server's capacity; well below 1.0 at concurrency 1: the round trip
through the client bounds it), its CPU milliseconds per request (the least noisy figure of cost), and the
client's CPU milliseconds per request (at c=1 each round trip holds the client's time too, so a cheaper server
shows a smaller req/s ratio than its CPU ratio). A bare aiohttp handler with canned replies gives
the floor: what this client and loopback allow at concurrency 1, whatever the server; with gRPC cases, a bare
``grpc.aio`` handler with canned replies gives the gRPC floor (what grpcio on both ends allows; its replies have the
size and shape of the node's and the SDK's, since the client's cost per call grows with them), and the same
replies from grpcio's synchronous server (``grpc.server`` on a thread pool) a second one ("floor-sync": whether
leaving grpc.aio would lower the floor; it does not, docs/a2a-bindings.md, fifth round).

    python bench/node.py            # 3 rounds, about 4-8 minutes; writes bench/results/node.json
    python bench/node.py --quick    # 1 round of a few hundred requests per case; writes only with --out
    python bench/node.py --signed   # our node refuses unsigned calls; every request (to both servers) carries
                                    # a caller token signed for it; writes bench/results/node_signed.json
                                    # (JSON-RPC and MCP only)
    python bench/node.py --bindings rest,grpc   # only the HTTP+JSON and gRPC cases (and the floor)

The same A2A cases run on each binding the SDK serves too: JSON-RPC (``POST /``), HTTP+JSON (``POST
.../message:send`` and ``.../message:stream``, SSE whose data are StreamResponse objects) and gRPC (one
``grpc.aio`` channel per case, the SDK's generated stub: ``SendMessage`` and the ``SendStreamingMessage``
stream read to its end), each answer checked the same way.

    python bench/node.py --only mcp # the MCP cases alone (our node and the SDK's MCP server)

Goals: A2A at least 3x the SDK server's req/s in both store modes, on every binding (issues 3 and 13); MCP at
least 1.5x, and at c=32 a p99 no worse than the SDK's (issue 14: stateless POSTs take the node's native path,
:mod:`guildnet.node.mcp.fast`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
from measure import cpu_seconds, percentile
from processes import free_port

from guildnet.protocols.callerauth import sign_call
from guildnet.protocols.keys import SigningKey

SERVERS = Path(__file__).with_name("node_servers.py")
RESULTS = Path(__file__).with_name("results")
SERVER_CORE, CLIENT_CORE = 0, 1
A2A_HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
MCP_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
ECHO = {"text": "hello"}
COMPLETED = "TASK_STATE_COMPLETED"
TIMEOUT = aiohttp.ClientTimeout(total=60)


class WrongAnswer(Exception):
    """The server answered, but not with what the echo agent must return."""


@dataclass(frozen=True)
class Case:
    family: str  # "a2a", "mcp", or "floor" (canned replies: what the client and loopback alone allow)
    store: str  # "memory", "sqlite", or "-" for MCP
    op: str  # "send", "stream" or "tools/call"
    concurrency: int
    goal: float  # our req/s over the SDK's, at least
    binding: str = "jsonrpc"  # A2A: "jsonrpc", "rest" (HTTP+JSON) or "grpc"

    @property
    def name(self) -> str:
        op = {"send": "SendMessage", "stream": "SendStreamingMessage", "tools/call": "MCP tools/call"}[self.op]
        store = f" [{self.store}]" if self.family == "a2a" else ""
        binding = {"jsonrpc": "", "rest": "REST ", "grpc": "gRPC "}[self.binding]
        return f"{binding}{op}{store} c={self.concurrency}"


@dataclass
class Sample:
    """One case on one server in one round."""

    ok: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    server_cpu: float
    server_cpu_ms_per_request: float
    client_cpu: float
    client_cpu_ms_per_request: float = 0.0
    first_error: str | None = None


@dataclass
class Server:
    kind: str  # node_servers.py KIND
    store: str
    port: int
    process: asyncio.subprocess.Process
    log_path: Path
    grpc_port: int | None = None
    samples: dict[Case, list[Sample]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        """Where the server's HTTP+JSON binding is (node_servers.py)."""
        return self.url + ("/rest" if self.kind == "sdk-a2a" else "/agents/echo/rest")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        return ""

    def cpu_seconds(self) -> float:
        return float(cpu_seconds(self.process.pid))


def cases(bindings: tuple[str, ...] = ("jsonrpc", "rest", "grpc")) -> list[Case]:
    a2a = [Case("a2a", store, op, conc, 3.0, binding) for binding in bindings for store in ("memory", "sqlite")
           for op in ("send", "stream") for conc in (1, 32)]
    mcp = [Case("mcp", "-", "tools/call", conc, 1.5) for conc in (1, 32)] if "jsonrpc" in bindings else []
    return [*a2a, *mcp]


# ---- requests: identical for both servers ----------------------------------------------------------------
def a2a_body(method: str) -> bytes:
    message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"data": ECHO}]}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"message": message}}).encode()


def mcp_body(request_id: int) -> bytes:
    params = {"name": "echo", "arguments": ECHO, "_meta": MCP_META}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}).encode()


def check_task(task: Any) -> None:
    try:
        state = task["status"]["state"]
        data = task["artifacts"][0]["parts"][0]["data"]
    except (KeyError, IndexError, TypeError) as exc:
        raise WrongAnswer(f"not a finished echo task: {str(task)[:200]}") from exc
    if state != COMPLETED or data != ECHO:
        raise WrongAnswer(f"state {state}, output {data}")


async def sse_events(response: aiohttp.ClientResponse) -> list[Any]:
    """All ``data:`` payloads of an event stream, read whole to its end (one read: the client's cost per
    stream stays small and the same for both servers)."""
    events: list[Any] = []
    for block in (await response.read()).decode().replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if data:
            events.append(json.loads("\n".join(data)))
    return events


CALLER: SigningKey | None = None
"""With ``--signed``: the calling agent's key; every request carries a token it signed for that request."""


def headers_for(base: dict[str, str], url: str, body: bytes) -> dict[str, str]:
    if CALLER is None:
        return base
    token = sign_call(CALLER.did, CALLER, method="POST", url=url, body=body)
    return {**base, "Authorization": f"Bearer {token}"}


async def send_message(session: aiohttp.ClientSession, url: str) -> None:
    body = a2a_body("SendMessage")
    async with session.post(url + "/", data=body, headers=headers_for(A2A_HEADERS, url + "/", body)) as response:
        if response.status != 200:
            raise WrongAnswer(f"HTTP {response.status}")
        reply = await response.json(content_type=None)
    if "result" not in reply:
        raise WrongAnswer(f"error {reply.get('error')}")
    check_task(reply["result"].get("task"))


async def stream_message(session: aiohttp.ClientSession, url: str) -> None:
    body = a2a_body("SendStreamingMessage")
    async with session.post(url + "/", data=body, headers=headers_for(A2A_HEADERS, url + "/", body)) as response:
        if response.status != 200 or not response.content_type.startswith("text/event-stream"):
            raise WrongAnswer(f"HTTP {response.status} {response.content_type}")
        events = await sse_events(response)
    results = [e.get("result") or {} for e in events]
    artifacts = [r["artifactUpdate"]["artifact"] for r in results if "artifactUpdate" in r]
    last = results[-1] if results else {}
    final = (last.get("statusUpdate") or last.get("task") or {}).get("status", {}).get("state")
    if final != COMPLETED or not artifacts or artifacts[0]["parts"][0].get("data") != ECHO:
        raise WrongAnswer(f"stream of {len(events)} events ended in {final}: {str(events)[-200:]}")


def check_stream(events: list[Any]) -> None:
    """A StreamResponse sequence of the echo agent: an artifact with the echoed data, then completed."""
    artifacts = [e["artifactUpdate"]["artifact"] for e in events if "artifactUpdate" in e]
    last = events[-1] if events else {}
    final = (last.get("statusUpdate") or last.get("task") or {}).get("status", {}).get("state")
    if final != COMPLETED or not artifacts or artifacts[0]["parts"][0].get("data") != ECHO:
        raise WrongAnswer(f"stream of {len(events)} events ended in {final}: {str(events)[-200:]}")


def rest_body() -> bytes:
    message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"data": ECHO}]}
    return json.dumps({"message": message}).encode()


async def rest_send(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url + "/message:send", data=rest_body(), headers=A2A_HEADERS) as response:
        if response.status != 200:
            raise WrongAnswer(f"HTTP {response.status}: {(await response.text())[:200]}")
        reply = await response.json(content_type=None)
    check_task(reply.get("task"))


async def rest_stream(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url + "/message:stream", data=rest_body(), headers=A2A_HEADERS) as response:
        if response.status != 200 or not response.content_type.startswith("text/event-stream"):
            raise WrongAnswer(f"HTTP {response.status} {response.content_type}")
        check_stream(await sse_events(response))


GRPC_METADATA = (("a2a-version", "1.0"),)


def grpc_request() -> Any:
    from a2a.types import a2a_pb2
    from google.protobuf.json_format import ParseDict

    message = {"messageId": uuid.uuid4().hex, "role": "ROLE_USER", "parts": [{"data": ECHO}]}
    return ParseDict({"message": message}, a2a_pb2.SendMessageRequest())


def grpc_ops(port: int) -> tuple[Any, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """A channel to ``port`` and the two calls on it (the answers read back to ProtoJSON, then checked)."""
    import grpc
    from a2a.types import a2a_pb2_grpc
    from google.protobuf.json_format import MessageToDict

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = a2a_pb2_grpc.A2AServiceStub(channel)  # type: ignore[no-untyped-call]

    async def send() -> None:
        reply = await stub.SendMessage(grpc_request(), metadata=GRPC_METADATA)
        check_task(MessageToDict(reply).get("task"))

    async def stream() -> None:
        events = [MessageToDict(e) async for e in stub.SendStreamingMessage(grpc_request(), metadata=GRPC_METADATA)]
        check_stream(events)

    return channel, send, stream


def mcp_call() -> Callable[[aiohttp.ClientSession, str], Awaitable[None]]:
    ids = iter(range(1, 1 << 62))

    async def call(session: aiohttp.ClientSession, url: str) -> None:
        body = mcp_body(next(ids))
        async with session.post(url + "/mcp", data=body, headers=headers_for(MCP_HEADERS, url + "/mcp", body)) \
                as response:
            if response.status != 200:
                raise WrongAnswer(f"HTTP {response.status}: {(await response.text())[:200]}")
            if response.content_type == "text/event-stream":
                events = await sse_events(response)
                reply = events[-1] if events else {}
            else:
                reply = await response.json(content_type=None)
        result = reply.get("result") or {}
        if result.get("isError") or result.get("structuredContent") != ECHO:
            raise WrongAnswer(f"tool result {str(reply)[:200]}")

    return call


# ---- measuring ---------------------------------------------------------------------------------------------
async def measure(server: Server, case: Case, requests: int, seconds: float) -> Sample:
    connector = aiohttp.TCPConnector(limit=case.concurrency)
    channel = None
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        if case.binding == "grpc":
            assert server.grpc_port is not None
            channel, grpc_send, grpc_stream = grpc_ops(server.grpc_port)
            call = grpc_send if case.op == "send" else grpc_stream
        elif case.binding == "rest":
            rest = rest_send if case.op == "send" else rest_stream
            call = functools.partial(rest, session, server.rest_url)
        else:
            one = {"send": send_message, "stream": stream_message}.get(case.op) or mcp_call()
            call = functools.partial(one, session, server.url)
        # warm-up: open every connection and run the code paths once, off the clock
        for _ in range(5):
            await call()
        await asyncio.gather(*(call() for _ in range(case.concurrency)))
        latencies: list[float] = []
        errors: list[str] = []
        issued = 0
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter()
                try:
                    await call()
                except (WrongAnswer, aiohttp.ClientError, TimeoutError, ValueError, grpc_error()) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    latencies.append(time.perf_counter() - t0)

        cpu_server, cpu_client = server.cpu_seconds(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(case.concurrency)))
        elapsed = time.perf_counter() - started
        cpu_server, cpu_client = server.cpu_seconds() - cpu_server, time.process_time() - cpu_client
        if channel is not None:
            await channel.close()
    latencies.sort()
    return Sample(ok=len(latencies), errors=len(errors), seconds=round(elapsed, 3),
                  rps=round(len(latencies) / elapsed, 1), p50_ms=round(percentile(latencies, 50) * 1000, 2),
                  p99_ms=round(percentile(latencies, 99) * 1000, 2), server_cpu=round(cpu_server / elapsed, 2),
                  server_cpu_ms_per_request=round(cpu_server * 1000 / max(1, len(latencies)), 3),
                  client_cpu=round(cpu_client / elapsed, 2),
                  client_cpu_ms_per_request=round(cpu_client * 1000 / max(1, len(latencies)), 3),
                  first_error=errors[0] if errors else None)


def grpc_error() -> type[Exception]:
    import grpc

    error: type[Exception] = grpc.RpcError
    return error


# ---- servers -----------------------------------------------------------------------------------------------
async def start(kind: str, store: str, tmp: Path, pinned: bool, grpc: bool = False) -> Server:
    port = free_port()
    grpc_port = free_port() if grpc and kind in ("node", "sdk-a2a", "floor", "floor-sync") else None
    command = [sys.executable, str(SERVERS), kind, store, str(port)]
    if store == "sqlite":
        command.append(str(tmp / f"{kind}-{port}.db"))
    if pinned:
        command = ["taskset", "-c", str(SERVER_CORE), *command]
    log_path = tmp / f"{kind}-{store}-{port}.log"
    with log_path.open("wb") as log:
        env = {**os.environ, "GRPC_PORT": str(grpc_port)} if grpc_port else None
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=log, stderr=log, env=env)
    return Server(kind, store, port, process, log_path, grpc_port)


async def wait_ready(server: Server, limit_s: float = 60.0) -> None:
    """Any HTTP answer means the server listens (the SDK's MCP app answers 404 for the card: fine)."""
    limit = time.monotonic() + limit_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < limit:
            if server.process.returncode is not None:
                raise RuntimeError(f"{server.kind} [{server.store}] exited at start:\n{server.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(server.url + "/.well-known/agent-card.json") as response:
                    await response.read()
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.kind} [{server.store}] did not start in {limit_s:.0f} s:\n{server.log_tail()}")


async def stop(server: Server) -> None:
    if server.process.returncode is None:
        server.process.terminate()
        try:
            await asyncio.wait_for(server.process.wait(), 15)
        except TimeoutError:
            server.process.kill()
            await server.process.wait()


# ---- the run -----------------------------------------------------------------------------------------------
def summary(samples: list[Sample]) -> dict[str, Any]:
    return {"rps": statistics.median(s.rps for s in samples),
            "p50_ms": statistics.median(s.p50_ms for s in samples),
            "p99_ms": statistics.median(s.p99_ms for s in samples),
            "server_cpu": statistics.median(s.server_cpu for s in samples),
            "server_cpu_ms_per_request": statistics.median(s.server_cpu_ms_per_request for s in samples),
            "client_cpu": statistics.median(s.client_cpu for s in samples),
            "client_cpu_ms_per_request": statistics.median(s.client_cpu_ms_per_request for s in samples),
            "requests": sum(s.ok for s in samples), "errors": sum(s.errors for s in samples),
            "first_error": next((s.first_error for s in samples if s.first_error), None),
            "rounds": [asdict(s) for s in samples]}


def met(case: Case, mine: dict[str, Any], sdk: dict[str, Any], ratio: float) -> bool:
    """The case's goal: the req/s ratio, no errors, and for MCP under load a p99 no worse than the SDK's."""
    tail_ok = case.family != "mcp" or case.concurrency == 1 or mine["p99_ms"] <= sdk["p99_ms"]
    return ratio >= case.goal and not mine["errors"] and tail_ok


async def run(rounds: int, requests: int, seconds: float, pinned: bool, bindings: tuple[str, ...],
              only: str | None = None) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="guildnet-bench-node-"))
    servers: list[Server] = []
    our_kind = "node-signed" if CALLER is not None else "node"
    try:
        kinds = ((our_kind, "memory"), (our_kind, "sqlite"), ("sdk-a2a", "memory"), ("sdk-a2a", "sqlite"),
                 ("sdk-mcp", "memory"), ("floor", "memory"), ("floor-sync", "memory"))
        wanted = {"a2a": {0, 1, 2, 3, 5, 6}, "mcp": {0, 4, 5}}.get(only or "", set(range(len(kinds))))
        if "grpc" not in bindings:
            wanted.discard(6)
        started = {index: await start(*kinds[index], tmp, pinned, grpc="grpc" in bindings)
                   for index in sorted(wanted)}
        servers.extend(started.values())
        await asyncio.gather(*(wait_ready(s) for s in servers))
        node_mem, node_sql, sdk_mem, sdk_sql, sdk_mcp, floor, floor_sync = (started.get(i) for i in range(len(kinds)))
        assert floor is not None and node_mem is not None
        pairs = {("a2a", "memory"): (node_mem, sdk_mem), ("a2a", "sqlite"): (node_sql, sdk_sql),
                 ("mcp", "-"): (node_mem, sdk_mcp)}
        all_cases = [case for case in cases(bindings) if only is None or case.family == only]
        floor_cases = [Case("floor", "-", op, 1, 0.0, binding) for binding in ("jsonrpc", "grpc")
                       if binding == "jsonrpc" or binding in bindings for op in ("send", "stream")]
        for round_no in range(rounds):
            for case in floor_cases:
                floor.samples.setdefault(case, []).append(await measure(floor, case, requests, seconds))
                if floor_sync is not None and case.binding == "grpc":
                    floor_sync.samples.setdefault(case, []).append(await measure(floor_sync, case, requests, seconds))
            for index, case in enumerate(all_cases):
                ours, theirs = cast(tuple[Server, Server], pairs[(case.family, case.store)])
                order = (ours, theirs) if (round_no + index) % 2 == 0 else (theirs, ours)
                for server in order:
                    sample = await measure(server, case, requests, seconds)
                    if server.process.returncode is not None:
                        raise RuntimeError(f"{server.kind} [{server.store}] died:\n{server.log_tail()}")
                    server.samples.setdefault(case, []).append(sample)
                    print(f"round {round_no + 1}/{rounds}  {case.name:<36} {server.kind:<8}"
                          f"{sample.rps:>9.1f} req/s  p50 {sample.p50_ms:>8.2f} ms  p99 {sample.p99_ms:>8.2f} ms"
                          f"  cpu srv {sample.server_cpu:.2f} cli {sample.client_cpu:.2f}"
                          + (f"  errors {sample.errors}" if sample.errors else ""), file=sys.stderr, flush=True)
        rows = []
        for case in all_cases:
            ours, theirs = cast(tuple[Server, Server], pairs[(case.family, case.store)])
            mine, sdk = summary(ours.samples[case]), summary(theirs.samples[case])
            ratio = mine["rps"] / sdk["rps"] if sdk["rps"] else math.inf
            # the two servers ran back to back in each round: the spread of these shows the machine's noise
            paired = [round(o.rps / t.rps, 2) if t.rps else math.inf
                      for o, t in zip(ours.samples[case], theirs.samples[case], strict=True)]
            rows.append({"case": case.name, **asdict(case), "ours": mine, "sdk": sdk, "ratio": round(ratio, 2),
                         "round_ratios": paired, "met": met(case, mine, sdk, ratio)})
        rows += [{"case": f"floor: {case.name}", **asdict(case), "floor": summary(floor.samples[case])}
                 for case in floor_cases]
        if floor_sync is not None:
            rows += [{"case": f"floor-sync: {case.name}", **asdict(case), "floor": summary(floor_sync.samples[case])}
                     for case in floor_cases if case.binding == "grpc"]
        return rows
    finally:
        await asyncio.gather(*(stop(s) for s in servers), return_exceptions=True)
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'case':<36}{'ours req/s':>11}{'p50/p99 ms':>17}{'SDK req/s':>11}{'p50/p99 ms':>18}"
          f"{'ratio':>7}{'rounds':>12}{'goal':>6}  met  {'cpu ours/SDK':>12}{'cpu ms/req':>14}{'client ms/req':>15}"
          f"{'errors':>7}")
    for r in rows:
        if r["family"] == "floor":
            continue
        ours, sdk = r["ours"], r["sdk"]
        spread = f"{min(r['round_ratios']):.1f}-{max(r['round_ratios']):.1f}"
        print(f"{r['case']:<36}{ours['rps']:>11.1f}{ours['p50_ms']:>9.2f}/{ours['p99_ms']:<7.2f}"
              f"{sdk['rps']:>11.1f}{sdk['p50_ms']:>9.2f}/{sdk['p99_ms']:<8.2f}{r['ratio']:>6.2f}x"
              f"{spread:>12}{r['goal']:>5.1f}x  {'yes' if r['met'] else 'NO ':<3}  "
              f"{ours['server_cpu']:>5.2f}/{sdk['server_cpu']:<6.2f}"
              f"{ours['server_cpu_ms_per_request']:>7.2f}/{sdk['server_cpu_ms_per_request']:<6.2f}"
              f"{ours['client_cpu_ms_per_request']:>8.2f}/{sdk['client_cpu_ms_per_request']:<6.2f}"
              f"{ours['errors'] + sdk['errors']:>7}")
    floors = [r for r in rows if r["family"] == "floor"]
    sdk_rps = {(r["binding"], r["op"]): r["sdk"]["rps"] for r in rows
               if r["family"] == "a2a" and r["store"] == "memory" and r["concurrency"] == 1}
    print("\nfloor at c=1, canned replies from a bare aiohttp handler, for gRPC a bare grpc.aio one and (floor-sync) "
          "grpcio's synchronous server (the client and loopback alone; x the SDK's memory c=1 req/s, server CPU):")
    for r in floors:
        sdk = sdk_rps.get((r["binding"], r["op"]))
        times = f" ({r['floor']['rps'] / sdk:.2f}x SDK)" if sdk else ""
        print(f"  {r['case'][:-4]:<46}{r['floor']['rps']:>8.0f} req/s{times:<14} p50 {r['floor']['p50_ms']:.2f} ms"
              f"  cpu {r['floor']['server_cpu_ms_per_request']:.2f} ms/req")
    rows = [r for r in rows if r["family"] != "floor"]
    met_count = sum(r["met"] for r in rows)
    print(f"goals met: {met_count}/{len(rows)} (A2A >= 3x the SDK's req/s; MCP >= 1.5x, and at c=32 p99 <= the SDK's;"
          " ratio of the medians over rounds; 'rounds' is the range of the per-round ratios)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 round, at most 300 requests or 3 s per case; no JSON unless --out is given")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, --quick 1)")
    parser.add_argument("--requests", type=int, help="request cap per case and server (default 3000, --quick 300)")
    parser.add_argument("--seconds", type=float, help="time cap per case and server (default 4, --quick 3)")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/node.json; none with --quick)")
    parser.add_argument("--signed", action="store_true",
                        help="our node serves signed callers only and every request carries a caller token")
    parser.add_argument("--bindings", default="jsonrpc,rest,grpc",
                        help="A2A bindings to measure, comma-separated (default all; --signed: jsonrpc only)")
    parser.add_argument("--only", choices=("a2a", "mcp"), help="run one protocol's cases only")
    args = parser.parse_args()
    bindings = tuple(b for b in args.bindings.split(",") if b)
    if args.signed:
        bindings = ("jsonrpc",)
    if not bindings or set(bindings) - {"jsonrpc", "rest", "grpc"}:
        parser.error("--bindings takes jsonrpc, rest and grpc")
    global CALLER
    if args.signed:
        CALLER = SigningKey.generate()
    rounds = args.rounds or (1 if args.quick else 3)
    requests = args.requests or (300 if args.quick else 3000)
    seconds = args.seconds or (3.0 if args.quick else 4.0)
    default = f"node_{args.only}" if args.only else "node"
    out = args.out or (None if args.quick else RESULTS / f"{default}{'_signed' if args.signed else ''}.json")
    pinned = hasattr(os, "sched_setaffinity") and shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1
    if pinned:
        os.sched_setaffinity(0, {CLIENT_CORE})  # before the event loop, so every thread inherits it
    started = time.monotonic()
    rows = asyncio.run(run(rounds, requests, seconds, pinned, bindings, args.only))
    print_table(rows)
    placement = "pinned to core 0, client on core 1" if pinned else "NOT pinned (no taskset or one core)"
    print(f"total {time.monotonic() - started:.0f} s; servers {placement}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "pinned": pinned, "signed": args.signed, "bindings": list(bindings),
            "rounds": rounds, "requests_cap": requests, "seconds_cap": seconds,
            "versions": versions(), "rows": rows}, indent=2) + "\n")
        print(f"wrote {out}")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("guildnet", "aiohttp", "a2a-sdk", "mcp", "uvicorn", "starlette", "sqlalchemy", "aiosqlite", "grpcio"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


if __name__ == "__main__":
    main()
