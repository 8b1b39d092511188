"""Short fine-tuning experiments for the flywheel: one training setting in, held-out / dev / novel accuracy, the
confusion between categories and the escalation threshold's calibration out.

A full ``bench/flywheel_cycle.py`` costs ~45-90 minutes here, mostly the base model answering the logged and
new tickets; this builds the same training data directly: the first ``--log`` tickets of bench/tickets.py
(seed 1), each with the prompt ``SLMAgent`` sends (ticket text scrubbed, as the process log stores it) and the
answer the scripted large model gives it in the cycle (right on 95 %, the same script and seed), which is the
answer a cycle accepts when the base model keeps none (the cycle's log run escalates all of them at its
initial threshold). Split by time as ``guildnet flywheel train`` does: the newest ``--heldout-fraction`` held
out. Then ``training.train`` with the given settings and three evaluation sets through llama.cpp with the
adapter, as ``guildnet flywheel evaluate`` scores them: the held-out window, ``DEV`` (to choose settings on) and
bench/tickets.py's ``NOVEL`` (the test set: report it, choose nothing by it).

    python bench/flywheel_tune.py [--epochs 1] [--lr 1e-3] [--rank 16] [--dropout 0.05] [--warmup 0]
                                  [--neftune-alpha A] [--train-seed 0] [--keep DIR]
    python bench/flywheel_tune.py --adapter models/ticket.classify/candidates/ID/adapter.gguf   # score only

Prints a summary and appends one JSON line per run to bench/results/flywheel_tune.jsonl (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flywheel_cycle import novel_examples
from slm_routing import SKILL, SPEC, script_large
from tickets import LABELS, tickets

from guildnet.node.flywheel import training
from guildnet.node.flywheel.evaluation import Answer as Judged
from guildnet.node.flywheel.evaluation import calibrate, schema_of
from guildnet.node.pii import Scrubber
from guildnet.node.slm.agent import SCHEMA_INSTRUCTION
from guildnet.node.slm.backends import BackendError, Capabilities, ChatRequest, OpenAIChatBackend
from guildnet.node.slm.embedded import EmbeddedServer

RESULTS = Path(__file__).with_name("results")
# Development set for choosing training settings: 40 more hand-written tickets in none of the templates'
# phrasings, written apart from bench/tickets.py's NOVEL so that NOVEL stays a test set nothing is chosen on.
# The held-out window cannot choose between settings that all reach its ceiling (the teacher's 6 % mistakes).
DEV = {
    "billing": ["Why is there a late payment fee when I paid on time?",
                "Could you send me a quote for twenty more seats?",
                "The coupon expired before I could use it, can I still get the lower price?",
                "I see a pending hold of one dollar on my card from you.",
                "Your prices went up without any notice to customers.",
                "Can I pay every quarter instead of every month?",
                "I want my money back for the months I did not use the service.",
                "The checkout shows dollars but I want to pay in pounds.",
                "Do you offer student discounts on the premium tier?",
                "Our finance team needs the bills addressed to the head office."],
    "shipping": ["Which courier do you use for deliveries to Norway?",
                 "The driver threw my parcel over the fence and it got soaked.",
                 "My neighbour received my package instead of me.",
                 "Can I collect my purchase from a store instead of home delivery?",
                 "The estimated arrival date keeps moving back every day.",
                 "How much does it cost to send an order to Australia?",
                 "I was out when the van came, how do I rebook the drop-off?",
                 "Can you split my order into two shipments?",
                 "The label on the box had someone else's name on it.",
                 "My sofa needs to be carried up to the third floor on arrival."],
    "technical": ["The save button does nothing when I tap it on Android.",
                  "Charts in the analytics view do not render in Firefox.",
                  "I keep getting a certificate warning when I open your site.",
                  "The mobile app eats memory and my phone gets hot.",
                  "Keyboard shortcuts stopped working after the redesign.",
                  "The spreadsheet import skips every other row.",
                  "Your installer says my operating system is not supported.",
                  "Sound alerts play twice for every message.",
                  "The calendar sync shows events in the wrong time zone.",
                  "Scanning the QR code with the camera does nothing."],
    "account": ["How can I update the name on my profile after getting married?",
                "I need admin rights for my new team member.",
                "Please reopen my old account, I closed it by mistake.",
                "Where can I download a copy of all my personal data?",
                "I want to stop receiving marketing emails from you.",
                "My security questions are not accepted anymore.",
                "Can two of my logins share the same email?",
                "Please turn off single sign-on for our team so people can use passwords.",
                "How do I change my password?",
                "I got a message that my account is suspended, why?"],
}
SYSTEM = (f"{SPEC.system_prompt}{SCHEMA_INSTRUCTION}"
          f"{json.dumps(SKILL.output_schema, sort_keys=True, separators=(',', ':'))}")


def examples(count: int, seed: int, clean: bool) -> list[dict[str, Any]]:
    """The cycle's accepted answers for the first ``count`` tickets, oldest first; ``clean``: the true labels
    instead (what a perfect large model would have taught)."""
    mix = tickets(count, seed=seed)
    large = script_large(mix, seed)
    scrubber = Scrubber()
    return [{"prompt": [{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": scrubber.scrub_text(t.text)}],
             "completion": [{"role": "assistant",
                             "content": json.dumps({"label": t.label if clean else large[t.text]["label"]})}],
             "truth": t.label} for t in mix]


async def answers(base_url: str, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each prompt once, greedy, schema-constrained, with log-probs, as evaluation.answer_all asks."""
    gate = asyncio.Semaphore(2)
    async with OpenAIChatBackend(base_url, "tune", timeout=180,
                                 capabilities=Capabilities(structured_output="json_schema")) as backend:
        async def one(row: dict[str, Any]) -> dict[str, Any]:
            request = ChatRequest(messages=row["prompt"], schema=schema_of(row["prompt"]), max_tokens=64,
                                  logprobs=True)
            async with gate:
                try:
                    result = await backend.chat(request)
                    label = json.loads(result.content or "").get("label")
                except (BackendError, ValueError, AttributeError):
                    return {"label": None, "logprob": None}
            return {"label": label, "logprob": result.mean_logprob, "tokens": result.tokens_out}

        return list(await asyncio.gather(*(one(r) for r in rows)))


def summary(rows: Sequence[dict[str, Any]], got: Sequence[dict[str, Any]]) -> dict[str, Any]:
    expected = [json.loads(r["completion"][0]["content"])["label"] for r in rows]
    judged = [Judged(g["label"] in LABELS, g["label"] == e, g["logprob"]) for g, e in zip(got, expected, strict=True)]
    n = len(rows)
    calibration = {}
    for target in (0.95, 0.90, 0.85):
        threshold, kept, kept_accuracy = calibrate(judged, target)
        calibration[f"{target:.2f}"] = {"threshold": threshold, "kept": kept, "kept_accuracy": kept_accuracy}
    confusion = Counter(f"{r['truth']}->{g['label']}" for r, g in zip(rows, got, strict=True))
    ranked = sorted(((g["logprob"], g["label"] == e) for g, e in zip(got, expected, strict=True)
                     if g["logprob"] is not None), reverse=True)
    quarters = [ranked[i * len(ranked) // 4:(i + 1) * len(ranked) // 4] for i in range(4)]
    return {"n": n, "accuracy": sum(j.correct for j in judged) / n,
            "accuracy_vs_truth": sum(g["label"] == r["truth"] for r, g in zip(rows, got, strict=True)) / n,
            "label_noise": sum(e != r["truth"] for r, e in zip(rows, expected, strict=True)) / n,
            "calibration": calibration,
            "accuracy_by_confidence_quarter": [round(sum(c for _, c in q) / len(q), 3) if q else None
                                               for q in quarters],
            "predicted": dict(Counter(str(g["label"]) for g in got)), "confusion": dict(sorted(confusion.items()))}


async def score(adapter: Path | None, sets: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    async with EmbeddedServer(lora=adapter, alias="tune", n_parallel=2, threads=1) as base_url:
        return {name: summary(rows, await answers(base_url, rows)) for name, rows in sets.items()}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--log", type=int, default=400)
    parser.add_argument("--heldout-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clean", action="store_true", help="train on the true labels, not the accepted ones")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--lr", type=float, default=training.TrainSettings().lr)
    parser.add_argument("--rank", type=int, default=training.TrainSettings().rank)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=training.TrainSettings().dropout)
    parser.add_argument("--warmup", type=float, default=training.TrainSettings().warmup,
                        help="warm-up steps, or a fraction of all steps when below 1")
    parser.add_argument("--neftune-alpha", type=float, default=training.TrainSettings().neftune_alpha)
    parser.add_argument("--train-seed", type=int, default=0, help="torch / trainer seed")
    parser.add_argument("--base", action="store_true", help="score the base model only, no training")
    parser.add_argument("--adapter", type=Path, help="score this GGUF adapter (e.g. a cycle's), no training")
    parser.add_argument("--keep", type=Path, help="keep the training data and adapter in this folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "flywheel_tune.jsonl")
    args = parser.parse_args(argv)
    rows = examples(args.log, args.seed, args.clean)
    cut = len(rows) - round(len(rows) * args.heldout_fraction)
    novel = [{**row, "truth": json.loads(row["completion"][0]["content"])["label"]} for row in novel_examples()]
    dev = [{"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
            "completion": [{"role": "assistant", "content": json.dumps({"label": label})}], "truth": label}
           for label, texts in DEV.items() for text in texts]
    sets = {"heldout": rows[cut:], "dev": dev, "novel": novel}
    settings = training.TrainSettings(epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, rank=args.rank,
                                      batch=args.batch, dropout=args.dropout, warmup=args.warmup,
                                      neftune_alpha=args.neftune_alpha, seed=args.train_seed)
    record: dict[str, Any] = {"log": args.log, "clean": args.clean, "train_rows": cut,
                              "settings": None if args.base or args.adapter else asdict(settings),
                              "adapter": str(args.adapter) if args.adapter else None}
    with tempfile.TemporaryDirectory(prefix="flywheel-tune-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        adapter = args.adapter
        if not args.base and adapter is None:
            train_file = work / "train.jsonl"
            train_file.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "completion")}) + "\n"
                                          for r in rows[:cut]))
            result = training.train(train_file, work / "run", settings)
            adapter = result.adapter
            record.update(steps=result.steps, train_seconds=result.train_seconds, loss_first=result.loss_first,
                          loss_last=result.loss_last)
        started = time.perf_counter()
        record.update(asyncio.run(score(adapter, sets)))
        record["score_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
    for name in sets:
        s = record[name]
        print(f"{name}: accuracy {s['accuracy']:.1%} (vs truth {s['accuracy_vs_truth']:.1%}), "
              f"kept at 0.95/0.90 {s['calibration']['0.95']['kept']:.1%}/{s['calibration']['0.90']['kept']:.1%}, "
              f"by confidence quarter {s['accuracy_by_confidence_quarter']}, predicted {s['predicted']}")


if __name__ == "__main__":
    main(sys.argv[1:])
