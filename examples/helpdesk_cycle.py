"""`make demo`'s SLM part: one turn of the flywheel at org A's helpdesk, with the project's own commands.

``make`` built the candidate once (helpdesk_history.py logged A's tickets through A's node, then
`guildnet flywheel train`). Here, on a copy of it so the cache stays a fresh candidate:

1. `guildnet flywheel evaluate`: the model in service (the base SmolLM2-135M) and the candidate on the newest
   logged tickets, held out of training, each with the escalation threshold chosen there; a signed model card;
2. both models alone on hand-written tickets phrased unlike any template the history had (novel phrasings);
3. A's node serves the helpdesk SLM-first through ``ServedModel`` (the small model first, the hosted 70B when
   it is not confident): live tickets with the base model, then `guildnet flywheel promote` while tickets
   keep coming (the node's ``watch()`` swaps the llama.cpp server without dropping one), then live tickets
   with the promoted model; the process data says which model answered each.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from helpdesk import SKILL, SPEC, Ticket, free_port, hosted_70b, novel_examples, prepared_history, ticket_stream
from sqlalchemy import select

from guildnet.node import flywheel
from guildnet.node.a2a.client import A2AClient
from guildnet.node.flywheel.evaluation import score, served_alias
from guildnet.node.flywheel.models import ModelStore
from guildnet.node.flywheel.process_log import ProcessCall, ProcessLog
from guildnet.node.flywheel.serving import ServedModel
from guildnet.node.identity import StaticIdentity
from guildnet.node.node import PROCESS_LOG, Node
from guildnet.node.publisher import PublishedAgent
from guildnet.node.slm import ConfidencePolicy, SLMAgent
from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey

TICKET_NUMBER = re.compile(r"\(ticket (\d+)\)")
PII_PREFIX = "Jane Doe here (jane.doe@example.com). "
"""Put on the first live ticket, to show the process data stores it scrubbed."""


async def guildnet_flywheel(*args: str) -> tuple[int, str]:
    """``guildnet flywheel ARGS`` in its own process, as an operator runs it beside the serving node."""
    print(f"$ guildnet flywheel {' '.join(args)}", flush=True)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "guildnet.cli", "flywheel", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    text = out.decode().rstrip()
    print("\n".join(f"  {line}" for line in text.splitlines()))
    return process.returncode or 0, text


def balanced(examples: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` of the novel tickets, the same number from each category (they are listed category by
    category, ten each)."""
    per_label = max(1, count // 4)
    return [example for index, example in enumerate(examples) if index % 10 < per_label]


@contextlib.asynccontextmanager
async def helpdesk_node(agent: SLMAgent, org_a: SigningKey, workdir: Path) -> AsyncIterator[tuple[str, ProcessLog]]:
    """A's node serving the helpdesk over A2A on 127.0.0.1, recording process data in its database."""
    port = free_port()
    node = Node(org_name="org-a", org_key=org_a, agents=[PublishedAgent(agent, StaticIdentity.generate())],
                base_url=f"http://127.0.0.1:{port}", db_url=f"sqlite+aiosqlite:///{workdir}/a-helpdesk.db", port=port)
    app = node.build_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/agents/{agent.name}/a2a", app[PROCESS_LOG]
    finally:
        await node.close()
        await runner.cleanup()


async def answered_by(process_log: ProcessLog, after_id: int, truth: dict[int, str]) -> tuple[list[str], int]:
    """One line per task recorded after row ``after_id``, from the process data: the ticket as stored
    (scrubbed), the answer, whether it is the ticket's true category, and which model's answer was accepted
    (with why the small model's was not); and the last row id."""
    await process_log.flush()
    async with process_log.engine.connect() as connection:
        rows = (await connection.execute(
            select(ProcessCall.id, ProcessCall.direction, ProcessCall.trace_id, ProcessCall.model, ProcessCall.input,
                   ProcessCall.output, ProcessCall.outcome, ProcessCall.escalated, ProcessCall.escalation_reason)
            .where(ProcessCall.id > after_id).order_by(ProcessCall.id))).all()
    lines = []
    for task in [r for r in rows if r.direction == "in"]:
        calls = [r for r in rows if r.direction == "model" and r.trace_id == task.trace_id]
        accepted = next((str(c.model) for c in calls if c.outcome == "ok"), "-")
        rejected = next((c for c in calls if c.escalated), None)
        text = str(task.input["text"])
        number = TICKET_NUMBER.search(text)
        label = (task.output or {}).get("label", "-")
        right = number is not None and truth.get(int(number.group(1))) == label
        by = f"{accepted}, escalated from {rejected.model}: {rejected.escalation_reason}" if rejected else accepted
        lines.append(f"{text[:52]:<53} {label:<10} {'yes' if right else 'NO':<6} {by}")
    return lines, rows[-1].id if rows else after_id


async def flywheel_cycle(org_a: SigningKey, workdir: Path, prepared: Path, *, novel: int = 40, live: int = 6) -> None:
    print("\nThe flywheel at org-a: its helpdesk classifies support tickets (billing, shipping, technical, account).")
    found = prepared_history(prepared)
    if found is None:
        print(f"skipped: no prepared candidate in {prepared} (`make demo` builds it once)")
        return
    candidate, folder, history = found
    models = workdir / "models"
    store = ModelStore(models, SKILL.id)
    shutil.copytree(folder, store.candidate(candidate))
    key = workdir / "org-a.key"
    keyfile.save(org_a, key)
    card_options = ["--skill", SKILL.id, "--models", str(models), "--key", str(key)]
    print(f"Until now a hosted 70B answered every ticket; A's node logged {history} of them as process data, and "
          f"`guildnet flywheel train` (run once by make) fine-tuned a LoRA adapter of SmolLM2-135M, {candidate}, "
          "on the older ones. The newest are held out.\n")

    started = time.perf_counter()
    status, _ = await guildnet_flywheel("evaluate", candidate, *card_options)
    if status:
        raise SystemExit("evaluation failed")
    card = store.card(candidate, signer=org_a.did)
    print(f"model card signed by org-a ({folder.name}/card.jws): base {card['base_model']['file']}, "
          f"{card['training']['rows']} training rows, {card['training']['steps']} steps, adapter "
          f"{card['adapter']['bytes']:,} B sha256 {card['hashes']['adapter_sha256'][:16]}…")

    examples = balanced(novel_examples(), novel)
    base_novel, mine_novel = await asyncio.gather(  # one llama.cpp thread each: two cores serve both at once
        score(None, served_alias(None), examples, card["target_precision"]),
        score(store.adapter(candidate), served_alias(candidate), examples, card["target_precision"]))
    print(f"novel phrasings ({len(examples)} hand-written tickets, small model alone): "
          f"{base_novel.accuracy:.1%} in service, {mine_novel.accuracy:.1%} candidate")
    print(f"(evaluation took {time.perf_counter() - started:.0f} s)")

    stream = ticket_stream(history + 4 * live)
    arriving = [Ticket(PII_PREFIX + t.text, t.label) if i == 0 else t for i, t in enumerate(stream[history:])]
    truth = {int(m.group(1)): t.label for t in arriving if (m := TICKET_NUMBER.search(t.text))}
    async with hosted_70b([*stream[:history], *arriving]) as large, A2AClient() as client:
        agent = SLMAgent("a-helpdesk", [SPEC], large, escalation=[large])
        served = ServedModel(store, agent,
                             base_policy=ConfidencePolicy(min_mean_logprob=card["scores"]["current"]["threshold"]))
        await served.reload()
        try:
            async with helpdesk_node(agent, org_a, workdir) as (endpoint, process_log):
                await serve_live(client, endpoint, process_log, served, agent, arriving, truth, live, candidate,
                                 card_options)
        finally:
            await served.aclose()


async def serve_live(client: A2AClient, endpoint: str, process_log: ProcessLog, served: ServedModel,
                     agent: SLMAgent, arriving: list[Ticket], truth: dict[int, str], live: int, candidate: str,
                     card_options: list[str]) -> None:
    """The three phases of live traffic: before, during and after the promotion."""
    pending = list(arriving)

    async def ask() -> None:
        await client.call_skill(endpoint, SKILL.id, {"text": pending.pop(0).text})

    header = f"{'ticket (as stored: scrubbed)':<53} {'answer':<10} {'right':<6} answered by (process data)"
    print(f"\nlive tickets at A's node, SLM-first: {agent.model.family if agent.model else '?'} in service, the "
          "hosted 70B when its answer is below the threshold its evaluation chose")
    print(header)
    for _ in range(live):
        await ask()
    lines, last = await answered_by(process_log, 0, truth)
    print("\n".join(lines))

    print("\npromotion while tickets keep arriving (two at a time); the node's ServedModel.watch() follows it:")
    watcher = asyncio.create_task(served.watch(interval=0.5))
    promoting = asyncio.create_task(guildnet_flywheel("promote", candidate, *card_options))

    def settled() -> bool:
        """The promotion is refused, or the node serves the candidate."""
        return promoting.done() and (promoting.result()[0] != 0 or served.candidate == candidate)

    async def traffic() -> int:
        sent = 0
        while len(pending) > live and not settled():
            await ask()
            sent += 1
        return sent

    during = sum(await asyncio.gather(traffic(), traffic()))
    status, _ = await promoting
    lines, last = await answered_by(process_log, last, truth)
    print(header)
    print("\n".join(lines))
    print(f"{during} tickets arrived during the promotion: all answered (no request dropped)")
    if status:
        print("the candidate was not promoted: the base model stays in service")

    print(f"\nafter: {agent.model.family if agent.model else '?'} in service (AgentFacts model block), threshold "
          f"{agent.tiers[0].policy.min_mean_logprob}")
    print(header)
    for _ in range(live):
        await ask()
    lines, last = await answered_by(process_log, last, truth)
    print("\n".join(lines))
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    print("\nflywheel report from A's process data (guildnet flywheel report --config ...):")
    print((await flywheel.report(process_log.engine)).to_table())
