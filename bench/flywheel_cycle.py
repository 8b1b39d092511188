"""One turn of the flywheel, measured: process data in, a fine-tuned small model out, served, and what it changed.

Ticket benchmark (bench/tickets.py), the scripted large model of bench/slm_routing.py (right on 95 %) and the
real embedded SmolLM2-135M as the small one:

1. ``--log`` tickets go through an SLM-first ``SLMAgent`` (base SmolLM2 first, escalating below
   ``--initial-threshold``) recorded into a node's process log (scrubbed), as a serving node records them;
2. one cycle through the real CLI: ``guildnet flywheel train`` (nice'd, on the older 80 % of the accepted
   answers), ``evaluate`` (candidate vs the base on the newest 20 %, thresholds chosen there, signed card),
   ``promote``;
3. ``--new`` new tickets, three times: SLM-first with the model that served before (base, with the threshold
   the evaluation chose for it), SLM-first after the promotion (the server hot-swapped by ``ServedModel``), and
   LLM-only. Plus 40 hand-written tickets phrased unlike any template ("novel"), small model alone.

Costs: every call is priced on the small model's token counts for that ticket (the large one is charged the
same prompt), at the two prices of bench/slm_routing.py: ~1B $0.04/$0.04 per 1M tokens against a Groq-priced
70B $0.59/$0.79 (14.9x per call) and a cheap 70B $0.12/$0.30 (3.1x).

    python bench/flywheel_cycle.py [--log 400] [--new 300] [--epochs 1] [--lr X] [--rank R]
                                   [--target-precision P] [--out FILE]

Prints a table and writes bench/results/flywheel_cycle.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slm_routing import LARGE, LARGE_CHEAP, SKILL, SMALL, SPEC, answer_tickets, script_large, scripted_app, serve
from tickets import NOVEL, Ticket, tickets

from guildnet.node.config import resolve_db_url
from guildnet.node.flywheel.evaluation import score
from guildnet.node.flywheel.models import ModelStore
from guildnet.node.flywheel.process_log import CallRecord, ProcessLog
from guildnet.node.flywheel.recording import RecordedAgent
from guildnet.node.flywheel.serving import ServedModel
from guildnet.node.pii import Scrubber
from guildnet.node.slm import ConfidencePolicy, OpenAIChatBackend, Price, SLMAgent
from guildnet.node.slm.agent import SCHEMA_INSTRUCTION
from guildnet.protocols import keyfile

RESULTS = Path(__file__).with_name("results")
GUILDNET = str(Path(sys.executable).with_name("guildnet"))
TICKET = re.compile(r"\(ticket (\d+)\)")


class Ledger:
    """Model calls of one run, priced per call. The small model's token counts for each ticket are kept so the
    scripted large model is charged the same prompt."""

    def __init__(self, usage: dict[str, tuple[int, int]], process_log: ProcessLog | None = None) -> None:
        self.usage = usage
        self.process_log = process_log
        self.rows: list[CallRecord] = []

    async def record(self, row: CallRecord) -> None:
        self.rows.append(row)
        if row.model != LARGE[0] and row.tokens_in:
            self.usage.setdefault(row.input["arguments"]["text"], (row.tokens_in, row.tokens_out))
        if self.process_log is not None:
            await self.process_log.record(row)

    def cost(self, large_price: Price) -> float:
        return sum((large_price if row.model == LARGE[0] else SMALL[1]).cost(row.tokens_in, row.tokens_out)
                   for row in self.rows)


async def run(agent: SLMAgent, mix: Sequence[Ticket], ledger: Ledger, process_log: ProcessLog | None = None,
              concurrency: int = 4) -> dict[str, Any]:
    served = agent if process_log is None else RecordedAgent(agent, process_log, "a2a")
    agent.recorder = ledger.record
    started = time.perf_counter()
    success, escalated = await answer_tickets(served, mix, concurrency)
    n = len(mix)
    return {"tasks": n, "success_rate": success / n, "escalation_rate": escalated / n,
            "cost_per_success": ledger.cost(LARGE[1]) / success if success else None,
            "cost_per_success_cheap_70b": ledger.cost(LARGE_CHEAP) / success if success else None,
            "models": sorted({r.model or "?" for r in ledger.rows}), "seconds": round(time.perf_counter() - started, 1)}


def cli(*args: str, nice: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``guildnet flywheel ARGS`` as a user runs it (training nice'd: the machine is shared)."""
    command = (["nice", "-n", "10"] if nice else []) + [GUILDNET, "flywheel", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done


def accepted_right(folder: Path, mix: Sequence[Ticket]) -> dict[str, float]:
    """Share of the training and held-out answers (the accepted ones) that are the ticket's true label: the
    ceiling the held-out accuracy is measured against, and the noise the model learns from."""
    shares = {}
    for side in ("train", "validation"):
        right = []
        for line in (folder / f"{side}.jsonl").read_text().splitlines():
            row = json.loads(line)
            number = TICKET.search(row["prompt"][-1]["content"])
            if number:
                label = json.loads(row["completion"][0]["content"])["label"]
                right.append(label == mix[int(number.group(1)) - 1].label)
        shares[side] = sum(right) / len(right) if right else 0.0
    return shares


def novel_examples() -> list[dict[str, Any]]:
    system = (f"{SPEC.system_prompt}{SCHEMA_INSTRUCTION}"
              f"{json.dumps(SKILL.output_schema, sort_keys=True, separators=(',', ':'))}")
    return [{"prompt": [{"role": "system", "content": system}, {"role": "user", "content": text}],
             "completion": [{"role": "assistant", "content": json.dumps({"label": label})}]}
            for label, texts in NOVEL.items() for text in texts]


async def cycle(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    mix = tickets(args.log + args.new, seed=args.seed)
    logged, new = mix[:args.log], mix[args.log:]
    usage: dict[str, tuple[int, int]] = {}
    key_file = work / "org.key"
    keyfile.load_or_create(key_file)
    db_cli = f"sqlite:///{work / 'node.db'}"
    db = resolve_db_url(db_cli, work)
    models = work / "models"
    store = ModelStore(models, SKILL.id)
    large_script = script_large(mix, args.seed)
    async with serve(scripted_app(large_script, usage=lambda text: (usage.get(text, (400, 12))[0], 12))) as url:
        large = OpenAIChatBackend(url, LARGE[0], price=LARGE[1], timeout=120, family="Llama-3.3",
                                  parameters=70_000_000_000)
        agent = SLMAgent("bench", [SPEC], large, escalation=[large])
        served = ServedModel(store, agent, base_policy=ConfidencePolicy(min_mean_logprob=args.initial_threshold),
                             threads=1)
        await served.reload()
        process_log = await ProcessLog.open(db, Scrubber())
        try:
            log_run = await run(agent, logged, Ledger(usage, process_log), process_log)
        finally:
            await process_log.close()
        print(f"logged {args.log} tasks: {log_run}", file=sys.stderr)

        started = time.perf_counter()
        tuning = [arg for name in ("lr", "rank") if getattr(args, name) is not None
                  for arg in (f"--{name}", str(getattr(args, name)))]
        candidate = cli("train", "--skill", SKILL.id, "--db", db_cli, "--models", str(models), "--epochs",
                        str(args.epochs), "--threads", str(args.threads), *tuning,
                        nice=True).stdout.strip().splitlines()[-1]
        train_wall = time.perf_counter() - started
        precision = [] if args.target_precision is None else ["--target-precision", str(args.target_precision)]
        card = json.loads(cli("evaluate", candidate, "--skill", SKILL.id, "--models", str(models), "--key",
                              str(key_file), *precision, "--json").stdout)
        print(f"evaluated: {card['verdict']}", file=sys.stderr)

        served.base_policy = ConfidencePolicy(min_mean_logprob=card["scores"]["current"]["threshold"])
        await served.aclose()
        await served.reload()  # the base again, with the threshold its evaluation chose
        before = await run(agent, new, Ledger(usage))
        promoted = cli("promote", candidate, "--skill", SKILL.id, "--models", str(models), "--key", str(key_file),
                       check=False)
        swapped = await served.reload()
        after = await run(agent, new, Ledger(usage))
        await served.aclose()
        llm_only = await run(SLMAgent("bench", [SPEC], large), new, Ledger(usage))
        await large.aclose()

    examples = novel_examples()
    novel_before = await score(None, "smollm2", examples, card["target_precision"])
    novel_after = await score(store.adapter(candidate), f"smollm2+{candidate}", examples, card["target_precision"])
    training = json.loads((store.candidate(candidate) / "training.json").read_text())

    def side(run_: dict[str, Any], heldout: dict[str, Any], novel: Any) -> dict[str, Any]:
        return {"heldout_accuracy": heldout["accuracy"], "novel_accuracy": novel.accuracy,
                "escalation_rate": run_["escalation_rate"],
                "success_vs_llm_only": run_["success_rate"] / llm_only["success_rate"],
                "cost_per_success_vs_llm_only": run_["cost_per_success"] / llm_only["cost_per_success"]
                if run_["cost_per_success"] else None,
                "cost_per_success_vs_llm_only_cheap_70b": run_["cost_per_success_cheap_70b"]
                / llm_only["cost_per_success_cheap_70b"] if run_["cost_per_success_cheap_70b"] else None,
                "threshold": heldout["threshold"], "heldout_kept": heldout["kept"], "run": run_}

    return {
        "scale": {"logged": args.log, "new": args.new, "epochs": args.epochs, "threads": args.threads,
                  "seed": args.seed, "initial_threshold": args.initial_threshold},
        "training_settings": training["settings"], "target_precision": card["target_precision"],
        "candidate": candidate, "promoted": promoted.returncode == 0,
        "promote_output": (promoted.stdout or promoted.stderr).strip(), "hot_swapped": swapped,
        "before": side(before, card["scores"]["current"], novel_before),
        "after": side(after, card["scores"]["candidate"], novel_after),
        "llm_only": llm_only, "log_run": log_run, "accepted_right": accepted_right(store.candidate(candidate), mix),
        "train_seconds": training["train_seconds"], "train_wall_seconds": round(train_wall, 1),
        "train_steps": training["steps"], "train_rows": training["rows"], "peak_rss_mb": training["peak_rss_mb"],
        "bench_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "card": card,
    }


def table(result: dict[str, Any]) -> str:
    rows = [("held-out accuracy (vs accepted answers)", "heldout_accuracy", "{:.1%}", ">= 85 %"),
            ("novel phrasings accuracy", "novel_accuracy", "{:.1%}", ">= 70 %"),
            ("escalation rate (new tasks)", "escalation_rate", "{:.1%}", "<= 25 %"),
            ("success vs LLM-only", "success_vs_llm_only", "{:.1%}", ">= 97 %"),
            ("cost/success vs LLM-only (14.9x)", "cost_per_success_vs_llm_only", "{:.2f}x", "<= 0.3x"),
            ("cost/success vs LLM-only (3.1x)", "cost_per_success_vs_llm_only_cheap_70b", "{:.2f}x", "-"),
            ("threshold (mean logprob)", "threshold", "{:.3f}", "-")]
    lines = [f"{'':<42} {'before':>9} {'after':>9}  goal"]
    for label, key, spec, goal in rows:
        b, a = result["before"][key], result["after"][key]
        lines.append(f"{label:<42} {spec.format(b) if b is not None else '-':>9} "
                     f"{spec.format(a) if a is not None else '-':>9}  {goal}")
    lines.append(f"LLM-only success {result['llm_only']['success_rate']:.1%}; training {result['train_steps']} steps "
                 f"on {result['train_rows']} rows in {result['train_seconds']:.0f} s, peak RSS "
                 f"{result['peak_rss_mb']} MB; promoted: {result['promoted']} ({result['promote_output']})")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--log", type=int, default=400, help="tasks logged before the cycle")
    parser.add_argument("--new", type=int, default=300, help="new tasks after it")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--lr", type=float, help="learning rate (default: guildnet flywheel train's)")
    parser.add_argument("--rank", type=int, help="LoRA rank (default: guildnet flywheel train's)")
    parser.add_argument("--target-precision", type=float,
                        help="for the escalation threshold (default: guildnet flywheel evaluate's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--initial-threshold", type=float, default=-0.5,
                        help="the base model's escalation threshold while the first tasks are logged")
    parser.add_argument("--out", type=Path, default=RESULTS / "flywheel_cycle.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flywheel-cycle-") as tmp:
        result = asyncio.run(cycle(args, Path(tmp)))
    result.update(machine=platform.machine(), python=platform.python_version())
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
