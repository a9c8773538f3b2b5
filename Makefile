# Tidegate developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv prereqs tools check lint typecheck contracts unit e2e test cluster-up cluster-down demo bench clean

all: check

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

prereqs:
	@e2e/cluster/prereqs.sh

lint: venv
	$(BIN)/ruff check common rollouts analysis gitops notifications views dashboard cli tests e2e bench examples

typecheck: venv
	$(BIN)/mypy common rollouts analysis gitops notifications views dashboard cli

contracts: venv
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest tests -q -p no:cacheprovider

## make check: ruff, mypy (strict on rollouts/ and analysis/), import contracts, unit tests
check: lint typecheck contracts unit

cluster-up: venv prereqs
	@e2e/cluster/up.sh

cluster-down:
	@e2e/cluster/down.sh

## make e2e: end-to-end tests against the real local control plane (started if needed)
e2e: venv prereqs
	@e2e/run.sh $(BIN)/pytest e2e -m e2e -p no:cacheprovider -q $(PYTEST_ARGS)

## tools: build (once, cached by version) the pinned binaries; the sync module's unit
## tests render with the real helm and kustomize, so `make test` builds them before `check`
tools: prereqs
	@e2e/cluster/build.sh >/dev/null

## make test: everything; the README's test command and what CI runs
test: tools check e2e

## make demo: the main job on the embedded local cluster (DEMO_ARGS=--linger keeps the controller
## and the dashboard running at the end)
demo: venv prereqs
	@e2e/cluster/up.sh
	@$(BIN)/python -m examples.demo $(DEMO_ARGS)

bench: venv prereqs
	@e2e/run.sh $(BIN)/python bench/rollouts_scale.py

clean: cluster-down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
