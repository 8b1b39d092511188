"""Load checks, small enough for CI: the benchmarks in bench/load_registry.py and bench/load_node.py at a
fraction of their size, asserting what must hold at any size (full in-order delivery to every watcher,
bounded registry memory, zero errors, a hung agent stalling nobody else)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from registry_support import key_path_for

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_module(name: str) -> ModuleType:
    """Import ``bench/NAME.py`` (a script directory, not a package) so the test runs the benchmark's own code."""
    module_name = f"guildnet_bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))  # the benchmarks share bench/measure.py, imported as a script's neighbour
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
async def test_every_watcher_gets_every_change_in_order_under_write_load(db_url: str) -> None:
    load = bench_module("load_registry")
    async with load.start_registry(db_url, key_path_for(db_url)) as registry:
        result = await load.run_load(registry, watchers=200, seconds=4.0, rate=25.0, drain_timeout=30.0)
    assert result["write_errors"] == 0, result["first_write_error"]
    assert result["changes"] >= 60  # 60 registrations and 20 revocations at least reach the feed
    assert result["received_min"] == result["received_max"] == result["changes"]
    assert result["watchers_incomplete"] == result["watchers_out_of_order"] == result["watchers_duplicates"] == 0
    assert result["acked_changes_missing_from_feed"] == 0 and result["watchers_closed_early"] == 0
    assert result["ok"]
    rss = result["rss_mb"]
    # measured: ~5 MiB for 200 watchers, ~25 MiB for 1,000; far more means per-watcher state leaks or queues grow
    assert rss["peak_during_writes"] - rss["before_watchers"] < 64, rss
    assert rss["after_watchers_left"] - rss["before_watchers"] < 64, rss


@pytest.mark.slow
async def test_node_serves_concurrent_calls_and_streams_and_a_hung_agent_stalls_nobody(tmp_path: Path) -> None:
    load = bench_module("load_node")
    loop = asyncio.get_running_loop()
    async with load.start_node(tmp_path) as url:
        result = await load.run_all(url, concurrency=100, requests=300, streams=20, stream_requests=100, stuck=20,
                                    probe_requests=200)
        stopping = loop.time()
    # SIGTERM stops it at once, though blocking calls to the hung agent were left open: shutdown stops the runs
    # instead of waiting out aiohttp's shutdown timeout (start_node kills it after 20 s)
    assert loop.time() - stopping < 5
    rows = {r["scenario"]: r for r in result["rows"]}
    for row in rows.values():
        assert row["errors"] == 0, row
        assert row["ok"] > 0
    assert rows["SendMessage"]["ok"] == 300 and rows["SendStreamingMessage"]["ok"] == 100
    stuck = result["stuck"]
    # the hung calls were really hanging all through the echo run, and CancelTask still works on them
    assert stuck["still_hanging_after"] == stuck["hanging"] == 20
    assert stuck["cancelled"] == 10 and stuck["cancel_errors"] == 0
    beside, baseline = rows["echo beside stuck"], rows["echo baseline"]
    assert beside["ok"] == 200
    # a stall would show as calls waiting on the hung handler: seconds, not the baseline's milliseconds
    assert beside["p99_ms"] < max(1000.0, 5 * baseline["p99_ms"]), (beside, baseline)
