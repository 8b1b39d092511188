"""The node's A2A task store on SQLite and PostgreSQL: durability across restarts, recovery, paging."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from a2a_support import echo_agent, serve_a2a, slow_agent
from sqlalchemy import exc as sa_exc

from guildnet.node.a2a.client import A2AClient
from guildnet.node.a2a.store import RESTART_REASON, SqlTaskStore
from guildnet.protocols import a2a
from guildnet.protocols.a2a import TaskRecord
from guildnet.protocols.keys import SigningKey

TCK_SERVER = Path(__file__).parent / "conformance" / "a2a_tck_server.py"


def _record(state: str, context: str = "c", updated: float = 1.0) -> TaskRecord:
    task = a2a.new_task(a2a.new_id(), context, [a2a.skill_request({"text": "x"})], state)
    return TaskRecord("echo", task, "echo", updated, updated)


async def test_finished_task_is_served_after_restart(db_url: str) -> None:
    keys = {"echo": SigningKey.generate(), "slow": SigningKey.generate()}
    agents = [echo_agent(), slow_agent()]
    async with serve_a2a(SqlTaskStore(db_url), agents, keys=keys) as (base, _), A2AClient() as client:
        done = (await client.send_message(f"{base}/agents/echo/a2a", a2a.skill_request({"text": "keep me"})))["task"]
        waiting = (await client.send_message(f"{base}/agents/slow/a2a", a2a.skill_request({"seconds": 0}, "wait"),
                                             return_immediately=True))["task"]
        await asyncio.sleep(0.05)
    async with serve_a2a(SqlTaskStore(db_url), agents, keys=keys) as (base, _), A2AClient() as client:
        again = await client.get_task(f"{base}/agents/echo/a2a", done["id"])
        assert again["status"]["state"] == a2a.COMPLETED
        assert a2a.artifact_output(again) == {"text": "keep me"}
        assert again["history"][0]["parts"] == [{"data": {"text": "keep me"}}]
        assert (await client.get_task(f"{base}/agents/slow/a2a", waiting["id"]))["status"]["state"] == a2a.COMPLETED


async def test_task_left_running_by_a_killed_process_is_failed_on_restart(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/node.db"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(sys.executable, str(TCK_SERVER), str(port), "--db", db,
                                                stdout=asyncio.subprocess.PIPE,
                                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).startswith(b"READY")
        async with A2AClient() as client:
            message = a2a.new_message(a2a.ROLE_USER, [a2a.text_part("long")],
                                      message_id=f"test-resubscribe-message-id-{a2a.new_id()}")
            started = await client.send_message(f"http://127.0.0.1:{port}/", message, return_immediately=True)
        task_id = started["task"]["id"]
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown code runs: the row stays SUBMITTED/WORKING
        await proc.wait()

    store = SqlTaskStore(db)
    assert await store.open() == 1
    record = await store.get("tck", task_id)
    assert record is not None and record.state == a2a.FAILED
    assert record.task["status"]["message"]["parts"] == [{"text": RESTART_REASON}]
    assert await store.open() == 0  # recovery happens once
    await store.close()


async def test_concurrent_writes_share_commits_and_failures_reach_every_waiter(db_url: str) -> None:
    store = SqlTaskStore(db_url)
    await store.open()
    try:
        records = [_record(a2a.COMPLETED, updated=float(i)) for i in range(40)]
        await asyncio.gather(*(store.put(r, new=True) for r in records))
        page = await store.list("echo", a2a.ListQuery(page_size=100), owner=None)
        assert page.total_size == 40 and [r.id for r in page.records] == [r.id for r in reversed(records)]

        records[0].task["status"] = a2a.new_status(a2a.CANCELED)
        fresh = _record(a2a.WORKING)
        results = await asyncio.gather(store.put(records[1], new=True), store.put(fresh, new=True),
                                       return_exceptions=True)
        assert all(isinstance(r, sa_exc.IntegrityError) for r in results)  # one transaction, all or nothing
        assert await store.get("echo", fresh.id) is None

        await store.put(records[0], new=False)
        got = await store.get("echo", records[0].id)
        assert got is not None and got.state == a2a.CANCELED and got.context_id == "c"
        assert await store.get("other-agent", records[0].id) is None
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sql", "memory"])
async def test_list_filters_and_pages(db_url: str, kind: str) -> None:
    from guildnet.node.a2a.store import open_task_store

    store = SqlTaskStore(db_url) if kind == "sql" else open_task_store("memory")
    await store.open()
    try:
        for i in range(7):
            await store.put(_record(a2a.COMPLETED if i % 2 else a2a.INPUT_REQUIRED, "c1" if i < 5 else "c2",
                                    updated=100.0 + i), new=True)
        seen = []
        token = None
        while True:
            page = await store.list("echo", a2a.ListQuery(context_id="c1", page_size=2, page_token=token), owner=None)
            assert page.total_size == 5
            seen += [r.updated for r in page.records]
            token = page.next_page_token or None
            if token is None:
                break
        assert seen == [104.0, 103.0, 102.0, 101.0, 100.0]
        done = await store.list("echo", a2a.ListQuery(status=a2a.COMPLETED), owner=None)
        assert sorted(r.updated for r in done.records) == [101.0, 103.0, 105.0]
        from datetime import UTC, datetime
        recent = await store.list("echo", a2a.ListQuery(status_after=datetime.fromtimestamp(105.0, UTC)), owner=None)
        assert [r.updated for r in recent.records] == [106.0, 105.0]
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["memory"])
async def test_in_memory_store_copies_records(url: str) -> None:
    from guildnet.node.a2a.store import open_task_store

    store = open_task_store(url)
    record = _record(a2a.WORKING)
    await store.put(record, new=True)
    record.task["status"] = a2a.new_status(a2a.COMPLETED)  # a later change is not visible until put again
    got = await store.get("echo", record.id)
    assert got is not None and got.state == a2a.WORKING
    got.task["status"] = a2a.new_status(a2a.FAILED)  # nor is a change to what it handed out
    again = await store.get("echo", record.id)
    assert again is not None and again.state == a2a.WORKING


async def test_in_memory_store_keeps_tasks_out_of_the_garbage_collectors_walk() -> None:
    """A stored task is a few objects, not its dozens of dicts and lists: a node holding tens of thousands of
    tasks in memory otherwise paused for hundreds of milliseconds at each full collection."""
    from guildnet.node.a2a.store import open_task_store

    store = open_task_store("memory")
    records = []
    for _ in range(500):
        record = _record(a2a.COMPLETED)
        record.task["artifacts"] = [a2a.new_artifact([{"data": {"text": "hello", "n": [1, 2]}}, {"text": "x"}])]
        records.append(record)
    gc.collect()
    before = len(gc.get_objects())
    for record in records:
        await store.put(record, new=True)
    gc.collect()
    assert len(gc.get_objects()) - before < 2 * len(records)
    got = await store.get("echo", records[0].id)
    assert got is not None and got.task == records[0].task


async def test_in_memory_store_keeps_what_a_database_would_of_values_marshal_does_not_write() -> None:
    from enum import StrEnum

    from guildnet.node.a2a.store import open_task_store

    class Level(StrEnum):
        HIGH = "high"

    store = open_task_store("memory")
    record = _record(a2a.COMPLETED)
    record.task["metadata"] = {"level": Level.HIGH}
    await store.put(record, new=True)
    got = await store.get("echo", record.id)
    assert got is not None and got.task["metadata"] == {"level": "high"}
    assert type(got.task["metadata"]["level"]) is str


@pytest.mark.parametrize("kind", ["sql", "memory"])
async def test_retention_deletes_finished_tasks_only_once_expired(db_url: str, kind: str) -> None:
    """Task bodies are callers' raw inputs and outputs: gone after the retention, unless still running."""
    from guildnet.node.a2a.store import open_task_store

    store = SqlTaskStore(db_url) if kind == "sql" else open_task_store("memory")
    await store.open()
    try:
        old_done, old_failed = _record(a2a.COMPLETED, updated=100.0), _record(a2a.FAILED, updated=150.0)
        old_running, recent = _record(a2a.WORKING, updated=100.0), _record(a2a.COMPLETED, updated=300.0)
        for record in (old_done, old_failed, old_running, recent):
            await store.put(record, new=True)
        assert await store.purge(200.0) == 2
        kept = {r.id for r in (await store.list("echo", a2a.ListQuery(), owner=None)).records}
        assert kept == {old_running.id, recent.id}
        assert await store.get("echo", old_done.id) is None and await store.purge(200.0) == 0
    finally:
        await store.close()
