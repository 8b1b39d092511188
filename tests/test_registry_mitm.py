"""A lying registry, or anyone on the path to it, cannot make a node call, pay or rate the wrong party.

Real processes: a registry (`guildnet registry serve`) and the callee's node (`guildnet node run`); between them
and the caller, a man in the middle (tests/mitm_support.py) that rewrites what the registry serves and injects
watch events, and an attacker's A2A endpoint that counts every request reaching it. Each attack is refused,
nothing reaches the attacker, and the honest path still works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mitm_support import AttackerEndpoint, RegistryMitm
from registry_support import ORG_KEYS, bump, free_port, key_path_for, new_org, registry_process
from test_node import node_process, write_config

from guildnet.node.a2a.client import A2AClient
from guildnet.node.db import create_engine, migrate
from guildnet.node.delegation.delegator import DelegationFailed, Delegator
from guildnet.node.delegation.discovery import PeerIndex
from guildnet.node.delegation.heads import SqlHeadStore
from guildnet.node.identity import StaticIdentity
from guildnet.protocols import jws, keyfile, keyhistory, signed_write
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import Checkpoint, sign_checkpoint
from guildnet.protocols.transparency import origin_for
from guildnet.registry.client import LogForked, RegistryClient, UntrustworthyRecord

pytestmark = pytest.mark.slow
Json = dict[str, Any]


@dataclass
class World:
    registry_url: str
    registry_key: SigningKey
    mitm: RegistryMitm
    attacker: AttackerEndpoint
    caller: Delegator
    heads: SqlHeadStore
    callee_id: str
    tmp: Path


@contextlib.asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = f"sqlite:///{tmp_path}/registry.db"
    async with registry_process(db) as registry_url, RegistryClient(registry_url) as honest:
        acme = new_org("acme")
        planner_key, planner = acme.agent("planner", skills=[{"id": "plan", "name": "Plan"}])
        await honest.register(planner, planner_key)
        port = free_port()
        config = write_config(tmp_path, port, registry_url)
        async with node_process(config, port), RegistryMitm(registry_url).serve() as mitm, \
                AttackerEndpoint().serve() as attacker, A2AClient() as a2a_client:
            registry_key = keyfile.load(key_path_for(db)).did
            engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/caller.db")
            await migrate(engine)
            heads = SqlHeadStore(engine)
            client = RegistryClient(mitm.url, registry_key=registry_key, heads=heads)
            delegator = Delegator(client, PeerIndex(client, reconnect_delay=0.05), a2a_client,
                                  StaticIdentity(planner_key), acme.key.did)
            callee = next(a for a in (await honest.search(skill="echo")).agents if a.facts.name == "echo")
            try:
                yield World(registry_url, keyfile.load(key_path_for(db)), mitm, attacker, delegator, heads,
                            callee.id, tmp_path)
            finally:
                await delegator.flush()
                await delegator.index.close()
                await client.close()
                await engine.dispose()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for ``condition`` (the peer index applies stream events in its own task)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (a plain condition over another task's state; no event to wait on)
            await asyncio.sleep(0.05)


async def delegate(w: World) -> Any:
    return await w.caller.delegate("echo", {"text": "hi"}, min_reputation=0.0, deadline=10)


def swap_endpoint(w: World, signer: SigningKey, **extra: Any) -> Callable[[Json], Json]:
    """Point the callee's record at the attacker, re-signed by ``signer``, optionally with more rewrites."""
    def rewrite(record: Json) -> Json:
        if record["facts"]["id"] != w.callee_id:
            return record
        facts = {**record["facts"], "endpoints": {"a2a": w.attacker.url + "/a2a"}}
        token = signed_write.make(signer, {"action": "register", "facts": facts})
        return {**record, "facts": facts, "jws": token, **extra}
    return rewrite


async def test_a_record_resigned_with_another_key_is_refused_and_never_called(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        attacker_key = SigningKey.generate()
        w.mitm.record = swap_endpoint(w, attacker_key, current_key=attacker_key.did)
        with pytest.raises(DelegationFailed):
            await delegate(w)
        assert w.attacker.requests == 0
        assert "not signed by the key in force" in w.caller.index.refused[w.callee_id] \
            or "names" in w.caller.index.refused[w.callee_id]
        w.mitm.honest()
        await w.caller.index.close()
        w.caller.index = PeerIndex(w.caller.registry)  # a fresh view: the honest path works through the same hop
        assert (await delegate(w)).agent.id == w.callee_id


async def test_a_substituted_current_key_is_refused(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.mitm.record = lambda record: {**record, "current_key": SigningKey.generate().did}
        with pytest.raises(DelegationFailed):
            await delegate(w)
        assert "its key history proves" in w.caller.index.refused[w.callee_id]
        assert w.attacker.requests == 0


async def test_a_forged_key_history_is_refused(tmp_path: Path) -> None:
    """The attacker serves a history whose inception is its own, plus a 'rotation' to its key."""
    async with world(tmp_path) as w:
        thief, after = SigningKey.generate(), SigningKey.generate()
        forged_inception = keyhistory.incept(thief, after.did)
        w.mitm.record = swap_endpoint(w, thief, key_events=[forged_inception], current_key=thief.did)
        with pytest.raises(DelegationFailed):
            await delegate(w)
        assert "key history" in w.caller.index.refused[w.callee_id]
        assert w.attacker.requests == 0


async def test_a_forged_rotation_on_the_watch_stream_moves_no_key(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        honest = await delegate(w)  # the callee is in the caller's view, found and called honestly
        assert honest.agent.id == w.callee_id
        thief = SigningKey.generate()
        history = list(honest.agent.key_events)  # the callee's real inception, then a "rotation" by the thief
        event = jws.sign({"agent": w.callee_id, "seq": len(history), "kind": "rotation", "key": thief.did,
                          "prior": keyhistory.event_digest(history[-1])}, thief, typ=keyhistory.EVENT_TYP)

        def rewrite(record: Json) -> Json:
            return {**swap_endpoint(w, thief, current_key=thief.did)(record), "key_events": [*history, event]} \
                if record["facts"]["id"] == w.callee_id else record

        w.mitm.record = rewrite
        position = w.caller.index.position
        await w.mitm.events.put({"seq": position + 1_000_000, "agent": w.callee_id, "kind": "rotated",
                                 "current_key": thief.did, "key_event": event})
        await eventually(lambda: w.callee_id in w.caller.index.refused)
        kept = w.caller.index.get(w.callee_id)
        assert kept is not None and kept.current_key == w.callee_id  # the verified key is unchanged
        w.mitm.honest()
        again = await delegate(w)
        assert again.agent.id == w.callee_id and w.attacker.requests == 0


async def test_a_registration_rolled_back_to_an_older_version_is_refused(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        served: list[Json] = []

        def remember(record: Json) -> Json:
            if record["facts"]["id"] == w.callee_id:
                served.append(record)
            return record

        w.mitm.record = remember
        await delegate(w)
        old = served[0]
        # the callee re-registers with a higher version (its node would, after a restart or an update)
        async with RegistryClient(w.registry_url) as honest:
            entry = await honest.get(w.callee_id)
            node_key = keyfile.load(w.tmp / "keys" / "echo.key")
            org_key = keyfile.load(w.tmp / "keys" / "org.key")
            ORG_KEYS[org_key.did] = org_key
            await honest.register(bump(entry.facts, version=entry.version + 1), node_key)
        await eventually(lambda: getattr(w.caller.index.get(w.callee_id), "version", 0) > old["facts"]["version"])
        w.mitm.record = lambda record: old if record["facts"]["id"] == w.callee_id else record
        await w.mitm.events.put({"seq": w.caller.index.position + 1_000_000, "agent": w.callee_id,
                                 "kind": "updated", "skills": ["echo"]})
        await eventually(lambda: "rolled back" in w.caller.index.refused.get(w.callee_id, ""))
        kept = w.caller.index.get(w.callee_id)
        assert kept is not None and kept.version == entry.version + 1


def forged_head(w: World, size_change: int, root: bytes | None = None) -> Callable[[Json], Json]:
    """A head the registry's own key signs (a lying registry holds it): shrunk, or of another tree."""
    def rewrite(head: Json) -> Json:
        size = head["size"] + size_change
        new_root = root if root is not None else bytes(32)
        checkpoint = sign_checkpoint(Checkpoint(origin_for(w.registry_key.did), size, new_root), w.registry_key)
        return {**head, "size": size, "root": new_root.hex(), "checkpoint": checkpoint}
    return rewrite


@pytest.mark.parametrize("fork", ["shrunk", "another-tree"])
async def test_a_forked_or_shrunken_log_stops_delegation_for_good(tmp_path: Path, fork: str) -> None:
    async with world(tmp_path) as w:
        await delegate(w)  # the node has seen (and stored) an honest head
        w.mitm.head = forged_head(w, -1) if fork == "shrunk" else forged_head(w, 0, b"\x01" * 32)
        with pytest.raises(LogForked):
            await w.caller.registry.log_head()
        with pytest.raises(DelegationFailed, match="is stopped"):
            await delegate(w)
        assert w.attacker.requests == 0
        w.mitm.honest()  # even when the registry behaves again, a restarted node remembers the fork
        restarted = RegistryClient(w.mitm.url, registry_key=w.registry_key.did, heads=w.heads)
        try:
            with pytest.raises(LogForked):
                await restarted.log_head()
        finally:
            await restarted.close()


async def test_a_head_signed_by_another_key_is_refused_against_the_pinned_key(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        impostor = SigningKey.generate()

        def resign(head: Json) -> Json:
            checkpoint = sign_checkpoint(Checkpoint(origin_for(impostor.did), head["size"],
                                                    bytes.fromhex(head["root"])), impostor)
            return {**head, "key": impostor.did, "checkpoint": checkpoint}

        w.mitm.head = resign
        with pytest.raises(UntrustworthyRecord, match="does not verify"):
            await w.caller.registry.log_head()


async def test_a_registration_the_log_does_not_hold_is_never_called(tmp_path: Path) -> None:
    """The registry serves a genuine record but points it at another leaf: its inclusion cannot be proven, so the
    node does not call it (attempt 'unverified'), and calls it once the proof holds again."""
    async with world(tmp_path) as w:
        w.mitm.record = lambda record: {**record, "log_index": 0} if record["facts"]["id"] == w.callee_id else record
        with pytest.raises(DelegationFailed) as failed:
            await delegate(w)
        assert [a.outcome for a in failed.value.attempts] == ["unverified"]
        assert "is not in the log" in failed.value.attempts[0].detail
        w.mitm.honest()
        await w.caller.index.close()
        w.caller.index = PeerIndex(w.caller.registry)
        assert (await delegate(w)).agent.id == w.callee_id


async def test_garbage_on_the_watch_stream_never_stops_revocations(tmp_path: Path) -> None:
    """Bad JSON, events of the wrong shape and a dropped stream: each is reported and the stream resumed where
    it was, so a revocation sent after them still reaches the node."""
    async with world(tmp_path) as w:
        failures: list[BaseException] = []
        w.caller.index.on_stream_failure = failures.append
        await delegate(w)  # the node now follows the stream for 'echo'
        for junk in ("not json {", json.dumps({"seq": "x", "kind": "registered"}), json.dumps([1, 2]),
                     json.dumps({"seq": 1})):
            await w.mitm.events.put(junk)
            await eventually(lambda: w.mitm.events.empty())
        echo_key = keyfile.load(w.tmp / "keys" / "echo.key")
        async with RegistryClient(w.registry_url) as honest:
            await honest.revoke(w.callee_id, echo_key)
        await eventually(lambda: w.caller.index.is_revoked(w.callee_id))
        assert len(failures) >= 3 and w.caller.index.get(w.callee_id) is None
