"""Registry under load: many concurrent ``/v1/watch`` WebSockets while signed writes continue at a steady rate.

A ``guildnet registry serve`` process (SQLite by default, or a fresh PostgreSQL database) gets ``--watchers``
WebSocket watchers, all opened before the first write, then ``--rate`` signed writes per second for
``--seconds`` seconds: first registrations (TTL 5 s, so agents go stale), heartbeats of a random agent (a
change when they bring a stale agent back) and revocations of the oldest, in a 3:1:1 mix. The registry's
liveness sweeper adds its own ``live: false`` changes. Afterwards one more watcher replays the feed from the table
(``?since=`` the start): that is the reference, and every watcher must have received exactly that sequence,
in order, no gap, no duplicate.

Figures: changes in the feed, received per watcher (min/max), gaps and reorderings (must be 0), the registry
process's RSS (before watchers, with watchers idle, peak during the writes, after the watchers left), the
write round trip (send to ack) and the notify latency: for every change made by a write, time from the
write's ack at the writer to its receipt at each watcher (negative when a watcher heard of it before the
writer had its ack). The registry runs pinned to core 0, this load generator on core 1: with a thousand
watchers the generator's own event loop is part of the latency it measures (its CPU use is reported).

    python bench/load_registry.py                      # 1,000 watchers, 20 s at 25 writes/s, SQLite
    python bench/load_registry.py --db postgresql      # the same on a fresh database at 127.0.0.1:5432

Prints a table and writes bench/results/load_registry[-postgresql].json. tests/test_load.py runs
:func:`run_load` with 200 watchers for a few seconds as a CI check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from measure import cpu_seconds, percentile, rss_mb
from processes import free_port, guildnet_process

from guildnet.protocols import signed_write
from guildnet.protocols.agentfacts import endorse
from guildnet.protocols.keys import SigningKey

RESULTS = Path(__file__).with_name("results")
PG_ADMIN = os.environ.get("GUILDNET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
JOSE = {"Content-Type": "application/jose"}


@dataclass
class Registry:
    url: str
    pid: int


@contextlib.asynccontextmanager
async def start_registry(db_url: str, key_path: str, *, pinned: bool = False) -> AsyncIterator[Registry]:
    """``guildnet registry serve`` as its own process on a free 127.0.0.1 port, until the block ends."""
    port = free_port()
    # every watcher connects from 127.0.0.1: lift the per-address cap past the benchmark's watchers
    args = ["registry", "serve", "--port", str(port), "--db", db_url, "--key", key_path, "--max-watchers-per-ip",
            "100000"]
    async with guildnet_process(args, port, Path(key_path).with_suffix(".log"), pinned=pinned) as process:
        yield Registry(f"http://127.0.0.1:{port}", process.pid)


@contextlib.asynccontextmanager
async def fresh_database(kind: str, tmp: Path) -> AsyncIterator[str]:
    """A database URL for ``guildnet registry serve --db``: a new SQLite file, or a new PostgreSQL database
    created from ``GUILDNET_BENCH_PG`` and dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/registry.db"
        return
    import asyncpg

    name = f"guildnet_load_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# ---- watchers ----------------------------------------------------------------------------------------------
@dataclass
class Watcher:
    """One WebSocket on /v1/watch: every change it received, with the receipt time."""

    seqs: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    closed_early: str | None = None
    until: float = math.inf
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a change with seq >= ``until`` arrived, or the socket closed."""

    def wait_for(self, seq: int) -> None:
        self.until = seq
        if self.seqs and self.seqs[-1] >= seq:
            self.reached.set()

    async def follow(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    self.closed_early = f"{message.type.name}: {message.data!r}"
                    return
                seq = int(json.loads(message.data)["seq"])
                self.seqs.append(seq)
                self.times.append(time.perf_counter())
                if seq >= self.until:
                    self.reached.set()
            self.closed_early = f"closed by the server ({ws.close_code})"
        finally:
            self.reached.set()


async def feed_position(session: aiohttp.ClientSession, url: str) -> int:
    """The registry's change-feed position (a search page reports it)."""
    async with session.get(url + "/v1/agents", params={"limit": "1"}) as response:
        return int((await response.json())["seq"])


async def watchers_become(session: aiohttp.ClientSession, url: str, wanted: Callable[[int], bool],
                          within: float = 30.0) -> None:
    """Poll /healthz until the registry's watcher count satisfies ``wanted``."""
    async with asyncio.timeout(within):
        while True:
            async with session.get(url + "/healthz") as response:
                if wanted(int((await response.json())["watchers"])):
                    return
            await asyncio.sleep(0.1)


async def replay(session: aiohttp.ClientSession, url: str, since: int, until: int, within: float) -> list[int]:
    """The feed as the table holds it, ``since`` < seq <= ``until``: a fresh watcher catching up."""
    seqs: list[int] = []
    async with asyncio.timeout(within), session.ws_connect(f"{url}/v1/watch?since={since}") as ws:
        while not seqs or seqs[-1] < until:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"replay watcher closed: {message.type.name}")
            seqs.append(int(json.loads(message.data)["seq"]))
    return [s for s in seqs if s <= until]


# ---- writes ------------------------------------------------------------------------------------------------
@dataclass
class Writes:
    sent: dict[str, int] = field(default_factory=lambda: {"register": 0, "heartbeat": 0, "revoke": 0})
    errors: list[str] = field(default_factory=list)
    acked_at: dict[int, float] = field(default_factory=dict)  # seq made by a write -> ack time at the writer
    round_trips: list[float] = field(default_factory=list)


class Writer:
    """Signed writes at a steady rate; each agent has at most one write in flight, so none is refused."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.org = SigningKey.generate()
        self.writes = Writes()
        self.pool: deque[tuple[SigningKey, str]] = deque()  # registered, not revoked, not busy; oldest first
        self.counter = itertools.count()
        self.rng = random.Random(7)

    def registration(self) -> tuple[SigningKey, str]:
        key = SigningKey.generate()
        n = next(self.counter)
        facts = {"id": key.did, "name": f"load-{n}", "version": 1, "ttl_seconds": 5,
                 "description": f"load agent {n}",
                 "organisation": {"id": self.org.did, "name": "load"},
                 "endpoints": {"a2a": f"http://127.0.0.1:9/agents/load-{n}/a2a"},
                 "skills": [{"id": "echo", "name": "Echo", "tags": ["load"]}],
                 "model": {"family": "none", "cost_per_1k_input": 0.0, "cost_per_1k_output": 0.0}}
        return key, signed_write.make(key, {"action": "register", "facts": endorse(self.org, facts)})

    async def _post(self, kind: str, path: str, token: str) -> bool:
        self.writes.sent[kind] += 1
        started = time.perf_counter()
        try:
            async with self.session.post(self.url + path, data=token, headers=JOSE) as response:
                body = await response.json(content_type=None)
                acked = time.perf_counter()
                if response.status >= 300:
                    self.writes.errors.append(f"{kind}: {response.status} {body}")
                    return False
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.writes.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return False
        self.writes.round_trips.append(acked - started)
        if int(body.get("seq") or 0) > 0:
            self.writes.acked_at[int(body["seq"])] = acked
        return True

    async def register(self) -> None:
        key, token = self.registration()
        if await self._post("register", "/v1/agents", token):
            self.pool.append((key, key.did))

    async def heartbeat(self) -> None:
        if not self.pool:
            return
        # a random agent: most have gone stale (TTL 5 s) since their last write, so this brings one back live
        index = self.rng.randrange(len(self.pool))
        key, did = self.pool[index]
        del self.pool[index]
        token = signed_write.make(key, {"action": "heartbeat", "agent": did})
        if await self._post("heartbeat", f"/v1/agents/{did}/heartbeat", token):
            self.pool.append((key, did))

    async def revoke(self) -> None:
        if not self.pool:
            return
        key, did = self.pool.popleft()
        await self._post("revoke", f"/v1/agents/{did}/revoke", signed_write.make(key, {"action": "revoke",
                                                                                       "agent": did}))

    async def run(self, seconds: float, rate: float) -> None:
        """Start one write every 1/rate seconds (each in its own task, so a slow ack does not lower the rate)."""
        plan = (self.register, self.register, self.heartbeat, self.register, self.revoke)
        tasks: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        for i in range(int(seconds * rate)):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(plan[i % len(plan)]()))
        await asyncio.gather(*tasks)


# ---- the run -----------------------------------------------------------------------------------------------
async def run_load(registry: Registry, *, watchers: int, seconds: float, rate: float,
                   drain_timeout: float = 60.0) -> dict[str, Any]:
    """Open ``watchers`` WebSockets, write for ``seconds`` at ``rate``/s, wait until every watcher has the
    whole feed, and return the figures (``ok`` is True when every watcher got exactly the reference feed)."""
    url, pid = registry.url, registry.pid
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=None)
    rss: dict[str, float] = {"before_watchers": rss_mb(pid)}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = await feed_position(session, url)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        followers: list[asyncio.Task[None]] = []
        crowd = [Watcher() for _ in range(watchers)]
        connect_started = time.perf_counter()
        for batch in range(0, watchers, 100):  # in batches: the server's listen backlog is 128
            opened = await asyncio.gather(*(session.ws_connect(f"{url}/v1/watch?since={start}", heartbeat=None)
                                            for _ in crowd[batch:batch + 100]))
            sockets += opened
            followers += [asyncio.create_task(w.follow(ws)) for w, ws in zip(crowd[batch:], opened, strict=False)]
        connect_seconds = time.perf_counter() - connect_started
        await watchers_become(session, url, lambda n: n >= watchers)
        await asyncio.sleep(1.0)
        rss["watchers_idle"] = rss_mb(pid)

        peak = 0.0
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss_mb(pid))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        writer = Writer(session, url)
        cpu_server, cpu_client, wall = cpu_seconds(pid), time.process_time(), time.perf_counter()
        await writer.run(seconds, rate)
        await asyncio.sleep(0.5)  # let a pending liveness sweep land; later changes are outside the check
        end = await feed_position(session, url)
        for w in crowd:
            w.wait_for(end)
        async with asyncio.timeout(drain_timeout):
            await asyncio.gather(*(w.reached.wait() for w in crowd))
        elapsed = time.perf_counter() - wall
        cpu_server, cpu_client = cpu_seconds(pid) - cpu_server, time.process_time() - cpu_client
        sampling = False
        await sampler
        rss["peak_during_writes"] = max(peak, rss_mb(pid))
        reference = await replay(session, url, start, end, drain_timeout)
        closed_early = [w.closed_early for w in crowd if w.closed_early]

        for ws in sockets:
            await ws.close()
        await asyncio.gather(*followers, return_exceptions=True)
        await watchers_become(session, url, lambda n: n == 0)
        await asyncio.sleep(1.0)
        rss["after_watchers_left"] = rss_mb(pid)

    # every watcher against the reference
    received = [sum(1 for s in w.seqs if s <= end) for w in crowd]
    expected = set(reference)
    incomplete = wrong_order = duplicated = 0
    for w in crowd:
        got = [s for s in w.seqs if s <= end]
        if got == reference:
            continue
        if set(got) != expected:
            incomplete += 1
        if any(b <= a for a, b in itertools.pairwise(got)):
            wrong_order += 1
        if len(got) != len(set(got)):
            duplicated += 1
    acked = writer.writes.acked_at
    notify: list[float] = []
    fanout: dict[int, float] = {}
    for w in crowd:
        for seq, at in zip(w.seqs, w.times, strict=True):
            if seq in acked:
                delay = at - acked[seq]
                notify.append(delay)
                fanout[seq] = max(fanout.get(seq, -math.inf), delay)
    notify.sort()
    complete = sorted(fanout.values())
    trips = sorted(writer.writes.round_trips)
    kinds_missing = sorted(set(acked) - expected)
    ok = (not incomplete and not wrong_order and not duplicated and not kinds_missing
          and not closed_early and not writer.writes.errors)
    return {
        "ok": ok, "watchers": watchers, "seconds": seconds, "rate": rate,
        "writes": writer.writes.sent, "write_errors": len(writer.writes.errors),
        "first_write_error": writer.writes.errors[0] if writer.writes.errors else None,
        "changes": len(reference), "changes_from_writes": len(acked),
        "changes_from_sweeper": len(reference) - len([s for s in reference if s in acked]),
        "received_min": min(received, default=0), "received_max": max(received, default=0),
        "deliveries": sum(received),
        "watchers_incomplete": incomplete, "watchers_out_of_order": wrong_order, "watchers_duplicates": duplicated,
        "acked_changes_missing_from_feed": len(kinds_missing),
        "watchers_closed_early": len(closed_early),
        "first_early_close": closed_early[0] if closed_early else None,
        "connect_seconds": round(connect_seconds, 2),
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "write_ms": {"p50": round(percentile(trips, 50) * 1000, 2), "p99": round(percentile(trips, 99) * 1000, 2)},
        "notify_ms": {"p50": round(percentile(notify, 50) * 1000, 2), "p99": round(percentile(notify, 99) * 1000, 2),
                      "max": round(notify[-1] * 1000, 2) if notify else 0.0},
        "fanout_complete_ms": {"p50": round(percentile(complete, 50) * 1000, 2),
                               "p99": round(percentile(complete, 99) * 1000, 2)},
        "server_cpu": round(cpu_server / elapsed, 2), "client_cpu": round(cpu_client / elapsed, 2),
    }


def print_table(backend: str, r: dict[str, Any]) -> None:
    rows = [
        ("back end", backend),
        ("watchers (connected in)", f"{r['watchers']} ({r['connect_seconds']} s)"),
        ("writes sent (reg/hb/revoke), errors",
         f"{r['writes']['register']}/{r['writes']['heartbeat']}/{r['writes']['revoke']}, {r['write_errors']}"),
        ("changes in the feed (from writes / sweeper)",
         f"{r['changes']} ({r['changes_from_writes']} / {r['changes_from_sweeper']})"),
        ("received per watcher min / max", f"{r['received_min']} / {r['received_max']}"),
        ("deliveries", f"{r['deliveries']:,}"),
        ("watchers with gaps / reordered / duplicates",
         f"{r['watchers_incomplete']} / {r['watchers_out_of_order']} / {r['watchers_duplicates']}"),
        ("registry RSS MiB: before / idle watchers / peak / after",
         " / ".join(f"{v:.1f}" for v in r["rss_mb"].values())),
        ("write round trip p50 / p99 ms", f"{r['write_ms']['p50']} / {r['write_ms']['p99']}"),
        ("ack -> watcher p50 / p99 / max ms",
         f"{r['notify_ms']['p50']} / {r['notify_ms']['p99']} / {r['notify_ms']['max']}"),
        ("ack -> last watcher p50 / p99 ms", f"{r['fanout_complete_ms']['p50']} / {r['fanout_complete_ms']['p99']}"),
        ("CPU registry / load generator", f"{r['server_cpu']} / {r['client_cpu']}"),
        ("every watcher got every change in order", "yes" if r["ok"] else "NO"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="guildnet-load-registry-"))
    pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1
    try:
        async with fresh_database(args.db, tmp) as db_url, \
                start_registry(db_url, str(tmp / "registry.key"), pinned=pinned) as registry:
            result = await run_load(registry, watchers=args.watchers, seconds=args.seconds, rate=args.rate)
            result["pinned"] = pinned
            return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=25.0, help="signed writes per second")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/load_registry[-postgresql].json)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    result = asyncio.run(main_async(args))
    print_table(args.db, result)
    out = args.out or RESULTS / ("load_registry.json" if args.db == "sqlite" else f"load_registry-{args.db}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                               "cpus": os.cpu_count(), "backend": args.db, **result}, indent=2) + "\n")
    print(f"wrote {out}")
    if not result["ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
