"""The node's A2A server over real sockets on 127.0.0.1: routes, methods, errors, streams, cards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest
from a2a_support import serve_a2a

from guildnet.node.a2a.client import A2AClient
from guildnet.node.a2a.store import InMemoryTaskStore
from guildnet.protocols import a2a

V1 = {"A2A-Version": "1.0"}


@pytest.fixture
async def node() -> AsyncIterator[tuple[str, A2AClient, aiohttp.ClientSession]]:
    async with serve_a2a(InMemoryTaskStore()) as (base, _service), aiohttp.ClientSession() as http:
        yield base, A2AClient(http), http


async def _rpc(http: aiohttp.ClientSession, url: str, method: str, params: dict[str, Any],
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with http.post(url, json=body, headers=V1 if headers is None else headers) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        return cast(dict[str, Any], await resp.json())


def _msg(data: dict[str, Any], skill: str | None = None) -> dict[str, Any]:
    return a2a.skill_request(data, skill)


async def test_cards_are_signed_and_cacheable(node: tuple[str, A2AClient, aiohttp.ClientSession]) -> None:
    base, client, http = node
    async with http.get(f"{base}/.well-known/agent-card.json") as resp:
        root = await resp.json()
        assert resp.headers["Cache-Control"] == "public, max-age=300"
        etag, last_modified = resp.headers["ETag"], resp.headers["Last-Modified"]
    assert root["name"] == "echo" and root["supportedInterfaces"][0]["url"] == f"{base}/"
    assert root["capabilities"] == {"streaming": True} and root["skills"][0]["tags"] == ["text"]
    async with http.get(f"{base}/.well-known/agent-card.json", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304 and resp.headers["Last-Modified"] == last_modified
    card = await client.resolve_card(f"{base}/agents/slow")
    assert card["supportedInterfaces"][0]["url"] == f"{base}/agents/slow/a2a"
    assert [s["id"] for s in card["skills"]] == ["wait", "shout"]
    a2a.verify_agent_card(card)
    async with http.get(f"{base}/agents/nobody/.well-known/agent-card.json") as resp:
        assert resp.status == 404


async def test_send_message_blocking_returns_completed_task(
        node: tuple[str, A2AClient, aiohttp.ClientSession]) -> None:
    base, client, http = node
    for url in (f"{base}/agents/echo/a2a", f"{base}/agents/echo/a2a/", f"{base}/"):
        doc = await _rpc(http, url, "SendMessage", {"message": _msg({"text": "hi"})})
        task = doc["result"]["task"]
        assert task["status"]["state"] == a2a.COMPLETED
        assert task["artifacts"][0]["parts"][0] == {"data": {"text": "hi"}}
        assert task["history"][0]["role"] == "ROLE_USER" and task["history"][0]["taskId"] == task["id"]
    # Plain text input maps to {"text": ...}; metadata.skill picks one of several skills.
    result = await client.send_message(f"{base}/agents/slow/a2a", a2a.new_message(
        a2a.ROLE_USER, [a2a.text_part("abc")], metadata={"skill": "shout"}))
    assert a2a.artifact_output(result["task"]) == {"text": "ABC"}


async def test_bad_input_is_invalid_params_and_creates_no_task(
        node: tuple[str, A2AClient, aiohttp.ClientSession]) -> None:
    base, client, http = node
    url = f"{base}/agents/echo/a2a"
    doc = await _rpc(http, url, "SendMessage", {"message": _msg({"text": 5})})
    assert doc["error"]["code"] == a2a.INVALID_PARAMS and "text" in doc["error"]["message"]
    assert doc["error"]["data"][0]["reason"] == "INVALID_PARAMS"
    doc = await _rpc(http, f"{base}/agents/slow/a2a", "SendMessage", {"message": _msg({"x": 1}, "nope")})
    assert doc["error"]["code"] == a2a.INVALID_PARAMS and "unknown skill" in doc["error"]["message"]
    doc = await _rpc(http, url, "SendMessage", {"message": {"role": "ROLE_USER", "parts": [{"text": "x"}]}})
    assert doc["error"]["code"] == a2a.INVALID_PARAMS
    assert (await client.list_tasks(url))["totalSize"] == 0


async def test_protocol_errors(node: tuple[str, A2AClient, aiohttp.ClientSession]) -> None:
    base, _client, http = node
    url = f"{base}/agents/echo/a2a"
    send = {"message": _msg({"text": "x"})}
    no_version = await _rpc(http, url, "SendMessage", send, headers={})
    assert no_version["error"]["code"] == a2a.VERSION_NOT_SUPPORTED
    assert no_version["error"]["data"][0]["reason"] == "VERSION_NOT_SUPPORTED"
    assert (await _rpc(http, url, "message/send", send, headers={}))["error"]["code"] == a2a.VERSION_NOT_SUPPORTED
    assert (await _rpc(http, url, "message/send", send))["error"]["code"] == a2a.METHOD_NOT_FOUND
    assert (await _rpc(http, url, "SendMessage", send, headers={"A2A-Version": "2.0"}))["error"]["code"] == -32009
    async with http.post(f"{url}?A2A-Version=1.0", json={"jsonrpc": "2.0", "id": 3, "method": "GetTask",
                                                          "params": {"id": "x"}}) as resp:
        assert (await resp.json())["error"]["code"] == a2a.TASK_NOT_FOUND
    async with http.post(url, data=b"{oops", headers={**V1, "Content-Type": "application/json"}) as resp:
        doc = await resp.json()
        assert doc["error"]["code"] == a2a.PARSE_ERROR and doc["id"] is None
    async with http.post(url, data=b"{}", headers={**V1, "Content-Type": "text/plain"}) as resp:
        assert (await resp.json())["error"]["code"] == a2a.CONTENT_TYPE_NOT_SUPPORTED
    assert (await _rpc(http, url, "Nope", {}))["error"]["code"] == a2a.METHOD_NOT_FOUND
    assert (await _rpc(http, url, "GetTask", {}))["error"]["code"] == a2a.INVALID_PARAMS
    assert (await _rpc(http, url, "CreateTaskPushNotificationConfig", {"taskId": "t", "url": "http://x"})
            )["error"]["code"] == a2a.PUSH_NOT_SUPPORTED
    assert (await _rpc(http, url, "GetExtendedAgentCard", {}))["error"]["code"] == a2a.EXTENDED_CARD_NOT_CONFIGURED


async def test_stream_order_and_sse_framing(node: tuple[str, A2AClient, aiohttp.ClientSession]) -> None:
    base, _client, http = node
    body = {"jsonrpc": "2.0", "id": "s1", "method": "SendStreamingMessage",
            "params": {"message": _msg({"seconds": 0}, "wait")}}
    async with http.post(f"{base}/agents/slow/a2a", json=body, headers=V1) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = await resp.read()
    frames = [f for f in raw.split(b"\n\n") if f]
    assert all(f.startswith(b"data: ") for f in frames)
    events = [json.loads(f[6:]) for f in frames]
    assert {e["id"] for e in events} == {"s1"}
    results = [e["result"] for e in events]
    assert [next(iter(r)) for r in results] == ["task", "statusUpdate", "artifactUpdate", "statusUpdate"]
    assert results[0]["task"]["status"]["state"] == a2a.SUBMITTED
    assert results[1]["statusUpdate"]["status"]["message"]["parts"] == [{"text": "waiting"}]
    assert results[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED


async def test_get_list_and_pagination(node: tuple[str, A2AClient, aiohttp.ClientSession]) -> None:
    base, client, _http = node
    url = f"{base}/agents/echo/a2a"
    context = a2a.new_id()
    ids = []
    for i in range(5):
        msg = _msg({"text": str(i)})
        msg["contextId"] = context
        ids.append((await client.send_message(url, msg))["task"]["id"])
        await asyncio.sleep(0.002)
    await client.send_message(url, _msg({"text": "other context"}))
    seen: list[str] = []
    token = None
    while True:
        page = await client.list_tasks(url, context_id=context, page_size=2, page_token=token)
        assert page["totalSize"] == 5 and page["pageSize"] == 2
        assert all("artifacts" not in t for t in page["tasks"])
        seen += [t["id"] for t in page["tasks"]]
        token = page["nextPageToken"] or None
        if token is None:
            break
    assert seen == list(reversed(ids))  # newest first, each task once
    assert (await client.list_tasks(url, status=a2a.FAILED))["tasks"] == []
    with_artifacts = await client.list_tasks(url, context_id=context, page_size=1, include_artifacts=True)
    assert "artifacts" in with_artifacts["tasks"][0]
    task = await client.get_task(url, ids[0], history_length=0)
    assert task["id"] == ids[0] and "history" not in task
    with pytest.raises(a2a.A2AError) as missing:
        await client.get_task(url, "nope")
    assert missing.value.code == a2a.TASK_NOT_FOUND
    with pytest.raises(a2a.A2AError):  # tasks are per agent
        await client.get_task(f"{base}/agents/slow/a2a", ids[0])


async def test_cancel_subscribe_and_failures(node: tuple[str, A2AClient, aiohttp.ClientSession]) -> None:
    base, client, _http = node
    url = f"{base}/agents/slow/a2a"
    started = await client.send_message(url, _msg({"seconds": 10}, "wait"), return_immediately=True)
    task_id = started["task"]["id"]
    assert started["task"]["status"]["state"] == a2a.SUBMITTED
    assert (await client.get_task(url, task_id))["status"]["state"] in (a2a.SUBMITTED, a2a.WORKING)
    canceled = await client.cancel_task(url, task_id)
    assert canceled["status"]["state"] == a2a.CANCELED
    assert (await client.get_task(url, task_id))["status"]["state"] == a2a.CANCELED
    with pytest.raises(a2a.A2AError) as again:
        await client.cancel_task(url, task_id)
    assert again.value.code == a2a.TASK_NOT_CANCELABLE
    with pytest.raises(a2a.A2AError) as terminal:
        [e async for e in client.subscribe(url, task_id)]
    assert terminal.value.code == a2a.UNSUPPORTED_OPERATION
    with pytest.raises(a2a.A2AError) as follow_up:
        await client.send_message(url, {**_msg({"seconds": 0}, "wait"), "taskId": task_id})
    assert follow_up.value.code == a2a.UNSUPPORTED_OPERATION

    started = await client.send_message(url, _msg({"seconds": 0.2}, "wait"), return_immediately=True)
    events = [e async for e in client.subscribe(url, started["task"]["id"])]
    assert "task" in events[0] and events[-1]["statusUpdate"]["status"]["state"] == a2a.COMPLETED

    failed = await client.send_message(url, _msg({"seconds": 0, "fail": True}, "wait"))
    status = failed["task"]["status"]
    assert status["state"] == a2a.FAILED and status["message"]["parts"] == [{"text": "asked to fail"}]
