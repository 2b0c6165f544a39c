# The two set-up commands of the README: `make suite` (the default scenario suite against the
# bundled coordinator) and `make test` (lint, types, tests). Both install what they need first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
JOBS ?= 2  # scenarios of `make suite` at a time (each in its own environment)

.PHONY: setup suite test lint type pytest clean mutation

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
	$(BIN)/ruff check coordinator harness tests benchmarks mutation
	$(BIN)/ruff format --check coordinator harness tests benchmarks mutation
	$(BIN)/lint-imports --no-cache

type: $(VENV)/.installed
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest $(ARGS)

test: lint type pytest

clean:
	rm -rf $(VENV) $(MUTATION_VENV) .tox .mypy_cache .ruff_cache .pytest_cache

# Mutation testing of coordinator/ judged by the default scenarios (not part of `make test`: it
# takes about an hour for 40 mutants). ARGS e.g. "--sample 40 --seed 1 --jobs 2"; docs/mutation.md.
MUTATION_VENV := .venv-mutation
$(MUTATION_VENV)/.installed: mutation/constraints.txt
	$(PY) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/pip install -q -c mutation/constraints.txt cosmic-ray
	touch $@

mutation: setup $(MUTATION_VENV)/.installed
	$(MUTATION_VENV)/bin/python mutation/run.py $(ARGS)
