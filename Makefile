# The two commands of a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `make demo WEB=127.0.0.1:8080 PORT=6555` (or the environment) when 5000 or 5555 are taken.
WEB ?= 127.0.0.1:5000
PORT ?= 5555

.PHONY: install demo test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.runtime $@

# The demo runs only the agent, the collector and the dashboard: no test or deployment tools.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[collector]'
	touch $@

demo: $(VENV)/.runtime
	OSMON_DEMO_WEB=$(WEB) OSMON_DEMO_PORT=$(PORT) $(BIN)/python scripts/demo.py

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/agent_cost.py

clean:
	rm -rf $(VENV) demo-data .pytest_cache
