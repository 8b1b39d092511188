"""Push notifications: webhooks a hostile caller cannot aim at the node's own network, deliveries that outlive a
webhook outage and a ``kill -9`` of the node, one event id per event, and the signature a receiver checks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from a2a_support import LOOPBACK, WebhookReceiver, free_port, serve_a2a

from guildnet.node.a2a.client import A2AClient, Interface
from guildnet.node.a2a.push import PushService
from guildnet.node.a2a.push_store import Delivery, InMemoryPushStore, SqlPushStore, StoredConfig
from guildnet.node.a2a.store import InMemoryTaskStore
from guildnet.node.db import create_engine, migrate
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import a2a
from guildnet.protocols.a2a import push as wire
from guildnet.protocols.a2a import rest
from guildnet.protocols.keys import SigningKey

V1 = {"Content-Type": "application/json", a2a.VERSION_HEADER: "1.0"}
TCK_SERVER = Path(__file__).parent / "conformance" / "a2a_tck_server.py"


async def _rpc(http: aiohttp.ClientSession, url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, data=a2a.request_body(1, method, params), headers=V1) as resp:
        doc: dict[str, Any] = await resp.json()
        return doc


def _echo(text: str, push: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"message": {"messageId": a2a.new_id(), "role": a2a.ROLE_USER,
                                          "parts": [a2a.data_part({"text": text})]}}
    if push is not None:
        params["configuration"] = {"taskPushNotificationConfig": push}
    return params


# ---- on values --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1", "fd00::1"])
def test_private_loopback_and_link_local_addresses_are_refused(address: str) -> None:
    assert wire.refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_are_not(address: str) -> None:
    assert wire.refusal(address) is None


@pytest.mark.parametrize("config", [{"url": "ftp://example.com/x"}, {"url": "http://user:pw@example.com/"},
                                    {"url": "http:///nohost"}, {}, {"url": "https://e.com", "taskId": "other"},
                                    {"url": "https://e.com", "authentication": {"scheme": "Bearer x\r\nHost: y"}},
                                    {"url": "https://e.com", "token": "a\nb"}])
def test_malformed_configs_are_invalid_params(config: dict[str, Any]) -> None:
    with pytest.raises(a2a.A2AError) as refused:
        wire.parse_push_config(config, task_id="t1")
    assert refused.value.code == a2a.INVALID_PARAMS


def test_a_notification_signature_binds_body_url_and_key() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    body = rest.body({"statusUpdate": {"taskId": "t1"}})
    token = wire.sign_notification(key, url="https://r.example/hook", body=body, task_id="t1", event_id="e1")
    claims = wire.verify_notification(token, expected_did=key.did, url="https://r.example/hook", body=body)
    assert (claims["tid"], claims["jti"]) == ("t1", "e1")
    for did, url, signed in ((other.did, "https://r.example/hook", body), (key.did, "https://evil.example/hook", body),
                             (key.did, "https://r.example/hook", body + b" ")):
        with pytest.raises(wire.NotificationRefused):
            wire.verify_notification(token, expected_did=did, url=url, body=signed)
    with pytest.raises(wire.NotificationRefused, match="expired"):
        wire.verify_notification(token, expected_did=key.did, url="https://r.example/hook", body=body,
                                 now=10**10)


def test_rest_routes_follow_the_proto() -> None:
    cases = {("POST", "message:send"): ("SendMessage", {}),
             ("GET", "tasks/t1"): ("GetTask", {"id": "t1"}),
             ("GET", "tasks"): ("ListTasks", {}),
             ("POST", "tasks/t1:cancel"): ("CancelTask", {"id": "t1"}),
             ("GET", "tasks/t1:subscribe"): ("SubscribeToTask", {"id": "t1"}),
             ("POST", "tasks/t1:subscribe"): ("SubscribeToTask", {"id": "t1"}),
             ("POST", "tasks/t1/pushNotificationConfigs"): ("CreateTaskPushNotificationConfig", {"taskId": "t1"}),
             ("GET", "tasks/t1/pushNotificationConfigs"): ("ListTaskPushNotificationConfigs", {"taskId": "t1"}),
             ("GET", "tasks/t1/pushNotificationConfigs/c1"): ("GetTaskPushNotificationConfig",
                                                               {"taskId": "t1", "id": "c1"}),
             ("DELETE", "tasks/t1/pushNotificationConfigs/c1"): ("DeleteTaskPushNotificationConfig",
                                                                  {"taskId": "t1", "id": "c1"}),
             ("GET", "extendedAgentCard"): ("GetExtendedAgentCard", {}),
             ("GET", "acme/tasks/t1"): ("GetTask", {"id": "t1"})}
    for (verb, path), (method, params) in cases.items():
        call = rest.route(verb, path, {}, b"")
        assert (call.method, call.params) == (method, params), (verb, path)
    assert rest.route("GET", "acme/tasks/t1", {}, b"").tenant == "acme"
    listed = rest.route("GET", "tasks", {"status": "working", "includeArtifacts": "true", "pageSize": "5"}, b"")
    assert listed.params == {"status": a2a.WORKING, "includeArtifacts": True, "pageSize": "5"}
    for verb, path, status in (("GET", "message:send", 405), ("DELETE", "tasks/t1", 405), ("GET", "nope", 404),
                               ("GET", "tasks/t1/other", 404)):
        with pytest.raises(rest.NotRouted) as missed:
            rest.route(verb, path, {}, b"")
        assert missed.value.status == status
    with pytest.raises(a2a.A2AError) as bad:
        rest.route("POST", "message:send", {}, b"{not json")
    assert (bad.value.code, bad.value.http_status) == (a2a.PARSE_ERROR, 400)


async def _eventually(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition did not hold in time")


# ---- a node -----------------------------------------------------------------------------------------------------

def _push(keys: dict[str, SigningKey], **kwargs: Any) -> PushService:
    return PushService(InMemoryPushStore(), {n: StaticIdentity(k) for n, k in keys.items()}, **kwargs)


async def test_the_guard_refuses_this_machine_by_default() -> None:
    keys = {"echo": SigningKey.generate(), "slow": SigningKey.generate()}
    push = _push(keys, backoff_base=0.05, max_attempts=2)
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with serve_a2a(InMemoryTaskStore(), keys=keys, push=push) as (base, _), aiohttp.ClientSession() as http:
            url = f"{base}/agents/echo/a2a"
            task = (await _rpc(http, url, "SendMessage", _echo("hi")))["result"]["task"]
            for target in (receiver.url, "http://10.0.0.7/hook", "http://169.254.169.254/latest/meta-data",
                           "http://[::1]:9/hook", "http://0.0.0.0:9/hook"):
                refused = await _rpc(http, url, "CreateTaskPushNotificationConfig",
                                     {"taskId": task["id"], "url": target})
                assert refused["error"]["code"] == a2a.INVALID_PARAMS, target
            listed = await _rpc(http, url, "ListTaskPushNotificationConfigs", {"taskId": task["id"]})
            assert listed["result"]["configs"] == []  # nothing stored by a refused request
            refused = await _rpc(http, url, "SendMessage", _echo("hi", {"url": receiver.url}))
            assert refused["error"]["code"] == a2a.INVALID_PARAMS
            # A name is checked where it resolves, at delivery: localhost is this machine, so nothing is posted.
            sent = await _rpc(http, url, "SendMessage",
                              _echo("hi", {"url": f"http://localhost:{receiver.port}/hook"}))
            assert sent["result"]["task"]["status"]["state"] == a2a.COMPLETED
            await _eventually(lambda: push.dropped >= 3)  # task, artifact, status: each given up after 2 attempts
            assert receiver.received == []
    finally:
        await receiver.stop()


async def test_a_webhook_that_is_down_gets_each_event_once_it_is_back() -> None:
    keys = {"echo": SigningKey.generate(), "slow": SigningKey.generate()}
    push = _push(keys, allow_networks=LOOPBACK, backoff_base=0.2, backoff_cap=0.5)
    receiver = WebhookReceiver(fail_first=True)  # not listening yet; then it loses its first reply to each event
    async with serve_a2a(InMemoryTaskStore(), keys=keys, push=push) as (base, _), aiohttp.ClientSession() as http:
        sent = await _rpc(http, f"{base}/agents/echo/a2a", "SendMessage", _echo("hi", {"url": receiver.url}))
        assert sent["result"]["task"]["status"]["state"] == a2a.COMPLETED
        await asyncio.sleep(0.5)  # attempts meet a closed port
        assert push.delivered == 0 and push.dropped == 0
        await receiver.start()
        try:
            await _eventually(lambda: push.delivered >= 3)
        finally:
            await receiver.stop()
    events = receiver.events()
    kinds = sorted(next(iter(json.loads(body))) for body in events.values())
    assert kinds == ["artifactUpdate", "statusUpdate", "task"]
    # Every event came twice (the first reply was lost), with one id and the same body: a receiver that drops a
    # repeated id acts on each event once.
    assert len(receiver.received) == 2 * len(events)
    for event_id, body in events.items():
        assert [b for h, b in receiver.received if h[wire.EVENT_ID_HEADER] == event_id] == [body, body]


@pytest.mark.slow
async def test_a_delivery_survives_kill_9_of_the_node(tmp_path: Path) -> None:
    """The node completes a task while the webhook is down, is killed with SIGKILL, and delivers after its
    restart on the same database."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"
    receiver = WebhookReceiver()

    async def start() -> tuple[asyncio.subprocess.Process, str]:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(sys.executable, str(TCK_SERVER), str(port), "--db", db,
                                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                                    cwd=TCK_SERVER.parent)
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        assert line.startswith(b"READY"), line
        return proc, f"http://127.0.0.1:{port}/"

    proc, url = await start()
    try:
        async with aiohttp.ClientSession() as http:
            params = {"message": {"messageId": "tck-complete-task-kill9", "role": a2a.ROLE_USER,
                                  "parts": [a2a.text_part("go")]},
                      "configuration": {"taskPushNotificationConfig": {"url": receiver.url}}}
            sent = await _rpc(http, url, "SendMessage", params)
            task_id = sent["result"]["task"]["id"]
            assert sent["result"]["task"]["status"]["state"] == a2a.COMPLETED
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    await receiver.start()
    proc, url = await start()
    try:
        async with asyncio.timeout(20):
            await receiver.wait_for(lambda r: any(b'"TASK_STATE_COMPLETED"' in b for b in r.events().values()))
        assert all(task_id.encode() in body for body in receiver.events().values())
    finally:
        proc.terminate()
        await proc.wait()
        await receiver.stop()


async def test_our_client_speaks_both_http_bindings_and_prefers_the_faster() -> None:
    keys = {"echo": SigningKey.generate(), "slow": SigningKey.generate()}
    push = _push(keys, allow_networks=LOOPBACK)
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with serve_a2a(InMemoryTaskStore(), keys=keys, push=push) as (base, _), \
                A2AClient(signer=StaticIdentity(SigningKey.generate())) as client:
            card = await client.resolve_card(f"{base}/agents/echo")
            rpc_url, rest_url = f"{base}/agents/echo/a2a", f"{base}/agents/echo/rest"
            assert client.pick(card) == Interface(a2a.BINDING_JSONRPC, rpc_url)  # each offered binding once, in order
            task, output = await client.call_skill(card, "echo", {"text": "a"})
            assert output == {"text": "a"}
            assert client.pick(card) == Interface(a2a.BINDING_HTTP_JSON, rest_url)
            task, output = await client.call_skill(card, "echo", {"text": "b"})
            assert output == {"text": "b"} and set(client.round_trips) == {rpc_url, rest_url}
            client.round_trips[rpc_url] = 10.0  # then the one measured faster
            assert client.pick(card) == Interface(a2a.BINDING_HTTP_JSON, rest_url)

            # Every operation over HTTP+JSON, signed (the callee checks the token against verb, path and body).
            assert (await client.get_task(card, task["id"], history_length=0))["id"] == task["id"]
            assert [t["id"] for t in (await client.list_tasks(card, context_id=task["contextId"]))["tasks"]] == \
                [task["id"]]
            with pytest.raises(a2a.A2AError) as missing:
                await client.get_task(card, "no-such-task")
            assert missing.value.code == a2a.TASK_NOT_FOUND
            slow = await client.resolve_card(f"{base}/agents/slow")
            client.round_trips[f"{base}/agents/slow/a2a"] = 10.0
            wait = a2a.skill_request({"seconds": 10}, "wait")
            started = (await client.send_message(slow, wait, return_immediately=True))["task"]
            assert (await client.cancel_task(slow, started["id"]))["status"]["state"] == a2a.CANCELED
            events = [e async for e in client.stream(slow, a2a.skill_request({"seconds": 0}, "wait"))]
            assert "task" in events[0] and events[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED

            # Push instead of a stream: the result arrives at the caller's webhook.
            started = (await client.send_message(slow, a2a.skill_request({"seconds": 0.1}, "wait"),
                                                 return_immediately=True, push={"url": receiver.url}))["task"]
            subscribed = [e async for e in client.subscribe(slow, started["id"])]
            assert subscribed[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED
            async with asyncio.timeout(10):
                await receiver.wait_for(lambda r: any(b'"TASK_STATE_COMPLETED"' in b and started["id"].encode() in b
                                                      for b in r.events().values()))
    finally:
        await receiver.stop()


async def test_push_stores_keep_configs_and_deliveries_until_done_or_purged(db_url: str) -> None:
    """Both stores: a config and its deliveries survive until delivered, deleted, or past the task retention."""
    engine = create_engine(db_url)
    await migrate(engine)
    try:
        for store in (InMemoryPushStore(), SqlPushStore(engine)):
            config = wire.PushConfig("c1", "t1", "https://hooks.example/a", "tok", "Bearer", "s3")
            await store.put_config(StoredConfig("echo", "did:key:zOwner", config))
            assert [c.config for c in await store.configs("echo", "t1")] == [config]
            assert await store.configured_tasks() == {("echo", "t1")}
            await store.enqueue([Delivery("e1", "echo", "t1", "c1", b"{}", 0, 0.0),
                                 Delivery("e2", "echo", "t1", "c1", b"{}", 0, 50.0)])
            assert [d.id for d in await store.due(10.0, 10)] == ["e1"]
            await store.retry("e1", 1, 20.0)
            await store.done("e2")
            assert [(d.id, d.attempts) for d in await store.due(100.0, 10)] == [("e1", 1)]
            assert await store.purge(time.time() - 3600) == 0  # made just now: kept
            assert await store.purge(time.time() + 1) == 1
            assert await store.configs("echo", "t1") == [] and await store.pending() == 0
    finally:
        await engine.dispose()
