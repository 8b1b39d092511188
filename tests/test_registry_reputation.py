"""The registry's reputation weighs failures by what the log says, on SQLite and PostgreSQL over real sockets.

A failure the callee reported itself counts in full; a failure verdict on work the callee signed as completed
counts 0.1 with a reason and nothing without one. The receipts table does not keep the claim's status or the
reason, so the trust service reads them from the logged receipt: this checks it does, and that anyone holding
the log recomputes the same score.
"""

from __future__ import annotations

import pytest
from registry_support import live_registry
from test_registry_receipts import World, claim_token

from guildnet.protocols.receipts import caller_countersign
from guildnet.protocols.reputation import Params, Rating, compute
from guildnet.registry.client import RegistryClient
from guildnet.registry.server import REPUTATION
from guildnet.registry.trust import failure_kind

# (claim status, verdict, reason)
RECEIPTS = [("completed", "success", None), ("completed", "success", None), ("failed", "failure", None),
            ("completed", "failure", None), ("completed", "failure", "output does not match the skill's schema")]


async def test_failures_count_by_what_the_callee_signed_and_the_reason(db_url: str) -> None:
    world = World()
    async with live_registry(db_url, pretrusted_orgs=(world.acme.key.did,), reputation_interval=3600) as registry, \
            RegistryClient(registry.url) as client:
        await world.register(client)
        for i, (status, verdict, reason) in enumerate(RECEIPTS):
            token = caller_countersign(claim_token(world.caller.id, world.callee_key, f"task-{i}", status=status),
                                       world.caller_key, verdict, reason=reason)  # type: ignore[arg-type]
            await client.submit_receipt(token, world.caller_key)
        snapshot = await registry.app[REPUTATION].refresh(force=True)
        assert snapshot is not None and snapshot.receipts == len(RECEIPTS)

        rep = await client.reputation(world.callee.id, "echo")
        assert rep.receipts == 5  # every receipt is counted as seen, whatever its weight
        # acme is pre-trusted (weight 1): 2 successes; failures 1 (admitted) + 0 (no reason) + 0.1 (disputed)
        assert rep.raw["successes"] == pytest.approx(2.0, rel=1e-6)
        assert rep.raw["failures"] == pytest.approx(1.1, rel=1e-6)
        assert rep.raw["params"]["disputed_weight"] == 0.1 and rep.raw["params"]["min_history"] == 5

        # anyone holding the log recomputes the same score, reading the failures' kind from the leaves
        entries = [e for e in await client.log_entries(0, rep.log_size) if e["kind"] == "receipt"]
        kinds = [failure_kind(e["data"]) if verdict == "failure" else (False, False)
                 for e, (_, verdict, _) in zip(entries, RECEIPTS, strict=True)]
        assert kinds == [(False, False), (False, False), (False, False), (True, False), (True, True)]
        ratings = [Rating(world.caller.id, world.acme.key.did, world.callee.id, world.beta.key.did, "echo",
                          verdict == "success", snapshot.reputation.params.now, *kind)
                   for (_, verdict, _), kind in zip(RECEIPTS, kinds, strict=True)]
        mine = compute(ratings, [world.acme.key.did], Params(now=snapshot.reputation.params.now))
        assert mine.score(world.callee.id, "echo").failures == pytest.approx(1.1)
