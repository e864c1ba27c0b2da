# Two entry points for a newcomer: `make demo` (the daily job on the bundled defaults, offline,
# nothing sent) and `make test` (lint, types, import layers, every test). Both create .venv on
# first use. `make test-fast` skips the tests that start real processes or a browser.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Harmless without libfaketime; under `faketime -f +400d make test` it keeps Python's timed
# waits on the real monotonic clock (see tests/conftest.py).
export FAKETIME_DONT_FAKE_MONOTONIC := 1

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/newsletter send --dry-run --date 2026-11-28

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

# Mutation testing of one core module, e.g. `make mutation MODULE=tokens` (or clean, selection,
# compose, pool, lease, ledger_writer, bounces, timing): mutants of that module only, each run
# against the tests that reach it; then the module's score and its survivors by name. The first
# run maps tests to functions (a few minutes); later runs reuse that map until tests change.
mutation: $(STAMP)
	$(if $(MODULE),,$(error name the module: make mutation MODULE=tokens))
	$(BIN)/pip install -q -e '.[mutation]'
	$(BIN)/mutmut run "newsletter.$(MODULE)*"
	$(BIN)/python tools/mutation_score.py $(MODULE)

.PHONY: install demo test test-fast mutation
