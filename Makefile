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
DEMO_SPEC := kumo_assets/examples/f1/graph.yaml
DEMO_RUN ?= kumo_assets/examples/f1/demo_run.yaml
DEV_PORT ?= 3000
SERVING := key:"*/*/predictions" or key:"*/*/embeddings"
HAND_SET := key:"*/*/model"

demo: install
	@mkdir -p "$(DAGSTER_HOME)" "$(KUMO_DATA_PLANE)"
	$(BIN)/dagster asset materialize --select 'not ($(SERVING) or $(HAND_SET))' -m kumo_assets.definitions -c $(DEMO_RUN)
	$(BIN)/dagster asset materialize --select '$(SERVING)' --partition $(DEMO_DAY) -m kumo_assets.definitions
	@echo; $(BIN)/kumo leaderboard --spec $(DEMO_SPEC)
	@echo "Artifacts: $(KUMO_DATA_PLANE)   Dagster instance: $(DAGSTER_HOME)"
	@echo "Look at it: make dev, then http://127.0.0.1:$(DEV_PORT) (lineage, each query's study and best_model pages)."
	@echo; $(BIN)/kumo automation

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The UI and the daemon (schedules, sensors): Dagster's webserver plus the route that serves the assets'
# pictures (kumo_assets/webserver.py), on the same instance as make demo.
dev: install
	@mkdir -p "$(DAGSTER_HOME)" "$(KUMO_DATA_PLANE)"
	$(BIN)/dagster-daemon run -w workspace.yaml & daemon=$$!; trap "kill $$daemon" EXIT; \
	$(BIN)/python -m kumo_assets.webserver -w workspace.yaml -h 127.0.0.1 -p $(DEV_PORT)

# Re-resolve the lock after changing pyproject.toml dependencies.
lock:
	uv pip compile --quiet --python-version 3.11 $(UV_FIND_LINKS) pyproject.toml --extra dev -o requirements.lock

clean:
	rm -rf $(KUMO_HOME)
