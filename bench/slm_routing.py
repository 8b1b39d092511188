"""SLM-first routing benchmark: success rate and cost per successful task for SLM-only, LLM-only and
SLM-first with escalation, through the real SLMAgent and OpenAIChatBackend over HTTP.

The task: classify a support ticket (bench/tickets.py) into one of four labels, JSON-schema output, the
ticket text as the user message. The large model ("~70B") is always a scripted OpenAI-compatible server on
127.0.0.1, right with probability 0.95 (mean token log-prob ~ N(-0.05, 0.03)), a wrong label otherwise. The
small model ("~1B") is one of:

* ``--small scripted`` (default): scripted too, right with probability ``p_small`` for each scenario; when
  right, mean token log-prob ~ N(-0.15, 0.10); when wrong, 25 % schema-invalid output (a label outside the
  enum), 75 % a wrong label with mean log-prob ~ N(-0.80, 0.30). ~400 prompt tokens (uniform 350-450) and
  12 completion tokens per call. SLM-first accepts a schema-valid answer with mean log-prob >= -0.40.
* ``--small smollm2``: the real embedded SmolLM2-135M-Instruct (llama.cpp, grammar-constrained JSON, real
  log-probs and token counts). Its answers are cached by a proxy, so the three strategies see exactly the
  same model behaviour; the large model is charged the small model's token counts for the same prompt. The
  log-prob threshold is chosen on separate calibration tickets (the cheapest threshold that keeps >= 95 %
  of LLM-only success there), then applied to the evaluation tickets.

Each scenario is drawn up front (seeded), so the strategies see the same task mix.

Prices (assumptions, USD per 1M tokens, as public listings showed them in 2025-2026; not verified against
a live price list here):

* ``~1B``: Llama-3.2-1B-Instruct, 0.04 in / 0.04 out (hosted range quoted as $0.04-0.06/M on
  modelbeat.dev; some routers list $0.01). SmolLM2-135M is priced the same (no cheaper tier is listed).
* ``~70B`` (default): Llama-3.3-70B-Instruct, 0.59 in / 0.79 out (Groq's list price).
* ``~70B`` (cheap): Llama-3.3-70B-Instruct-Turbo FP8, 0.12 in / 0.30 out (DeepInfra's list price),
  re-priced from the same recorded token counts to show how much the conclusion depends on the price gap.

The seed's claim is that SLMs are 10-30x cheaper per task; the goal in the issue is that SLM-first keeps
>= 95 % of LLM-only success at <= 10 % of its cost per successful task. The scripted run also sweeps
p_small = 0.90, 0.91, ... 0.99 and reports the smallest share of tasks the small model must get right for
the goal.

    python bench/slm_routing.py [--tasks 2000] [--seed 1] [--small scripted|smollm2]

Prints a table and writes bench/results/slm_routing.json (slm_routing_smollm2.json for the real model).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from tickets import LABELS, Ticket, tickets

from guildnet.node.agent import Agent, SkillError, TaskContext
from guildnet.node.config import resolve_db_url
from guildnet.node.flywheel.process_log import CallRecord, ProcessLog
from guildnet.node.flywheel.recording import RecordedAgent
from guildnet.node.pii import Scrubber
from guildnet.node.slm import ConfidencePolicy, ModelSkill, OpenAIChatBackend, Price, SLMAgent, Tier
from guildnet.protocols.agentfacts import Skill

RESULTS = Path(__file__).with_name("results")
SMALL = ("llama-3.2-1b", Price(0.04 / 1000, 0.04 / 1000))
LARGE = ("llama-3.3-70b", Price(0.59 / 1000, 0.79 / 1000))
LARGE_CHEAP = Price(0.12 / 1000, 0.30 / 1000)
THRESHOLD = -0.40
P_LARGE = 0.95
SCENARIOS = (0.70, 0.85, 0.95, 0.98)
SWEEP = tuple(round(0.90 + i / 100, 2) for i in range(10))
SEED_CLAIM = "10-30x cheaper (seed)"

SKILL = Skill(
    id="ticket.classify", name="Classify ticket",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    output_schema={"type": "object", "properties": {"label": {"enum": list(LABELS)}}, "required": ["label"],
                   "additionalProperties": False},
)
SPEC = ModelSkill(SKILL, "Classify the support ticket: billing (charges, invoices, refunds), shipping "
                         "(delivery, parcels), technical (bugs, errors, devices) or account (login, e-mail, users).",
                  max_tokens=32, render=lambda arguments: str(arguments["text"]))
Reply = dict[str, Any]


def logprob(rng: random.Random, mean: float, sd: float) -> float:
    return min(rng.gauss(mean, sd), -0.001)


def script_large(mix: Sequence[Ticket], seed: int) -> dict[str, Reply]:
    rng = random.Random(seed * 7919 + 1)
    replies = {}
    for ticket in mix:
        wrong = rng.choice([x for x in LABELS if x != ticket.label])
        right = rng.random() < P_LARGE
        replies[ticket.text] = {"label": ticket.label if right else wrong, "logprob": logprob(rng, -0.05, 0.03),
                                "usage": (rng.randint(350, 450), 12)}
    return replies


def script_small(mix: Sequence[Ticket], p_small: float, large: dict[str, Reply], seed: int) -> dict[str, Reply]:
    rng = random.Random(seed)
    replies = {}
    for ticket in mix:
        wrong = rng.choice([x for x in LABELS if x != ticket.label])
        if rng.random() < p_small:
            reply = {"label": ticket.label, "logprob": logprob(rng, -0.15, 0.10)}
        elif rng.random() < 0.25:
            reply = {"label": "unknown", "logprob": logprob(rng, -0.80, 0.30)}
        else:
            reply = {"label": wrong, "logprob": logprob(rng, -0.80, 0.30)}
        replies[ticket.text] = {**reply, "usage": large[ticket.text]["usage"]}
    return replies


def scripted_app(script: dict[str, Reply], usage: Callable[[str], tuple[int, int]] | None = None) -> web.Application:
    """An OpenAI-compatible server answering each ticket (the user message) as scripted."""
    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        text = body["messages"][-1]["content"]
        reply = script[text]
        prompt, completion = usage(text) if usage else reply["usage"]
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": json.dumps({"label": reply["label"]})}}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{"token": "t", "logprob": reply["logprob"], "top_logprobs": []}
                                              for _ in range(completion)]}
        return web.json_response({"model": body["model"], "choices": [choice], "usage": {
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


class ReplayProxy:
    """Forwards each ticket to a real model server once (always asking for log-probs) and replays that
    answer afterwards, so every strategy sees the same answer for the same ticket; remembers each ticket's
    token usage and mean token log-prob."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.answers: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, tuple[int, int]] = {}
        self.mean_logprob: dict[str, float] = {}
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        async def completions(request: web.Request) -> web.Response:
            body = await request.json()
            text = body["messages"][-1]["content"]
            if text not in self.answers:
                assert self.session is not None
                async with self.session.post(f"{self.upstream}/chat/completions",
                                             json={**body, "logprobs": True}) as response:
                    response.raise_for_status()
                    answer = await response.json()
                usage, tokens = answer["usage"], answer["choices"][0]["logprobs"]["content"]
                self.usage[text] = (usage["prompt_tokens"], usage["completion_tokens"])
                self.mean_logprob[text] = sum(t["logprob"] for t in tokens) / max(1, len(tokens))
                self.answers[text] = answer
            return web.json_response(self.answers[text])

        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def _close(self, _app: web.Application) -> None:
        assert self.session is not None
        await self.session.close()


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


async def answer_tickets(served: Agent, mix: Sequence[Ticket], concurrency: int) -> tuple[int, int]:
    """Send every ticket to ``served``'s skill, ``concurrency`` at a time, as a node's callers would: how many
    were answered right, and how many escalated (the SLM agent's annotation on each task)."""
    gate = asyncio.Semaphore(concurrency)
    successes = 0
    escalated = 0

    async def one(number: int, ticket: Ticket) -> None:
        nonlocal successes, escalated
        context = TaskContext(task_id=f"task-{number}", skill_id=SKILL.id)
        async with gate:
            try:
                output = await served.call(SKILL.id, {"text": ticket.text}, context)
            except SkillError:
                return
        successes += output == {"label": ticket.label}
        escalated += bool(context.annotations["slm"]["escalations"])

    await asyncio.gather(*(one(n, t) for n, t in enumerate(mix)))
    return successes, escalated

async def run_strategy(strategy: str, mix: Sequence[Ticket], urls: dict[str, str], threshold: float,
                       concurrency: int, process_log: ProcessLog | None = None) -> dict[str, Any]:
    small = OpenAIChatBackend(urls["small"], SMALL[0], price=SMALL[1], timeout=120, family="Llama-3.2",
                              parameters=1_000_000_000)
    large = OpenAIChatBackend(urls["large"], LARGE[0], price=LARGE[1], family="Llama-3.3", parameters=70_000_000_000)
    rows: list[CallRecord] = []

    async def record(row: CallRecord) -> None:
        rows.append(row)
        if process_log is not None:
            await process_log.record(row)

    if strategy == "SLM-only":
        agent = SLMAgent("bench", [SPEC], small, recorder=record)
    elif strategy == "LLM-only":
        agent = SLMAgent("bench", [SPEC], large, recorder=record)
    else:
        agent = SLMAgent("bench", [SPEC], Tier(small, ConfidencePolicy(min_mean_logprob=threshold)),
                         escalation=[large], recorder=record)
    served: Agent = agent if process_log is None else RecordedAgent(agent, process_log, "a2a")  # as a node does
    started = time.perf_counter()
    async with small, large:
        successes, escalated = await answer_tickets(served, mix, concurrency)
    elapsed = time.perf_counter() - started
    cost = sum(r.cost for r in rows)
    cheap = sum(LARGE_CHEAP.cost(r.tokens_in, r.tokens_out) if r.model == LARGE[0] else r.cost for r in rows)
    return {
        "strategy": strategy, "tasks": len(mix), "success_rate": successes / len(mix),
        "escalation_rate": escalated / len(mix), "model_calls": len(rows), "cost": cost,
        "cost_per_success": cost / successes if successes else None,
        "cost_per_success_cheap_70b": cheap / successes if successes else None,
        "calls_per_s": len(rows) / elapsed,
    }


async def compare(mix: Sequence[Ticket], urls: dict[str, str], threshold: float, concurrency: int,
                  p_small: float | None, process_log: ProcessLog | None = None) -> dict[str, Any]:
    results = {s: await run_strategy(s, mix, urls, threshold, concurrency,
                                     process_log if s == "SLM-first" else None)
               for s in ("SLM-only", "LLM-only", "SLM-first")}  # SLM-only first: it fills the replay cache
    llm, first, slm = results["LLM-only"], results["SLM-first"], results["SLM-only"]
    ratios = {key: llm[key] / first[key] if first[key] and llm[key] else None
              for key in ("cost_per_success", "cost_per_success_cheap_70b")}
    kept = first["success_rate"] / llm["success_rate"]
    ceiling = (llm["cost"] / llm["model_calls"]) / (slm["cost"] / slm["model_calls"])
    return {"p_small": p_small if p_small is not None else slm["success_rate"], "threshold": threshold,
            "price_ratio_per_call": ceiling, "p_large": P_LARGE, "results": list(results.values()),
            "slm_first_success_vs_llm": kept, "llm_over_slm_first_cost_ratio": ratios["cost_per_success"],
            "llm_over_slm_first_cost_ratio_cheap_70b": ratios["cost_per_success_cheap_70b"],
            "goal_met": kept >= 0.95 and first["cost_per_success"] <= 0.10 * llm["cost_per_success"]}


async def scripted_scenario(p_small: float, tasks: int, seed: int) -> dict[str, Any]:
    mix = tickets(tasks, seed=seed)
    large = script_large(mix, seed)
    async with serve(scripted_app(script_small(mix, p_small, large, seed))) as small_url, \
            serve(scripted_app(large)) as large_url:
        return await compare(mix, {"small": small_url, "large": large_url}, THRESHOLD, 32, p_small)


def calibrate(mix: Sequence[Ticket], answers: list[tuple[str | None, float | None, int]], llm_cost: float,
              slm_cost: float) -> float:
    """The cheapest log-prob threshold that keeps >= 95 % of LLM-only success on calibration tickets.

    ``answers``: per ticket, the small model's label (``None`` if schema-invalid), mean log-prob and prompt
    tokens. Expected success and cost per threshold follow from P_LARGE and the per-call prices.
    """
    candidates = [*sorted({lp for _, lp, _ in answers if lp is not None}), 0.0]
    best: tuple[float, float] | None = None
    for threshold in candidates:
        success = cost = 0.0
        for ticket, (label, lp, _) in zip(mix, answers, strict=True):
            accepted = label is not None and lp is not None and lp >= threshold
            success += (label == ticket.label) if accepted else P_LARGE
            cost += slm_cost + (0.0 if accepted else llm_cost)
        if success / len(mix) >= 0.95 * P_LARGE and (best is None or cost < best[1]):
            best = (threshold, cost)
    return best[0] if best else 0.0  # 0.0: escalate everything (a model is never certain of every token)


async def smollm2_scenario(tasks: int, calibration: int, seed: int, process_log: ProcessLog | None) -> dict[str, Any]:
    from guildnet.node.slm.embedded import EmbeddedServer

    mix = tickets(calibration + tasks, seed=seed)
    held_out, evaluated = mix[:calibration], mix[calibration:]
    large_script = script_large(mix, seed)
    async with EmbeddedServer(n_ctx=2048, n_parallel=2) as embedded:
        proxy = ReplayProxy(embedded)
        async with serve(proxy.app()) as small_url, \
                serve(scripted_app(large_script, usage=lambda text: (proxy.usage[text][0], 12))) as large_url:
            urls = {"small": small_url, "large": large_url}
            started = time.perf_counter()
            probe = OpenAIChatBackend(small_url, SMALL[0], timeout=120)
            agent = SLMAgent("calibrate", [SPEC], Tier(probe, ConfidencePolicy(min_mean_logprob=-1e9)))
            answers: list[tuple[str | None, float | None, int]] = []
            async with probe:
                for number, ticket in enumerate(held_out):
                    context = TaskContext(task_id=f"cal-{number}", skill_id=SKILL.id)
                    try:
                        output = await agent.call(SKILL.id, {"text": ticket.text}, context)
                    except SkillError:
                        output = {}
                    answers.append((output.get("label"), proxy.mean_logprob[ticket.text], proxy.usage[ticket.text][0]))
            slm_cost = sum(SMALL[1].cost(tokens, 12) for *_, tokens in answers) / len(answers)
            llm_cost = sum(LARGE[1].cost(tokens, 12) for *_, tokens in answers) / len(answers)
            threshold = calibrate(held_out, answers, llm_cost, slm_cost)
            calibration_right = sum(a[0] == t.label for a, t in zip(answers, held_out, strict=True)) / calibration
            result = await compare(evaluated, urls, threshold, 2, None, process_log)
            result.update(calibration_tickets=calibration, calibration_small_right=calibration_right,
                          small_model="SmolLM2-135M-Instruct Q4_1 (embedded, real)",
                          seconds=time.perf_counter() - started)
            return result


def per_1k(cost: float | None) -> str:
    return "no success" if cost is None else f"{cost * 1000:.5f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def table(scenarios: list[dict[str, Any]]) -> str:
    lines = [f"{'p_small':>7} {'strategy':<10} {'success':>8} {'escal.':>7} {'$/1k successes':>15} "
             f"{'(cheap 70B)':>12}"]
    for s in scenarios:
        for r in s["results"]:
            lines.append(f"{s['p_small']:>7.2f} {r['strategy']:<10} {r['success_rate']:>8.1%} "
                         f"{r['escalation_rate']:>7.1%} {per_1k(r['cost_per_success']):>15} "
                         f"{per_1k(r['cost_per_success_cheap_70b']):>12}")
        lines.append(f"{'':>7} SLM-first keeps {s['slm_first_success_vs_llm']:.1%} of LLM-only success; "
                     f"LLM-only / SLM-first cost per success = {ratio(s['llm_over_slm_first_cost_ratio'])} "
                     f"({ratio(s['llm_over_slm_first_cost_ratio_cheap_70b'])} with the cheap 70B; "
                     f"ceiling = price ratio per call {s['price_ratio_per_call']:.1f}x); "
                     f"seed claim: {SEED_CLAIM}; goal (>=95 % success, <=10 % cost) "
                     f"{'met' if s['goal_met'] else 'NOT met'}")
    return "\n".join(lines)


def sweep_line(sweep: list[dict[str, Any]]) -> str:
    met = [s["p_small"] for s in sweep if s["goal_met"]]
    ratios = ", ".join(f"{s['p_small']:.2f}: {s['llm_over_slm_first_cost_ratio']:.1f}x" for s in sweep)
    cheap = max(s["llm_over_slm_first_cost_ratio_cheap_70b"] for s in sweep)
    first = f"first met at p_small = {min(met):.2f}" if met else "not met at any p_small <= 0.99"
    return (f"sweep, LLM-only / SLM-first cost per success by p_small: {ratios}\n"
            f"goal {first} (Groq-priced 70B); with the cheap 70B the best ratio is {cheap:.1f}x (never met)")


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=None,
                        help="tasks per scenario (default 2000 scripted, 300 with smollm2: ~0.25 s each)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--small", choices=("scripted", "smollm2"), default="scripted",
                        help="the small model: scripted shares (default) or the real embedded SmolLM2-135M")
    parser.add_argument("--calibration", type=int, default=100,
                        help="with --small smollm2: tickets used to choose the log-prob threshold (default 100)")
    parser.add_argument("--process-db", metavar="URL",
                        help="with --small smollm2: record the SLM-first run as a node would (scrubbed process data), "
                             "for guildnet flywheel report/clusters/export --db URL")
    args = parser.parse_args(argv)
    if args.process_db and args.small != "smollm2":
        parser.error("--process-db records the real model's SLM-first run: use it with --small smollm2")
    args.tasks = args.tasks or (300 if args.small == "smollm2" else 2000)
    out: dict[str, Any] = {
        "machine": platform.machine(), "python": platform.python_version(), "tasks_per_scenario": args.tasks,
        "seed": args.seed, "small": args.small, "p_large": P_LARGE,
        "prices_usd_per_1m": {"small": [0.04, 0.04], "large": [0.59, 0.79], "large_cheap": [0.12, 0.30]},
        "seed_claim": SEED_CLAIM,
    }
    if args.small == "smollm2":
        process_log = None
        if args.process_db:
            process_log = await ProcessLog.open(resolve_db_url(args.process_db, Path.cwd()), Scrubber())
        try:
            scenario = await smollm2_scenario(args.tasks, args.calibration, args.seed, process_log)
        finally:
            if process_log is not None:
                await process_log.close()
        print(table([scenario]))
        print(f"SmolLM2-135M right on {scenario['p_small']:.1%} of {args.tasks} evaluation tickets "
              f"({scenario['calibration_small_right']:.1%} of {args.calibration} calibration tickets); "
              f"threshold chosen on calibration: mean log-prob >= {scenario['threshold']:.3f}; "
              f"{scenario['seconds']:.0f} s")
        out["scenarios"] = [scenario]
        name = "slm_routing_smollm2.json"
    else:
        out["threshold_mean_logprob"] = THRESHOLD
        out["scenarios"] = [await scripted_scenario(p, args.tasks, args.seed) for p in SCENARIOS]
        print(table(out["scenarios"]))
        out["sweep"] = [await scripted_scenario(p, args.tasks, args.seed) for p in SWEEP]
        print(sweep_line(out["sweep"]))
        name = "slm_routing.json"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
