"""Delegation over the bindings a peer's signed card offers, and push delivery for long tasks.

A registry, a caller of organisation A and a translator node of organisation B (real sockets, gRPC served too):
the delegator reads B's card, checks its signature by the key B's verified record names, calls B on whichever
binding it is told to prefer, and verifies the receipt as before. For a long task it asks B to push to the
caller's webhook and hears the verified notification; when no notification comes it polls; when B refuses the
webhook it makes a blocking call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from a2a_support import free_port
from aiohttp import web
from delegation_support import RunningNode, running_node, translator, wait_for_registrations
from registry_support import live_registry, new_org

from guildnet.node.a2a.client import CLIENT_BINDINGS, A2AClient, interfaces
from guildnet.node.delegation.cards import PeerTarget
from guildnet.node.delegation.delegator import Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.delegation.push_wait import PushInbox
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import a2a, receipts
from guildnet.protocols.a2a import push as wire
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient


@dataclass
class Federation:
    delegator: Delegator
    inbox: PushInbox
    callee: RunningNode
    client: A2AClient


@contextlib.asynccontextmanager
async def serving(inbox: PushInbox, port: int) -> AsyncIterator[None]:
    """The caller's webhook on a real socket (as the node's app mounts it)."""
    app = web.Application()
    inbox.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def federation(tmp_path: Path, *, bindings: tuple[str, ...] | None = None, delay: float = 0.0,
                     allow_webhooks: bool = True, inbox_listens: bool = True) -> AsyncIterator[Federation]:
    org_a = new_org("org-a")
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as server, \
            RegistryClient(server.url) as registry:
        caller_key, caller = org_a.agent("planner")
        await registry.register(caller, caller_key)
        options: dict[str, Any] = {"grpc_port": free_port()}
        if allow_webhooks:
            options["push_allow_networks"] = ("127.0.0.0/8",)
        port = free_port()
        inbox = PushInbox(f"http://127.0.0.1:{port}")
        async with running_node("org-b", translator("b", delay=delay), server.url,
                                f"sqlite+aiosqlite:///{tmp_path}/b.db", **options) as callee, \
                A2AClient(bindings=bindings or CLIENT_BINDINGS) as client, \
                (serving(inbox, port) if inbox_listens else contextlib.nullcontext()):
            index = PeerIndex(registry)
            delegator = Delegator(registry, index, client, StaticIdentity(caller_key), org_a.key.did,
                                  reputation_ttl=0.0, min_age=0.0, inbox=inbox)
            await wait_for_registrations(registry, 2)
            try:
                yield Federation(delegator, inbox, callee, client)
            finally:
                await delegator.flush()
                await index.close()


@pytest.mark.parametrize("binding", [a2a.BINDING_JSONRPC, a2a.BINDING_HTTP_JSON, a2a.BINDING_GRPC])
async def test_delegation_over_each_binding_of_the_signed_card(tmp_path: Path, binding: str) -> None:
    """The receipt names the caller the callee authenticated: it verifies only if our token did on this binding
    (an unsigned call from loopback would be anonymous, and the delegator would refuse the receipt)."""
    async with federation(tmp_path, bindings=(binding,)) as fed:
        result = await fed.delegator.delegate("translate", {"text": "hi"}, deadline=15, min_reputation=0.0)
        assert result.output == {"text": "HI"} and receipts.verify_receipt(result.receipt).success
        card = (await _target(fed)).card
        assert card is not None  # the delegator holds the peer's verified card ...
        assert [i.binding for i in interfaces(card) if i.url in fed.client.round_trips] == [binding]  # ... used it


async def _target(fed: Federation, **changes: Any) -> PeerTarget:
    await fed.delegator.index.track("translate")
    entry = fed.delegator.index.candidates("translate", exclude_org="")[0]
    if changes:
        entry = replace(entry, keys=replace(entry.keys, **changes))
    assert fed.delegator.cards is not None
    return await fed.delegator.cards.target(entry, 5.0)


async def test_a_card_not_signed_by_the_key_in_force_is_not_used(tmp_path: Path) -> None:
    """A card the peer's key in force did not sign could point the call (and our token) anywhere: the delegator
    calls the JSON-RPC URL of the verified facts instead (and asks for no push: no key is pinned)."""
    async with federation(tmp_path) as fed:
        assert (await _target(fed)).pushes
        other = await _target(fed, key=SigningKey.generate().did)  # as if the peer had rotated since
        assert other.card is None and not other.pushes
        assert isinstance(other.endpoint, str) and other.endpoint.endswith("/agents/b/a2a")


async def test_a_long_task_is_heard_by_push_not_by_a_held_connection(tmp_path: Path) -> None:
    async with federation(tmp_path, delay=1.0) as fed:
        fed.delegator.poll_first = 60.0  # no poll within the test: only a push can end the wait
        started = time.monotonic()
        result = await fed.delegator.delegate("translate", {"text": "long"}, deadline=200, min_reputation=0.0)
        assert result.output == {"text": "LONG"} and receipts.verify_receipt(result.receipt).success
        assert 1.0 <= time.monotonic() - started < 30
        assert fed.inbox.heard >= 1 and fed.inbox.refused == 0 and fed.inbox.waiting == 0


async def test_without_notifications_the_caller_polls(tmp_path: Path) -> None:
    """The webhook is unreachable from the peer (nothing listens at it): GetTask at doubling intervals."""
    async with federation(tmp_path, delay=0.5, inbox_listens=False) as fed:
        fed.delegator.poll_first, fed.delegator.poll_max = 0.2, 0.4
        result = await fed.delegator.delegate("translate", {"text": "p"}, deadline=15, push=True, min_reputation=0.0)
        assert result.output == {"text": "P"} and fed.inbox.heard == 0


async def test_a_peer_that_refuses_the_webhook_is_called_blocking(tmp_path: Path) -> None:
    """B's push guard refuses this machine's address (its default): the config is refused, the call blocks."""
    async with federation(tmp_path, delay=0.3, allow_webhooks=False) as fed:
        fed.delegator.poll_first = 60.0
        result = await fed.delegator.delegate("translate", {"text": "b"}, deadline=15, push=True, min_reputation=0.0)
        assert result.output == {"text": "B"} and fed.inbox.heard == 0


async def test_the_webhook_refuses_what_the_peer_did_not_sign() -> None:
    port = free_port()
    inbox = PushInbox(f"http://127.0.0.1:{port}")
    peer, mallory = SigningKey.generate(), SigningKey.generate()
    body = b'{"statusUpdate": {"taskId": "t1", "status": {"state": "TASK_STATE_COMPLETED"}}}'
    async with serving(inbox, port), aiohttp.ClientSession() as http:
        with inbox.expect(peer.did) as slot:
            assert slot is not None
            slot.task_id = "t1"

            async def post(url: str, key: SigningKey, *, token: str, task: str = "t1", event: str = "e1",
                           data: bytes = body) -> int:
                signature = wire.sign_notification(key, url=url, body=data, task_id=task, event_id=event)
                async with http.post(url, data=data, headers={wire.TOKEN_HEADER: token,
                                                              wire.SIGNATURE_HEADER: signature}) as response:
                    return response.status

            assert await post(slot.url, mallory, token=slot.token) == 401  # another key than the card's
            assert await post(slot.url, peer, token="guess") == 401  # not the slot's secret
            assert await post(slot.url, peer, token=slot.token, task="t2") == 401  # another task
            assert await post(slot.url + "x", peer, token=slot.token) == 404  # no such slot
            assert not slot.settled.is_set() and inbox.heard == 0 and inbox.refused == 4
            assert await post(slot.url, peer, token=slot.token) == 204
            assert slot.settled.is_set() and inbox.heard == 1
            assert await post(slot.url, peer, token=slot.token) == 204  # a retry of the same event: heard once
            assert inbox.heard == 1
        assert await post(slot.url, peer, token=slot.token, event="e2") == 404  # the call is over



async def test_a_node_hears_the_push_at_its_own_webhook(tmp_path: Path) -> None:
    """The node's app mounts the webhook and its delegator uses it: a long delegation is pushed to the node."""
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as server, \
            RegistryClient(server.url) as registry, \
            running_node("org-b", translator("b", delay=0.5), server.url, f"sqlite+aiosqlite:///{tmp_path}/b.db",
                         grpc_port=free_port(), push_allow_networks=("127.0.0.0/8",)), \
            running_node("org-a", translator("a"), server.url, f"sqlite+aiosqlite:///{tmp_path}/a.db") as a:
        await wait_for_registrations(registry, 2)
        delegator = await a.node.delegator()
        assert delegator.inbox is not None
        delegator.poll_first = 60.0  # only a push ends the wait within the test
        try:
            result = await a.node.delegate("translate", {"text": "n"}, deadline=150, min_reputation=0.0)
            assert result.output == {"text": "N"} and delegator.inbox.heard >= 1
        finally:
            await a.node.close()
