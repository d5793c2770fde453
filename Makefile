# Pachón — the two commands:
#   make demo   set everything up and run the platform on a freshly simulated survey
#   make test   install test dependencies, run the whole suite, then lint
# Each target builds its own .venv (Python 3.11) when it is missing or stale.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
PRESET      ?= tiny
SEED        ?= 42
DEMO_DIR    ?= demo
DEMO_REPO   := $(DEMO_DIR)/repo
UP_ARGS     ?=
PYTEST_ARGS ?=
SOURCES     := platform services pipelines extensions
# Test tools never download browsers: the UI tests drive Debian's /usr/bin/chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: help install demo test test-fast lint format bench clean system-deps

help:
	@echo "make demo    simulate a $(PRESET) survey into $(DEMO_REPO), process it (prompt, alerts, data release)"
	@echo "             and run the platform behind JupyterHub (PRESET=small for more; UP_ARGS=--check to stop after a check)"
	@echo "make test    the whole test suite, then lint (PACHON_REQUIRE_SERVICES=1 makes skips fail)"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make bench   the benchmarks under benchmarks/ (figures go to benchmarks/RESULTS.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install -q -e ".[test,postgres]"
	@touch $@

# configurable-http-proxy and the JupyterLab extension (npm, pinned by package-lock.json files).
$(VENV)/.js-built: $(VENV)/.installed scripts/build-platform-js extensions/lab/package.json \
		extensions/lab/package-lock.json $(wildcard extensions/lab/src/*.ts extensions/lab/src/*/*.ts extensions/lab/style/*)
	VENV=$(VENV) bash scripts/build-platform-js
	@touch $@

install: $(VENV)/.installed $(VENV)/.js-built

system-deps:
	@bash scripts/system-deps

# The whole chain that exists: simulate → prompt processing and alerts → data release → serve behind the hub.
# UP_ARGS=--check starts everything, checks it answers, and stops (what CI and tests use).
demo: install
	rm -rf $(DEMO_DIR)
	$(BIN)/pachon repo create $(DEMO_REPO)
	$(BIN)/pachon simulate --repo $(DEMO_REPO) --preset $(PRESET) --seed $(SEED)
	$(BIN)/pachon prompt templates --repo $(DEMO_REPO)
	$(BIN)/pachon prompt run --repo $(DEMO_REPO)
	$(BIN)/pachon drp run --repo $(DEMO_REPO) --release dp1
	$(BIN)/pachon metrics show --repo $(DEMO_REPO) --plot $(DEMO_DIR)/metrics
	$(BIN)/pachon up --repo $(DEMO_REPO) $(UP_ARGS)

test: install
	@bash scripts/system-deps || echo "system-deps could not run; tests needing those packages will skip"
	bash scripts/test-platform-js
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)
	$(MAKE) --no-print-directory lint

test-fast: install
	$(BIN)/python -m pytest tests -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check $(SOURCES) tests benchmarks
	$(BIN)/ruff format --check $(SOURCES) tests benchmarks
	MYPY=$(abspath $(BIN))/mypy bash scripts/typecheck

format: install
	$(BIN)/ruff check --fix $(SOURCES) tests benchmarks
	$(BIN)/ruff format $(SOURCES) tests benchmarks

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
