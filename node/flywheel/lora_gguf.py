"""A PEFT LoRA adapter of the bundled SmolLM2 as a GGUF LoRA adapter that llama.cpp loads beside its base GGUF.

Why an adapter and not a merged GGUF: the base stays the bundled Q4_1 file (93.8 MiB, never copied); the adapter
is a few MB of float16; llama.cpp applies it at load time with no re-quantisation (a merged model would need
``llama-quantize``, a compiled tool, to get back to Q4_1, or be served as a 145 MB q8_0); and the weights the
adapter was trained against are the Q4_1 weights themselves (transformers de-quantises the same file), so what
is served is what was evaluated.

The format is llama.cpp's ``convert_lora_to_gguf.py`` output, written here with the ``gguf`` package because
that script ships only inside llama.cpp's source tree: ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha``, and per adapted matrix two tensors ``blk.N.<name>.weight.lora_a`` (PEFT's ``lora_A``,
``[rank, in]``) and ``.lora_b`` (``lora_B``, ``[out, rank]``). llama.cpp stores Llama's q and k projections with
their rows permuted for its rotary layout (transformers un-permutes them when it loads a GGUF), so ``lora_b`` of
those two is permuted the same way. Needs numpy, safetensors and gguf (the ``train`` extra), not torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_MODULES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down"}
_PEFT_NAME = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")


class AdapterFormatError(ValueError):
    """The PEFT adapter has a tensor this converter cannot place in llama.cpp's Llama layout."""


def _permute(weights: Any, heads: int) -> Any:
    """llama.cpp's row order for a rotary projection (``LlamaModel.permute`` in convert_hf_to_gguf.py)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def convert(adapter_dir: Path, out_file: Path, *, n_head: int, n_head_kv: int, name: str) -> int:
    """Write ``adapter_dir`` (``adapter_config.json`` + ``adapter_model.safetensors``) as a GGUF LoRA adapter;
    return the number of adapted matrices."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        match = _PEFT_NAME.match(key)
        if match is None or match.group(2) not in _MODULES:
            raise AdapterFormatError(f"cannot map PEFT tensor {key!r} to a llama.cpp tensor")
        layer, module, part = int(match.group(1)), match.group(2), match.group(3)
        if part == "B" and module in ("self_attn.q_proj", "self_attn.k_proj"):
            value = _permute(value, n_head if module == "self_attn.q_proj" else n_head_kv)
        pairs.setdefault(f"blk.{layer}.{_MODULES[module]}.weight", {})[part] = value
    writer = gguf.GGUFWriter(str(out_file), "llama")
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    writer.add_name(name)
    for base, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise AdapterFormatError(f"{base}: lora_A and lora_B must come in pairs")
        writer.add_tensor(f"{base}.lora_a", np.ascontiguousarray(pair["A"], dtype=np.float16))
        writer.add_tensor(f"{base}.lora_b", np.ascontiguousarray(pair["B"], dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(pairs)
