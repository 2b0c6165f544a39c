# The two set-up commands of the README: `make suite` (the default scenario suite against the
# bundled coordinator) and `make test` (lint, types, tests). Both install what they need first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
JOBS ?= 2  # scenarios of `make suite` at a time (each in its own environment)

.PHONY: setup suite test lint type pytest clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	$(BIN)/python -m harness.env.toxiproxy_binary ensure

suite: setup
	$(BIN)/harness suite --jobs $(JOBS)

lint: $(VENV)/.installed
	$(BIN)/ruff check coordinator harness tests benchmarks
	$(BIN)/ruff format --check coordinator harness tests benchmarks
	$(BIN)/lint-imports --no-cache

type: $(VENV)/.installed
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest $(ARGS)

test: lint type pytest

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .pytest_cache
