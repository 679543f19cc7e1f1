# Two commands matter: `make demo` (materialise the asset graph on the embedded F1 database) and
# `make test` (the whole suite, ruff and the layer rules). Both create and fill .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every artifact lives under .kumo/ next to the code unless these are overridden.
export KUMO_HOME ?= $(CURDIR)/.kumo
export DAGSTER_HOME ?= $(KUMO_HOME)/dagster
export KUMO_DATA_PLANE ?= $(KUMO_HOME)/data
# pip knows the local wheel folder (CPU torch) from its config; uv must be told. Empty on other machines.
FIND_LINKS := $(shell pip config get global.find-links 2>/dev/null)
UV_FIND_LINKS := $(if $(FIND_LINKS),--find-links $(FIND_LINKS),)

.PHONY: install demo test lint dev lock clean

$(BIN)/.installed: pyproject.toml requirements.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || uv venv --quiet --python $(PYTHON) $(VENV)
	uv pip install --quiet --compile-bytecode --python $(BIN)/python $(UV_FIND_LINKS) -r requirements.lock
	uv pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(BIN)/.installed

# The day the demo predicts for: the eve of the 2025 season (each prediction sees only rows up to it).
DEMO_DAY ?= 2025-03-01
SERVING := key:"*/predictions/*" or key:"*/embeddings/*"

demo: install
	@mkdir -p "$(DAGSTER_HOME)" "$(KUMO_DATA_PLANE)"
	$(BIN)/dagster asset materialize --select 'not ($(SERVING))' -m kumo_assets.definitions -c kumo_assets/examples/f1/demo_run.yaml
	$(BIN)/dagster asset materialize --select '$(SERVING)' --partition $(DEMO_DAY) -m kumo_assets.definitions
	@echo "Predictions: $(KUMO_DATA_PLANE)/f1/predictions/<query>/$(DEMO_DAY).parquet"
	@echo "Embeddings:  $(KUMO_DATA_PLANE)/f1/embeddings/<query>/$(DEMO_DAY).parquet"
	@echo "Artifacts: $(KUMO_DATA_PLANE)   Dagster instance: $(DAGSTER_HOME)   UI: make dev"

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: install
	@mkdir -p "$(DAGSTER_HOME)" "$(KUMO_DATA_PLANE)"
	$(BIN)/dagster dev -w workspace.yaml

# Re-resolve the lock after changing pyproject.toml dependencies.
lock:
	uv pip compile --quiet --python-version 3.11 $(UV_FIND_LINKS) pyproject.toml --extra dev -o requirements.lock

clean:
	rm -rf $(KUMO_HOME)
